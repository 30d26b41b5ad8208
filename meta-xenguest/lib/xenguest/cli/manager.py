"""``xenguest-manager``: deploy and run xenguest images on a Xen host (dom0).

Usage: ``xenguest-manager OPERATION [OPTIONS] [ARGS]``.  Every operation takes
``--config FILE`` (default: ``$XENGUEST_MANAGER_CONFIG``, else
``/etc/xenguest/manager.conf``), ``-v`` and ``-q``.
"""

import abc
import argparse
import json
import logging
import os
import signal
import sys
from typing import Any, Dict, List, Optional

from ..errors import UsageError, XenguestError
from ..manager.config import ManagerConfig, load_config, seconds
from ..manager.guests import GuestStatus, Manager, Report
from ..manager.switch import Health
from . import Command, Help
from . import main as cli_main

PROG = "xenguest-manager"
DESCRIPTION = (
    "Deploy and run xenguest images on a Xen host (dom0): create a guest from an\n"
    "image (configuration, disk), start it through its init scripts, stop and\n"
    "remove it.  Settings: /etc/xenguest/manager.conf (see docs/manager.md).\n\n"
    "Use 'xenguest-manager OPERATION --help' for the options of an operation."
)
LOGGER = "xenguest.manager"
FILE_ONLY = "file_only"


class _NotFileOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, FILE_ONLY, False)


def setup_logging(config: ManagerConfig, verbose: int, quiet: bool) -> None:
    """Log to stderr and to the configured log file (replacing earlier handlers).

    The file gets the configured level (debug with -v); stderr gets at most
    info unless -v, and only warnings and errors with -q.
    """
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    level = logging.DEBUG if verbose else getattr(logging, config.log_level.upper())
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    stderr.setLevel(logging.WARNING if quiet else level if verbose else max(level, logging.INFO))
    stderr.addFilter(_NotFileOnly())
    logger.addHandler(stderr)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if config.log_file:
        try:
            handler = logging.FileHandler(config.log_file, encoding="utf-8")
        except OSError as e:
            logger.warning("cannot write the log file %s: %s", config.log_file, e.strerror)
            return
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(process)d] %(message)s"))
        handler.setLevel(level)
        logger.addHandler(handler)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class ManagerCommand(Command):
    """Shared options and set-up of every operation."""

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        self.arguments(parser)
        common = parser.add_argument_group("common options")
        common.add_argument("--config", metavar="FILE",
                            help="settings file (default: $XENGUEST_MANAGER_CONFIG, "
                                 "else /etc/xenguest/manager.conf)")
        common.add_argument("-v", "--verbose", action="count", default=0,
                            help="log everything, commands included")
        common.add_argument("-q", "--quiet", action="store_true",
                            help="show only warnings and errors on stderr")

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the operation's own arguments."""

    def run(self, args: argparse.Namespace) -> int:
        config = load_config(args.config)
        setup_logging(config, args.verbose, args.quiet)
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return self.execute(Manager(config), args)
        except XenguestError as e:
            logging.getLogger(LOGGER).error("%s: %s", self.name, e.message,
                                            extra={FILE_ONLY: True})
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)

    @abc.abstractmethod
    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        """Run the operation with the configured manager; return the exit status."""


def _add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the guest")


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _seconds(value: str) -> float:
    """--timeout: checked as the settings' timeouts are."""
    try:
        return seconds(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _timeout(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--timeout", metavar="S", type=_seconds,
                        help=f"seconds to wait for {what} (default: stop_timeout of "
                             "the settings, 60)")


class Create(ManagerCommand):
    name = "create"
    helpmsg = "create a guest from an image (configuration and disk)"
    description = (
        "Validate IMAGE, then install its configuration into the guest's state folder\n"
        "and provision its disk.  NAME defaults to the image file name without\n"
        ".xenguest.  On any failure nothing is kept."
    )

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", metavar="IMAGE", help="a xenguest image (file or folder)")
        parser.add_argument("name", metavar="NAME", nargs="?", help="the guest name")
        parser.add_argument("--replace", action="store_true",
                            help="replace an existing (stopped) guest of that name")

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        name = manager.create(args.image, args.name, replace=args.replace)
        print(name)
        return 0


def _trial_options(parser: argparse.ArgumentParser) -> None:
    """The options of a switch to another image: when the new guest is up."""
    parser.add_argument("--start", action="store_true",
                        help="start (and check) the guest even if it was not running")
    parser.add_argument("--health-check", metavar="SCRIPT",
                        help="a host program run (like an init script) until it exits 0 "
                             "once the guest has started: it is up")
    parser.add_argument("--health-timeout", metavar="S", type=_seconds,
                        help="seconds the health check may take (default 60); without "
                             "--health-check, how long the guest must keep running")
    _timeout(parser, "the guest to shut down before it is switched")


def _health(args: argparse.Namespace) -> Health:
    timeout = args.health_timeout
    if timeout is None:
        timeout = DEFAULT_HEALTH_TIMEOUT if args.health_check else 0.0
    script = os.path.abspath(args.health_check) if args.health_check else ""
    return Health(script, timeout)


#: Seconds a health check script may take to pass, unless --health-timeout says.
DEFAULT_HEALTH_TIMEOUT = 60.0


class Update(ManagerCommand):
    name = "update"
    helpmsg = "switch a guest to a new image, keeping its data; undone on any failure"
    description = (
        "Verify and check IMAGE as create does; it must be for the guest's product\n"
        "(GUEST_COMPATIBLE) and keep the guest's kept partitions where they are.\n"
        "Then stop the guest if it runs, save the disk's other ranges aside, write\n"
        "them from IMAGE, install its configuration, and start the guest again (if\n"
        "it ran, or with --start): its init.post scripts and the health check must\n"
        "pass.  Any failure, or a killed command (recovered by the next one), puts\n"
        "back the previous image, disk and state and starts the old guest again.\n"
        "The previous image is kept for 'rollback' until the next update or 'commit'."
    )

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_name(parser)
        parser.add_argument("image", metavar="IMAGE", help="a xenguest image (file or folder)")
        parser.add_argument("--force", action="store_true",
                            help="update even with an image for another product, or one "
                                 "that no longer keeps a kept partition (its data is lost)")
        _trial_options(parser)

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        identity = manager.update(args.name, args.image, force=args.force, start=args.start,
                                  health=_health(args), timeout=args.timeout)
        print(f"{args.name}: {identity.describe()}")
        return 0


class Rollback(ManagerCommand):
    name = "rollback"
    helpmsg = "switch a guest back to its previous image (kept since its last update)"
    description = (
        "Like an update to the image the guest had before its last update (or\n"
        "rollback): the kept partitions keep their data, every other part of the disk\n"
        "and the configuration are put back as they were.  The image left becomes the\n"
        "previous one: a second rollback returns to it."
    )

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_name(parser)
        _trial_options(parser)

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        manager.rollback(args.name, start=args.start, health=_health(args),
                         timeout=args.timeout)
        return 0


class Commit(ManagerCommand):
    name = "commit"
    helpmsg = "discard the previous image of a guest (no rollback any more)"
    description = (
        "Delete the image kept for a rollback since the guest's last update, and the\n"
        "disk ranges saved with it: the space is freed, a rollback is no longer\n"
        "possible.  Nothing to discard is not an error."
    )

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_name(parser)

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        if not manager.commit(args.name):
            logging.getLogger(LOGGER).info("guest %s has no previous image", args.name)
        return 0


class Start(ManagerCommand):
    name = "start"
    helpmsg = "start a guest (init.pre, xl create -p, init.d, xl unpause, init.post)"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_name(parser)

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        manager.start(args.name)
        return 0


class Stop(ManagerCommand):
    name = "stop"
    helpmsg = "shut a guest down gracefully (xl shutdown)"
    description = (
        "Ask the guest to shut down and wait until its domain is gone.  With --kill,\n"
        "a guest that fails to shut down in time is destroyed."
    )

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_name(parser)
        _timeout(parser, "the shutdown")
        parser.add_argument("--kill", action="store_true",
                            help="destroy the guest if it does not shut down in time")
        parser.add_argument("--no-wait", action="store_true",
                            help="return as soon as the shutdown is requested")

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        manager.stop(args.name, args.timeout, kill=args.kill, wait=not args.no_wait)
        return 0


class Destroy(ManagerCommand):
    name = "destroy"
    helpmsg = "stop a guest at once (xl destroy)"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_name(parser)

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        manager.destroy(args.name)
        return 0


class Remove(ManagerCommand):
    name = "remove"
    helpmsg = "remove a guest: stop it if needed, free its disk, delete its state"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_name(parser)
        _timeout(parser, "a graceful shutdown before destroying")

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        manager.remove(args.name, args.timeout)
        return 0


def _status_line(status: GuestStatus) -> str:
    domid = f" (domain ID {status.domid})" if status.domid is not None else ""
    return f"{status.name}: {status.state}{domid}"


def _disk_text(status: GuestStatus) -> str:
    disk = status.disk
    return f"{disk['backend']} {disk['size'] // (1 << 20)} MiB" if disk else "-"


def _network_text(status: GuestStatus) -> str:
    nic = status.nic or {}
    addresses = " ".join(nic[k] for k in ("ipv4", "mac") if nic.get(k))
    return f"{status.network or '-'} {addresses}".rstrip()


def _autoboot_text(status: GuestStatus) -> str:
    return "-" if status.autoboot is None else "yes" if status.autoboot else "no"


def _identity_text(item: Dict[str, Any]) -> str:
    version = item.get("version") or "-"
    return version + (f" ({item['compatible']})" if item.get("compatible") else "")


def _status_details(status: GuestStatus) -> List[str]:
    """The lines of ``status NAME``: the state line, then one line per fact."""
    signer = status.signer
    previous = status.previous
    facts = [
        ("image", status.image),
        ("version", _identity_text(status.as_dict())),
        ("created", status.created),
        ("updated", status.updated or "-"),
        ("previous", f"{_identity_text(previous)}, {previous['image']} (kept for rollback)"
         if previous else "-"),
        ("autoboot", _autoboot_text(status)),
        ("network", _network_text(status)),
        ("disk", _disk_text(status)),
        ("signed by", f"{signer['subject']} (SHA-256 fingerprint {signer['fingerprint']})"
         if signer else "- (not verified)"),
    ]
    if status.switching:
        facts.append(("switching", f"an {status.switching} is under way"))
    width = max(len(key) for key, _ in facts) + 1
    return [_status_line(status)] + [f"  {key + ':':<{width}} {value}" for key, value in facts]


class List_(ManagerCommand):
    name = "list"
    helpmsg = "list the guests"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_json(parser)

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        guests = manager.status()
        if args.json:
            _print_json([g.as_dict() for g in guests])
            return 0
        rows = [("NAME", "STATE", "ID", "AUTOBOOT", "DISK", "VERSION")]
        for g in guests:
            rows.append((g.name, g.state, "-" if g.domid is None else str(g.domid),
                         _autoboot_text(g), _disk_text(g), g.version or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        return 0


class Status(ManagerCommand):
    name = "status"
    helpmsg = "show the state of one guest or of every guest"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", metavar="NAME", nargs="?", help="the guest (default: all)")
        _add_json(parser)

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        guests = manager.status(args.name)
        if args.json:
            _print_json(guests[0].as_dict() if args.name else [g.as_dict() for g in guests])
        elif args.name:
            print("\n".join(_status_details(guests[0])))
        else:
            for guest in guests:
                print(_status_line(guest))
        return 0


def _report(report: Report, verb: str) -> int:
    """Print what was done; failures were logged as they happened."""
    for name in report.done:
        print(f"{name}: {verb}")
    for name in report.started:
        print(f"{name}: started")
    return 1 if report.failed else 0


class Autostart(ManagerCommand):
    name = "autostart"
    helpmsg = "create the guests of the guest folders, start those with GUEST_AUTOBOOT=1"
    description = (
        "Create a guest from every NAME.xenguest of the guest folders that is not a\n"
        "guest yet, then start every stopped guest whose GUEST_AUTOBOOT is 1.  A\n"
        "failure does not stop the others; the exit status is 1 if any failed."
    )

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        return _report(manager.autostart(), "created")


class ShutdownAll(ManagerCommand):
    name = "shutdown-all"
    helpmsg = "shut every running guest down (at host shutdown)"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        _timeout(parser, "the shutdowns")
        parser.add_argument("--kill", action="store_true",
                            help="destroy the guests that do not shut down in time")

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        return _report(manager.shutdown_all(args.timeout, kill=args.kill), "stopped")


class Network(ManagerCommand):
    name = "network"
    helpmsg = "set the host's guest networks up or down, or show them"
    description = (
        "up: make the guest bridge and the NAT network of the [network] settings\n"
        "(bridges, addresses, nftables table inet xenguest, dnsmasq); again to\n"
        "apply changed settings.  down: undo it.  status: show them.  The\n"
        "xenguest-network service runs up at boot and down at shutdown.\n"
        "hotplug online|offline is what Xen's vif script vif-xenguest runs for\n"
        "the vif of a nat guest (XENBUS_PATH in the environment)."
    )

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("action", choices=("up", "down", "status", "hotplug"))
        parser.add_argument("event", nargs="?", choices=("online", "offline"),
                            help="for hotplug: what happened to the vif")
        _add_json(parser)

    def execute(self, manager: Manager, args: argparse.Namespace) -> int:
        from ..manager.guestnet import hotplug
        from ..manager.hostnet import HostNetwork

        if (args.action == "hotplug") != (args.event is not None):
            raise UsageError("network: hotplug takes online or offline, the others nothing")
        network = HostNetwork(manager.config, manager.host)
        if args.action == "up":
            network.up()
        elif args.action == "down":
            network.down()
        elif args.action == "hotplug":
            hotplug(args.event, manager.config, manager.host, manager.state, os.environ)
        elif args.json:
            _print_json(network.status())
        else:
            print("\n".join(_network_lines(network.status())))
        return 0


def _network_lines(status: Dict[str, Any]) -> List[str]:
    bridge, nat = status["bridge"], status["nat"]
    pid = nat["dhcp_server_pid"]
    lines = [
        f"bridge {bridge['name']}: {'exists' if bridge['exists'] else 'missing'}",
        f"NAT network {nat['address']} on {nat['bridge']}: "
        + ("up" if nat["exists"] and pid else "down")
        + (f" (dnsmasq, process {pid})" if pid else ""),
    ]
    for guest in status["guests"]:
        forwards = ", ".join(guest["forwards"])
        lines.append(f"  {guest['name']}: {guest['ipv4']} ({guest['mac']})"
                     + (f", forwards {forwards}" if forwards else ""))
    return lines


COMMANDS: List[Command] = [
    Create(), Start(), Stop(), Destroy(), Remove(), Update(), Rollback(), Commit(), List_(),
    Status(), Autostart(), ShutdownAll(), Network(), Help(),
]


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``xenguest-manager``."""
    return cli_main(PROG, DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())

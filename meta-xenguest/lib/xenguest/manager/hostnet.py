"""The host's networks for guests: ``xenguest-manager network up|down|status``.

``up`` (the xenguest-network service runs it at boot, before the guests
start; running it again re-applies the settings) makes, from the [network]
settings:

* the guest bridge ``bridge``: created if missing, the interfaces of
  ``bridge_members`` added to it (their own addresses flushed), and its
  address: ``none``, ``dhcp`` (``udhcpc`` in the background) or a static
  ``ADDRESS/PREFIX`` with the default route ``bridge_gateway``;
* the NAT network: the bridge ``nat_bridge`` with the address
  ``nat_address``, IPv4 forwarding, the nftables table ``inet xenguest``
  (masquerading and the port-forward maps; the forwards of guests already
  running are carried over) and dnsmasq as its DHCP server;
* on a host booted with systemd, a systemd-networkd unit in
  ``/run/systemd/network`` that leaves the NAT bridge, the guests' vifs and,
  when the settings give it members or an address, the guest bridge and its
  members alone.

``down`` undoes it: dnsmasq and udhcpc stopped, the table deleted, the
bridges it created deleted (a bridge that existed before ``up`` stays), IPv4
forwarding as it was, the runtime folder emptied.  Everything lives under
/run or in the kernel: a reboot starts from nothing.
"""

import json
import logging
import os
import shutil
import signal
import time
from typing import Dict, List, Optional

from ..programs import Host
from . import ManagerError, step
from .config import ManagerConfig
from .guestnet import NatRuntime
from .natconf import add_forwards, delete_table, dnsmasq_conf, networkd_unmanaged, nft_table
from .state import write_atomic

log = logging.getLogger("xenguest.manager")

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
SYSTEMD_RUN = "/run/systemd"
NETWORKD_UNIT = "05-xenguest.network"
#: The interface names of the guests' virtual interfaces (Xen's default names).
VIF_NAMES = ("vif*",)
STOP_WAIT = 5.0


class HostNetwork:
    """Sets the host's guest networks up and down (see the module documentation)."""

    def __init__(self, config: ManagerConfig, host: Host, systemd_run: str = SYSTEMD_RUN) -> None:
        self.config = config
        self.host = host
        self.runtime = NatRuntime(config, host)
        self.systemd_run = systemd_run
        self.state_file = os.path.join(self.runtime.folder, "host.json")
        self.udhcpc_pid = os.path.join(self.runtime.folder, "udhcpc.pid")

    # -- state ---------------------------------------------------------------

    def _state(self) -> Dict[str, object]:
        try:
            with open(self.state_file, encoding="utf-8") as f:
                return dict(json.load(f))
        except (OSError, ValueError):
            return {"created": []}

    def _save(self, state: Dict[str, object]) -> None:
        write_atomic(self.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n")

    def _networkd_unit(self) -> str:
        return os.path.join(self.systemd_run, "network", NETWORKD_UNIT)

    # -- up ------------------------------------------------------------------

    def up(self) -> None:
        """Make the networks of the settings (again)."""
        config = self.config
        with self.runtime.lock():
            state = self._state()
            created = list(state.get("created") or [])
            with step("keep systemd-networkd away from the guest networks"):
                self._networkd_hands_off()
            with step(f"set up bridge {config.bridge}"):
                self._bridge(config.bridge, created)
                for member in config.bridge_members:
                    self._ip("addr", "flush", "dev", member)
                    self._ip("link", "set", "dev", member, "master", config.bridge)
                    self._ip("link", "set", "dev", member, "up")
                self._bridge_address()
            with step(f"set up the NAT network on {config.nat_bridge}"):
                self._bridge(config.nat_bridge, created)
                self._ip("addr", "flush", "dev", config.nat_bridge)
                self._ip("addr", "add", config.nat_address, "dev", config.nat_bridge)
                if "ip_forward" not in state:
                    state["ip_forward"] = _read(IP_FORWARD)
                _write(IP_FORWARD, "1\n")
                state["created"] = created
                self._save(state)
                script = nft_table(config.nat_address) + "".join(
                    add_forwards(g.ipv4, g.forwards) for g in self.runtime.active())
                self.host.run("nft", ["-f", "-"], input=script.encode())
            with step("start the NAT network's DHCP server (dnsmasq)"):
                self._start_dnsmasq()
        log.info("networks up: bridge %s, NAT network %s on %s", config.bridge,
                 config.nat_address, config.nat_bridge)

    def _ip(self, *args: str) -> None:
        self.host.run("ip", list(args))

    def _exists(self, name: str) -> bool:
        return self.host.run("ip", ["-o", "link", "show", "dev", name], check=False).returncode == 0

    def _bridge(self, name: str, created: List[str]) -> None:
        if not self._exists(name):
            self._ip("link", "add", "name", name, "type", "bridge")
            if name not in created:
                created.append(name)
        self._ip("link", "set", "dev", name, "up")

    def _bridge_address(self) -> None:
        config = self.config
        _stop_pid_file(self.udhcpc_pid)
        if config.bridge_address == "dhcp":
            # -R: release the lease and the address when stopped (network down).
            self.host.run("udhcpc", ["-i", config.bridge, "-b", "-R", "-t", "3", "-T", "2",
                                     "-p", self.udhcpc_pid])
        elif config.bridge_address != "none":
            self._ip("addr", "replace", config.bridge_address, "dev", config.bridge)
            if config.bridge_gateway:
                self._ip("route", "replace", "default", "via", config.bridge_gateway,
                         "dev", config.bridge)

    def _networkd_hands_off(self) -> None:
        if not os.path.isdir(os.path.join(self.systemd_run, "system")):
            return  # not booted with systemd
        config = self.config
        names = [config.nat_bridge] + list(VIF_NAMES)
        if config.bridge_members or config.bridge_address != "none":
            # The guest bridge is ours to set up; else the host's network may be (a bridge
            # that networkd makes and addresses, as some hosts' own configuration does).
            names[1:1] = [config.bridge] + config.bridge_members
        unit = self._networkd_unit()
        os.makedirs(os.path.dirname(unit), exist_ok=True)
        write_atomic(unit, networkd_unmanaged(names))
        self._networkd_reload()

    def _networkd_reload(self) -> None:
        if os.path.isdir(os.path.join(self.systemd_run, "netif")):  # networkd runs
            result = self.host.run("networkctl", ["reload"], check=False)
            if result.returncode != 0:
                log.warning("networkctl reload failed: %s", result.stderr.strip())

    def _start_dnsmasq(self) -> None:
        runtime = self.runtime
        self._stop_dnsmasq()
        write_atomic(runtime.dnsmasq_conf, dnsmasq_conf(
            self.config.nat_bridge, self.config.nat_address, self.config.nat_dns,
            runtime.hosts_dir, runtime.lease_file, runtime.pid_file))
        self.host.run("dnsmasq", [f"--conf-file={runtime.dnsmasq_conf}"])
        if runtime.dnsmasq_pid() is None:
            raise ManagerError(f"dnsmasq did not start (see the system log; {runtime.dnsmasq_conf})")

    def _stop_dnsmasq(self) -> None:
        _stop_pid_file(self.runtime.pid_file)

    # -- down ----------------------------------------------------------------

    def down(self) -> None:
        """Undo ``up``; running nat guests lose their network (a warning says so)."""
        runtime = self.runtime
        with runtime.lock():
            for guest in runtime.active():
                log.warning("guest %s is still on the NAT network", guest.name)
            state = self._state()
            with step("stop the DHCP servers and clients"):
                self._stop_dnsmasq()
                _stop_pid_file(self.udhcpc_pid)
            with step("delete the nftables table"):
                self.host.run("nft", ["-f", "-"], input=delete_table().encode())
            with step("delete the bridges"):
                for name in state.get("created") or []:
                    if self._exists(str(name)):
                        self._ip("link", "del", "dev", str(name))
                if "ip_forward" in state:
                    _write(IP_FORWARD, str(state["ip_forward"]))
            unit = self._networkd_unit()
            if os.path.exists(unit):
                os.unlink(unit)
                self._networkd_reload()
            for name in os.listdir(runtime.folder):
                if name != "lock":
                    path = os.path.join(runtime.folder, name)
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
        log.info("networks down")

    # -- status ----------------------------------------------------------------

    def status(self) -> Dict[str, object]:
        """What is up: bridges, DHCP server, nat guests and their forwards."""
        config = self.config
        return {
            "bridge": {"name": config.bridge, "exists": self._exists(config.bridge)},
            "nat": {"bridge": config.nat_bridge, "exists": self._exists(config.nat_bridge),
                    "address": config.nat_address,
                    "dhcp_server_pid": self.runtime.dnsmasq_pid()},
            "guests": [{"name": g.name, "mac": g.mac, "ipv4": g.ipv4,
                        "forwards": [str(f) for f in g.forwards]}
                       for g in self.runtime.active()],
        }


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def _stop_pid_file(pid_file: str) -> Optional[int]:
    """Terminate the process of *pid_file* (if it runs) and wait for it; remove the file."""
    try:
        with open(pid_file, encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if os.path.exists(pid_file):
        os.unlink(pid_file)
    return pid

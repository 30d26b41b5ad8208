"""The guest operations: create, start, stop, destroy, remove, list, status,
autostart and shutdown-all.

Every operation on one guest holds that guest's lock.  Making a guest from an
image is in :mod:`xenguest.manager.deploy`, loaded only when a guest is made.
"""

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import XenguestError
from . import ManagerError, step
from .base import IMAGE_SUFFIX, GuestHost
from .guestcfg import GuestParams, build_config, read_params, read_params_file, read_xl_documents
from .guestnet import assign_nic, vif_spec
from .initscripts import MANAGER_VARS, StartPlan, base_environment, script_stages, start_sequence
from .state import CONFIG_FILE, GuestRecord, write_atomic
from .toolstack import Domain

log = logging.getLogger("xenguest.manager")

@dataclass
class GuestStatus:
    """One guest as ``list`` and ``status`` show it."""

    name: str
    state: str
    domid: Optional[int]
    autoboot: Optional[bool]
    image: str
    created: str
    network: str
    disk: Optional[Dict[str, Any]]
    #: The verified signer of the image ({"subject", "fingerprint"}), None if unsigned.
    signer: Optional[Dict[str, str]] = None
    #: The guest's network addresses ({"mac", "ipv4"}), once it has started.
    nic: Optional[Dict[str, str]] = None

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    """What a command over many guests did; *failed* holds (guest, message)."""

    done: List[str] = field(default_factory=list)
    started: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)


class Manager(GuestHost):
    """The operations, with the settings, the host's commands and a toolstack."""

    # -- create ----------------------------------------------------------------

    def create(self, image_path: str, name: Optional[str] = None,
               replace: bool = False) -> str:
        """Make guest *name* (default: from the image file name) from an image."""
        from .deploy import Deployer  # the image library loads only when guests are made

        return Deployer(self).create(image_path, name, replace)

    # -- start -----------------------------------------------------------------

    def start(self, name: str) -> int:
        """Start guest *name* through the init sequence; return its domain ID."""
        with self.lock(name):
            record = self.state.load(name)
            domid = self.toolstack.domid(name)
            if domid is not None:
                raise ManagerError(f"guest {name} is already running (domain ID {domid})")
            guest_dir = self.state.guest_dir(name)
            with step(f"read the configuration of guest {name}"):
                documents = read_xl_documents(guest_dir)
                params = read_params(read_params_file(guest_dir), MANAGER_VARS)
            nic = self._assign_nic(record, params.network)
            target = None
            if record.disk:
                target = self.backend(record.disk).target(record.disk, guest_dir)
                if not os.path.exists(target):
                    raise ManagerError(f"the disk of guest {name} is missing: {target}")
            config_path = os.path.join(guest_dir, CONFIG_FILE)
            vif = vif_spec(params.network, nic, self.config) if nic else None
            with step("write the xl configuration"):
                text = build_config(documents, name, guest_dir, target, vif)
                write_atomic(config_path, text)
            plan = StartPlan(name, guest_dir, config_path, params.items,
                             script_stages(guest_dir, self.config.host_scripts),
                             self.config.script_timeout, base_environment(os.environ))
            log.info("starting guest %s", name)
            domid = start_sequence(
                self.toolstack, plan, lambda n: self._destroy_and_release(n, nic),
                lambda: self._check_network(name, params))
        log.info("guest %s started (domain ID %d)", name, domid)
        return domid

    def _assign_nic(self, record: GuestRecord, kind: str) -> Optional[Dict[str, str]]:
        """The addresses of the guest of *record* (chosen and recorded at its first start)."""
        if kind == "none":
            return None
        with self.state.addresses_lock(self.config.lock_timeout):
            others = []
            for other in self.state.names():
                if other != record.name:
                    try:
                        nic = self.state.load(other).nic
                    except XenguestError as e:
                        log.warning("guest %s: %s", other, e.message)
                        continue
                    if nic:
                        others.append(nic)
            nic = assign_nic(record.name, kind, self.config.nat_address, record.nic, others)
            if nic != record.nic:
                record.nic = nic
                with step(f"record the network addresses of guest {record.name}"):
                    self.state.save(self.state.guest_dir(record.name), record)
        return nic

    def _check_network(self, name: str, params: GuestParams) -> None:
        """What the guest's network needs of the host (after init.pre, before xl create)."""
        if params.network == "bridge" and not self.toolstack.bridge_exists(self.config.bridge):
            raise ManagerError(f"guest {name} needs network bridge {self.config.bridge}, "
                               "which does not exist on this host")
        if params.network == "nat":
            problem = self.nat.problem(self.toolstack.bridge_exists(self.config.nat_bridge)) \
                or self.nat.conflicts(name, params.forwards)
            if problem:
                raise ManagerError(f"guest {name}: {problem}")

    def _destroy_and_release(self, name: str, nic: Optional[Dict[str, str]]) -> bool:
        destroyed = self._destroy(name)
        self._release(name, nic)
        return destroyed

    # -- stop, destroy, remove -------------------------------------------------

    def stop(self, name: str, timeout: Optional[float] = None, kill: bool = False,
             wait: bool = True) -> None:
        """Shut guest *name* down; *kill*: destroy it if that fails or takes too long."""
        timeout = self.config.stop_timeout if timeout is None else timeout
        with self.lock(name):
            self.state.load(name)
            self._stop_locked(name, timeout, kill, wait)

    def _stop_locked(self, name: str, timeout: float, kill: bool, wait: bool = True) -> None:
        self._stop_domain(name, timeout, kill, wait)
        if wait:
            self._release(name, self.state.load(name).nic)

    def _stop_domain(self, name: str, timeout: float, kill: bool, wait: bool) -> None:
        if self.toolstack.domid(name) is None:
            raise ManagerError(f"guest {name} is not running")
        log.info("shutting down guest %s", name)
        try:
            self.toolstack.shutdown(name)
        except XenguestError as e:
            if not kill:
                raise ManagerError(f"xl shutdown {name}: {e.message} (--kill destroys it)")
            log.warning("graceful shutdown of %s failed (%s): destroying it", name, e.message)
            self._destroy(name)
            return
        if not wait:
            return
        if self._wait_gone(name, timeout):
            log.info("guest %s stopped", name)
            return
        if not kill:
            raise ManagerError(f"guest {name} did not shut down within {timeout:g} s "
                               "(use --kill to destroy it)")
        log.warning("guest %s did not shut down within %g s: destroying it", name, timeout)
        self._destroy(name)

    def destroy(self, name: str) -> None:
        """Stop guest *name* at once (``xl destroy``)."""
        with self.lock(name):
            record = self.state.load(name)
            if not self._destroy_and_release(name, record.nic):
                raise ManagerError(f"guest {name} is not running")

    def remove(self, name: str, timeout: Optional[float] = None) -> None:
        """Stop guest *name* if needed, free its disk and delete its state."""
        with self.lock(name):
            self.state.load(name)
            if self.toolstack.domid(name) is not None:
                self._stop_locked(name, self.config.stop_timeout if timeout is None
                                  else timeout, kill=True)
            self.remove_locked(name)
        log.info("guest %s removed", name)

    # -- list, status ----------------------------------------------------------

    def _domains(self) -> Optional[Dict[str, Domain]]:
        try:
            return {d.name: d for d in self.toolstack.domains()}
        except XenguestError as e:
            log.warning("cannot list domains: %s", e.message)
            return None

    def status(self, name: Optional[str] = None) -> List[GuestStatus]:
        """The status of guest *name*, or of every guest."""
        names = [name] if name else self.state.names()
        domains = self._domains()
        result = []
        for guest in names:
            record = self.state.load(guest)
            domain = None if domains is None else domains.get(guest)
            state = "unknown" if domains is None else domain.state if domain else "stopped"
            result.append(GuestStatus(
                guest, state, domain.domid if domain else None,
                self._autoboot(guest), record.image, record.created, record.network,
                record.disk, record.extra.get("signer"), record.nic))
        return result

    def _autoboot(self, name: str) -> Optional[bool]:
        try:
            params = read_params_file(self.state.guest_dir(name))
            return read_params(params, MANAGER_VARS).autoboot
        except XenguestError as e:
            log.warning("guest %s: %s", name, e.message)
            return None

    # -- boot integration ------------------------------------------------------

    def discover(self) -> List[Tuple[str, str]]:
        """(guest name, image path) of every image in the guest folders, first one wins."""
        found: Dict[str, str] = {}
        for folder in self.config.guest_folders:
            try:
                entries = sorted(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if not entry.endswith(IMAGE_SUFFIX) or entry.startswith("."):
                    continue
                path = os.path.join(folder, entry)
                stem = entry[:-len(IMAGE_SUFFIX)]
                if stem in found:
                    log.warning("%s: ignored, guest %s comes from %s", path, stem, found[stem])
                    continue
                found[stem] = path
        return sorted(found.items())

    def autostart(self) -> Report:
        """Create every image of the guest folders not yet a guest, then start every
        stopped guest whose GUEST_AUTOBOOT is 1."""
        from .deploy import name_for_image  # the image library loads only when guests are made

        report = Report()
        existing = set(self.state.names())
        for stem, path in self.discover():
            try:
                name = name_for_image(path, stem)
                if name in existing:
                    continue
                report.done.append(self.create(path, name))
                existing.add(name)
            except XenguestError as e:
                log.error("create %s: %s", path, e.message)
                report.failed.append((stem, e.message))
        for status in self.status():
            if not status.autoboot or status.state not in ("stopped", "unknown"):
                continue
            try:
                self.start(status.name)
                report.started.append(status.name)
            except XenguestError as e:
                log.error("start %s: %s", status.name, e.message)
                report.failed.append((status.name, e.message))
        return report

    def shutdown_all(self, timeout: Optional[float] = None, kill: bool = False) -> Report:
        """Shut every running guest down together; *kill* destroys the late ones."""
        timeout = self.config.stop_timeout if timeout is None else timeout
        report = Report()
        domains = self._domains() or {}
        running = [n for n in self.state.names() if n in domains]
        waiting = []
        for name in running:
            log.info("shutting down guest %s", name)
            try:
                self.toolstack.shutdown(name)
                waiting.append(name)
            except XenguestError as e:
                if kill:
                    waiting.append(name)
                else:
                    report.failed.append((name, e.message))
        deadline = time.monotonic() + timeout
        while waiting:
            waiting = [n for n in waiting if self.toolstack.domid(n) is not None]
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval)
        for name in running:
            if any(n == name for n, _ in report.failed):
                continue
            if name in waiting:
                if not kill:
                    report.failed.append((name, f"did not shut down within {timeout:g} s"))
                    continue
                try:
                    self._destroy(name)
                except XenguestError as e:
                    report.failed.append((name, e.message))
                    continue
            try:
                self._release(name, self.state.load(name).nic)
            except XenguestError as e:
                report.failed.append((name, e.message))
                continue
            report.done.append(name)
        for name, message in report.failed:
            log.error("shutdown %s: %s", name, message)
        return report

"""The guest operations: create, start, stop, destroy, remove, update, rollback,
commit, list, status, autostart and shutdown-all.

Every operation on one guest holds that guest's lock, and first recovers what a
killed update or rollback of the guest left (:func:`.switch.recover`); list,
status and autostart recover every such guest whose lock is free.  Making a
guest from an image is in :mod:`.deploy`, updating one in :mod:`.update`:
loaded only when a guest is made or updated.
"""

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import XenguestError
from ..format.identity import Identity, identity_of
from . import ManagerError
from .base import IMAGE_SUFFIX, GuestHost
from .guestcfg import read_params, read_params_file
from .initscripts import MANAGER_VARS
from .state import read_journal, read_record_if_any
from .switch import OLD, Health, commit, recover, rollback
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
    #: The identity of its image (GUEST_COMPATIBLE, GUEST_VERSION), None where absent.
    compatible: Optional[str] = None
    version: Optional[str] = None
    #: When it last changed image (update, rollback), None if never.
    updated: Optional[str] = None
    #: The image kept for a rollback ({"image", "compatible", "version"}), or None.
    previous: Optional[Dict[str, Any]] = None
    #: "update" or "rollback" while one is under way, else None.
    switching: Optional[str] = None

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

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold guest *name*'s lock, after recovering a switch a killed command left."""
        with super().lock(name):
            recover(self, name)
            yield

    def recover_all(self) -> None:
        """Recover every guest's interrupted switch whose lock is free (a busy one is
        under way); a failure is logged."""
        for name in self.state.switching():
            try:
                with self.state.lock(name, 0.0):
                    try:
                        recover(self, name)
                    except XenguestError as e:
                        log.warning("guest %s: %s", name, e.message)
            except ManagerError:  # busy: the command doing it is at work
                log.debug("guest %s: a switch is under way", name)

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
            domid = self.start_locked(name)
        log.info("guest %s started (domain ID %d)", name, domid)
        return domid

    # -- update, rollback, commit -----------------------------------------------

    def update(self, name: str, image_path: str, force: bool = False, start: bool = False,
               health: Optional[Health] = None, timeout: Optional[float] = None) -> Identity:
        """Switch guest *name* to a new image, keeping its kept partitions' data."""
        from .update import Updater  # the image library loads only when guests are made

        return Updater(self).update(name, image_path, force, start, health, timeout)

    def rollback(self, name: str, start: bool = False, health: Optional[Health] = None,
                 timeout: Optional[float] = None) -> None:
        """Switch guest *name* back to its previous image."""
        rollback(self, name, start, health, timeout)

    def commit(self, name: str) -> bool:
        """Discard the previous image of *name*; whether there was one."""
        return commit(self, name)

    # -- stop, destroy, remove -------------------------------------------------

    def stop(self, name: str, timeout: Optional[float] = None, kill: bool = False,
             wait: bool = True) -> None:
        """Shut guest *name* down; *kill*: destroy it if that fails or takes too long."""
        timeout = self.config.stop_timeout if timeout is None else timeout
        with self.lock(name):
            self.state.load(name)
            self.stop_locked(name, timeout, kill, wait)

    def destroy(self, name: str) -> None:
        """Stop guest *name* at once (``xl destroy``)."""
        with self.lock(name):
            record = self.state.load(name)
            if not self.destroy_and_release(name, record.nic):
                raise ManagerError(f"guest {name} is not running")

    def remove(self, name: str, timeout: Optional[float] = None) -> None:
        """Stop guest *name* if needed, free its disk and delete its state."""
        with self.lock(name):
            self.state.load(name)
            if self.toolstack.domid(name) is not None:
                self.stop_locked(name, self.config.stop_timeout if timeout is None
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
        self.recover_all()
        names = [name] if name else self.state.names()
        domains = self._domains()
        result = []
        for guest in names:
            folder = self._folder(guest)
            record = read_record_if_any(folder) or self.state.load(guest)
            domain = None if domains is None else domains.get(guest)
            state = "unknown" if domains is None else domain.state if domain else "stopped"
            autoboot, identity = self._settings(guest, folder)
            switching = guest in self.state.switching()
            result.append(GuestStatus(
                guest, state, domain.domid if domain else None,
                autoboot, record.image, record.created, record.network,
                record.disk, record.extra.get("signer"), record.nic,
                identity.compatible or None, identity.version or None, record.updated or None,
                self._previous(guest), self._switch_kind(guest) if switching else None))
        return result

    def _folder(self, name: str) -> str:
        """Where guest *name*'s configuration is: its folder, or for a moment during a
        switch, the switch's copy of it."""
        if self.state.exists(name):
            return self.state.guest_dir(name)
        return os.path.join(self.state.switch_dir(name), OLD)

    def _settings(self, name: str, folder: str) -> Tuple[Optional[bool], Identity]:
        """(GUEST_AUTOBOOT, identity) of the configuration in *folder*."""
        try:
            params = read_params_file(folder)
            return read_params(params, MANAGER_VARS).autoboot, identity_of(params)
        except XenguestError as e:
            log.warning("guest %s: %s", name, e.message)
            return None, Identity()

    def _previous(self, name: str) -> Optional[Dict[str, Any]]:
        folder = os.path.join(self.state.previous_dir(name), OLD)
        record = read_record_if_any(folder)
        if record is None:
            return None
        _, identity = self._settings(name, folder)
        return dict(image=record.image, **identity.as_dict())

    def _switch_kind(self, name: str) -> str:
        try:
            journal = read_journal(self.state.switch_dir(name))
        except XenguestError:
            journal = None
        return journal.kind if journal else "update"

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
        self.recover_all()
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

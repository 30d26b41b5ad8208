"""Switching a guest to another image — an update, or a rollback — safely.

An update (prepared from an image by :mod:`.update`) and a rollback (to the
image kept by the last switch) are one *switch*, journaled in
``guests/.NAME.switch/switch.json``.  The journal is written *before* each
step, so that whatever moment the command is killed at (kill -9, a power
cut), the next manager command on the guest knows what may have happened,
and undoes it — or finishes a switch that was done:

1. ``staging`` — the new configuration is made in ``.NAME.switch/next/``;
2. ``stopping`` — the guest is shut down if it runs (``was_running``);
3. ``saving`` — the ranges of its disk outside the kept partitions are copied
   into a store of the disk's backend (reserved in the journal first);
4. ``installing`` — the disk is resized and those ranges written anew: from
   the image (update), or from the store of the previous image (rollback);
5. ``swapping`` — the guest's folder becomes ``.NAME.switch/guest/`` and
   ``next/`` the guest's folder (a file disk moves along);
6. ``trial`` — the guest is started (when it ran before, or when asked) and
   must pass its init.post scripts, then the health check;
7. ``done`` — the switch holds: the image kept until now is discarded, and
   ``.NAME.switch/`` becomes ``.NAME.previous/`` — the old folder, the store
   of its disk ranges and this journal: what ``rollback`` puts back.

Undoing (any failure, or the recovery of steps 1 to 6) destroys the domain
of the trial, swaps the folders back, resizes the disk back and writes its
saved ranges back, frees the store, and starts the guest again if it ran:
the image, its configuration, the record and every replaced byte of the disk
are as they were.  Kept partitions are never rolled back: they hold the
guest's data, whichever version wrote it (the new one during its trial too).
"""

import datetime
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from ..disk import regions
from ..disk.regions import Range
from ..errors import XenguestError
from . import ManagerError, step
from .base import GuestHost
from .initscripts import Script, ScriptError, ScriptTimeout, run_script
from .state import JOURNAL, PHASES, GuestRecord, Journal, discard, read_journal, read_record_if_any

log = logging.getLogger("xenguest.manager")

#: The new guest folder in a switch folder, and the guest folder it replaces (then
#: the previous image's folder in .NAME.previous/).
NEXT, OLD = "next", "guest"
#: Domain states in which a guest on trial has failed.
GONE_STATES = ("crashed", "dying", "shutting-down")


@dataclass
class Health:
    """When a guest on trial counts as up (after its init.post scripts passed).

    *script*: a host program run (like an init script, stage ``health-check``)
    every *interval* seconds until it exits 0, for at most *timeout* seconds;
    without one, the guest must keep running for *timeout* seconds.
    """

    script: str = ""
    timeout: float = 0.0
    interval: float = 1.0


@dataclass
class Target:
    """What a switch installs.

    *stage(folder)* makes the new guest folder (configuration and record);
    *install(disk, zeroed)* writes the new content of the disk's replaced
    ranges (*zeroed*: they read as zeros).  *size* is the new disk size in
    bytes; *exact*: a volume is given exactly that size (else it only grows).
    """

    kind: str
    stage: Callable[[str], None]
    install: Callable[[str, bool], None]
    size: int = 0
    kept: List[Range] = field(default_factory=list)
    exact: bool = False


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class Switch:
    """One switch of guest *name* on *host*, its lock held."""

    def __init__(self, host: GuestHost, name: str) -> None:
        self.host = host
        self.name = name
        self.state = host.state
        self.folder = self.state.switch_dir(name)
        self.next = os.path.join(self.folder, NEXT)
        self.old = os.path.join(self.folder, OLD)
        self.guest_dir = self.state.guest_dir(name)
        self.journal = Journal("", "staging")

    # -- doing it ------------------------------------------------------------------

    def run(self, target: Target, start: bool, health: Health, stop_timeout: float) -> None:
        """Switch the guest to *target*; any failure undoes everything and raises
        ManagerError saying what failed and what the guest is now."""
        name = self.name
        old = self.state.load(name)
        self.journal = Journal(target.kind, "staging", disk=old.disk,
                               new_size=target.size, kept=[list(r) for r in target.kept])
        current = "prepare it"
        try:
            self.state.prepare()
            os.mkdir(self.folder, 0o755)
            self._enter("staging")
            current = "install the new configuration"
            with step(current):
                target.stage(self.next)
            self.journal.was_running = self.host.toolstack.domid(name) is not None
            self.journal.trial = self.journal.was_running or start
            self._enter("stopping")
            if self.journal.was_running:
                current = "stop the guest"
                self.host.stop_locked(name, stop_timeout, kill=True)
            if old.disk:
                current = "save the disk's replaced ranges"
                with step(current):
                    self._save(old.disk)
                current = "write the disk"
                with step(current):
                    self._install(old.disk, target)
            self._enter("swapping")
            current = "swap the guest's folder"
            self._swap()
            if self.journal.trial:
                self._enter("trial")
                current = "start the guest"
                domid = self.host.start_locked(name)
                current = "check the guest's health"
                self._wait_healthy(domid, health)
            self._enter("done")
        except BaseException as error:  # the switch is undone, whatever stopped it
            undone = self.undo()
            if isinstance(error, XenguestError):
                message = error.message
            elif isinstance(error, OSError):
                message = f"{error.filename + ': ' if error.filename else ''}{error.strerror}"
            else:
                raise
            raise ManagerError(f"guest {name}: {target.kind} failed: {current}: {message}; "
                               f"{undone}") from None
        try:
            self.finish()
        except XenguestError as e:
            raise ManagerError(f"guest {name}: the {target.kind} is done, but {e.message}; the "
                               "next command on the guest finishes it") from None

    def _enter(self, phase: str) -> None:
        self.journal.phase = phase
        self.journal.save(self.folder)

    def _save(self, disk: dict) -> None:
        """Copy the disk's ranges outside the kept partitions into a new store."""
        backend = self.host.backend(disk)
        source = backend.target(disk, self.guest_dir)
        self.journal.old_size = backend.disk_bytes(disk, self.guest_dir)
        saved = regions.complement(self.journal.old_size, [tuple(r) for r in self.journal.kept])
        self.journal.saved = [list(r) for r in saved]
        # recorded before it exists: a kill at any moment leaves what to free
        self.journal.store = backend.reserve_store(disk, regions.total(saved))
        self._enter("saving")
        allocation = backend.allocate(self.journal.store, self.folder)
        self.journal.save(self.folder)
        count = regions.copy(source, allocation.path, regions.stacked(saved), allocation.zeroed)
        log.info("guest %s: saved %d bytes of its disk (%d range(s))", self.name, count,
                 len(saved))

    def _install(self, disk: dict, target: Target) -> None:
        backend = self.host.backend(disk)
        self._enter("installing")
        backend.resize(disk, self.guest_dir, target.size, target.exact)
        size = backend.disk_bytes(disk, self.guest_dir)
        replaced = regions.complement(size, target.kept)
        zeroed = backend.clear(disk, self.guest_dir, replaced)
        target.install(backend.target(disk, self.guest_dir), zeroed)

    def _disk_file(self) -> Optional[str]:
        """The disk file that moves with the guest folder (file backend), if any."""
        disk = self.journal.disk
        return disk.get("file") if disk and disk.get("backend") == "file" else None

    def _swap(self) -> None:
        disk_file = self._disk_file()
        if disk_file:
            os.rename(os.path.join(self.guest_dir, disk_file), os.path.join(self.next, disk_file))
        os.rename(self.guest_dir, self.old)
        os.rename(self.next, self.guest_dir)

    def _wait_healthy(self, domid: int, health: Health) -> None:
        """Return once the guest is up as *health* says; ManagerError if it is not."""
        plan = self.host.start_plan(self.name, self.host.params(self.name))
        env = plan.environment("health-check", domid)
        deadline = time.monotonic() + health.timeout
        last = ""
        while True:
            domain = self.host.toolstack.domain(self.name)
            if domain is None or domain.state in GONE_STATES:
                raise ManagerError(f"the guest {'is gone' if domain is None else domain.state}"
                                   + (f" (health check: {last})" if last else ""))
            left = deadline - time.monotonic()
            if health.script:
                try:
                    run_script(Script(health.script, health.script), self.name, env,
                               self.guest_dir, max(1.0, min(left, self.host.config.script_timeout)))
                    log.info("guest %s: health check passed", self.name)
                    return
                except ScriptTimeout as e:
                    # A run cut short by the deadline says less than the failure before it.
                    last = last or e.message
                except ScriptError as e:
                    last = e.message
            if time.monotonic() >= deadline:
                if health.script:
                    raise ManagerError(f"not healthy within {health.timeout:g} s: {last}")
                return
            time.sleep(max(0.0, min(health.interval, deadline - time.monotonic())))

    # -- finishing or undoing it -----------------------------------------------------

    def finish(self) -> None:
        """The switch holds: the previous image becomes the one switched from."""
        with step("keep the previous image"):
            self.host.discard_previous(self.name)
            os.rename(self.folder, self.state.previous_dir(self.name))
        log.info("guest %s: %s done", self.name, self.journal.kind)

    def undo(self) -> str:
        """Put everything back as it was before the switch; say what the guest is now.

        A failure to undo is logged and said: the journal stays, and the next
        command on the guest tries again.
        """
        name, journal = self.name, self.journal
        phase = PHASES.index(journal.phase)
        try:
            if phase >= PHASES.index("saving"):
                # the guest was stopped: a domain now is the trial's (or in the way)
                record = self._any_record()
                self.host.destroy_and_release(name, record.nic if record else None)
            with step("swap the guest's folder back"):
                self._swap_back()
            if journal.store:
                if phase >= PHASES.index("installing"):
                    with step("write the disk back"):
                        self._restore()
                with step("free the saved disk ranges"):
                    self.host.backend(journal.store).free(journal.store, self.folder)
        except (XenguestError, OSError) as e:
            message = getattr(e, "message", None) or str(e)
            log.error("guest %s: undoing the %s failed: %s", name, journal.kind, message)
            return f"undoing it failed too ({message}): the next command on guest {name} " \
                "tries again"
        restarted = self._restart(phase)
        self.close()
        what = f"guest {name} is back to its image before the {journal.kind}"
        return what + restarted

    def _restore(self) -> None:
        """Put the disk back as the journal saved it."""
        disk = dict(self.journal.disk or {})
        backend = self.host.backend(disk)
        backend.resize(disk, self.guest_dir, self.journal.old_size, exact=True)
        zeroed = backend.clear(disk, self.guest_dir, saved_ranges(self.journal))
        copy_back(self.host, self.journal, self.folder, backend.target(disk, self.guest_dir),
                  zeroed)

    def _restart(self, phase: int) -> str:
        """Start the guest again if it ran before the switch; say how that went."""
        if not self.journal.was_running:
            return ""
        toolstack = self.host.toolstack
        domain = toolstack.domain(self.name)
        if domain is not None and domain.state in GONE_STATES:
            self.host.wait_gone(self.name, self.host.config.stop_timeout)
            domain = None
        if domain is not None:
            return " (still running)"
        try:
            self.host.start_locked(self.name)
        except XenguestError as e:
            log.error("guest %s: starting it again failed: %s", self.name, e.message)
            return f", but starting it again failed: {e.message}"
        return " and running again"

    def _any_record(self) -> Optional[GuestRecord]:
        for folder in (self.guest_dir, self.old):
            record = read_record_if_any(folder)
            if record is not None:
                return record
        return None

    def _swap_back(self) -> None:
        """Undo :meth:`_swap`, from whatever point it stopped at."""
        if not os.path.lexists(self.next) and os.path.lexists(self.old):
            os.rename(self.guest_dir, self.next)
        if os.path.lexists(self.old):
            os.rename(self.old, self.guest_dir)
        disk_file = self._disk_file()
        if disk_file and os.path.lexists(os.path.join(self.next, disk_file)):
            os.rename(os.path.join(self.next, disk_file), os.path.join(self.guest_dir, disk_file))

    def close(self) -> None:
        """Delete the switch folder, its journal first."""
        try:
            os.unlink(os.path.join(self.folder, JOURNAL))
        except FileNotFoundError:
            pass
        discard(self.folder)


def saved_ranges(journal: Journal) -> List[Range]:
    return [(r[0], r[1]) for r in journal.saved]


def copy_back(host: GuestHost, journal: Journal, folder: str, disk: str, zeroed: bool) -> None:
    """Write the disk ranges *journal* saved (its store in *folder*) back into *disk*."""
    store = journal.store or {}
    regions.copy(host.backend(store).target(store, folder), disk,
                 regions.unstacked(saved_ranges(journal)), zeroed)


def recover(host: GuestHost, name: str) -> None:
    """Undo — or finish, if it was done — a switch of *name* a killed command left
    (its lock held)."""
    switch = Switch(host, name)
    if not os.path.lexists(switch.folder):
        return
    journal = read_journal(switch.folder)
    if journal is None:  # killed before its first step, or while deleting its folder
        discard(switch.folder)
        return
    switch.journal = journal
    if journal.phase == "done":
        log.warning("guest %s: finishing the %s a killed command left", name, journal.kind)
        switch.finish()
        return
    log.warning("guest %s: undoing the %s a killed command left (at %s)", name, journal.kind,
                journal.phase)
    outcome = switch.undo()
    log.warning("%s", outcome)
    if os.path.lexists(switch.folder):
        raise ManagerError(f"guest {name}: {outcome}")


# -- rollback and commit ------------------------------------------------------------


def previous_of(host: GuestHost, name: str) -> Optional[Journal]:
    """The journal of the image kept for a rollback of *name*, None if there is none."""
    folder = host.state.previous_dir(name)
    return read_journal(folder) if os.path.isdir(folder) else None


def rollback(host: GuestHost, name: str, start: bool = False, health: Optional[Health] = None,
             timeout: Optional[float] = None) -> None:
    """Switch guest *name* back to its previous image; the image it leaves becomes the
    previous one (a second rollback returns to it)."""
    with host.lock(name):
        current = host.state.load(name)
        journal = previous_of(host, name)
        if journal is None:
            raise ManagerError(f"guest {name} has no previous image to roll back to (it is "
                               "kept from an update until the next one or a commit)")
        folder = host.state.previous_dir(name)
        kept_folder = os.path.join(folder, OLD)
        record = read_record_if_any(kept_folder)
        if record is None or (journal.disk is None) != (current.disk is None):
            raise ManagerError(f"guest {name}: the previous image in {folder} is damaged: "
                               "remove it with 'xenguest-manager commit'")

        def stage(next_folder: str) -> None:
            shutil.copytree(kept_folder, next_folder, symlinks=True)
            assert record is not None
            record.nic, record.updated = current.nic, now()
            record.disk = dict(current.disk, size=(journal.disk or {}).get("size", 0)) \
                if current.disk else None
            host.state.save(next_folder, record)

        def install(disk: str, zeroed: bool) -> None:
            copy_back(host, journal, folder, disk, zeroed)

        log.info("rolling guest %s back to its previous image", name)
        if current.disk:
            host.host.require(host.backend(current.disk).switch_commands())
        target = Target("rollback", stage, install, journal.old_size,
                        [(r[0], r[1]) for r in journal.kept], exact=True)
        Switch(host, name).run(target, start, health or Health(),
                               host.config.stop_timeout if timeout is None else timeout)
    log.info("guest %s rolled back", name)


def commit(host: GuestHost, name: str) -> bool:
    """Discard the image kept for a rollback of *name*; whether there was one."""
    with host.lock(name):
        host.state.load(name)
        return host.discard_previous(name)

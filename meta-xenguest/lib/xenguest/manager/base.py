"""What every operation on one guest needs: the settings, the host's commands, the
toolstack and the state, a guest's lock, its disk backend, starting and
stopping it, and removing a stopped guest.  :class:`~.guests.Manager` (the
operations), :class:`~.deploy.Deployer` (making a guest) and :mod:`.switch`
(updates and rollbacks) build on it.
"""

import logging
import os
from typing import Any, Dict, Optional

from ..errors import XenguestError
from ..programs import Host
from . import ManagerError, step
from .backends import DiskBackend, backend_named
from .config import ManagerConfig
from .guestcfg import GuestParams, build_config, read_params, read_params_file, read_xl_documents
from .guestnet import NatRuntime, assign_nic, vif_spec
from .initscripts import MANAGER_VARS, StartPlan, base_environment, script_stages, start_sequence
from .state import CONFIG_FILE, JOURNAL, GuestRecord, StateStore, discard, read_journal, write_atomic
from .toolstack import Toolstack, XlToolstack, destroy_and_wait, wait_gone

log = logging.getLogger("xenguest.manager")

#: The file name suffix of xenguest images in the guest folders.
IMAGE_SUFFIX = ".xenguest"


class GuestHost:
    """The guests of this host: settings, commands, toolstack, state."""

    #: Seconds between polls of the toolstack while waiting.
    poll_interval = 0.25

    def __init__(self, config: ManagerConfig, toolstack: Optional[Toolstack] = None,
                 host: Optional[Host] = None) -> None:
        self.config = config
        self.host = host or Host(config.commands)
        self.toolstack = toolstack or XlToolstack(self.host)
        self.state = StateStore(config.state_folder)
        self.nat = NatRuntime(config, self.host)

    # -- helpers ---------------------------------------------------------------

    def lock(self, name: str) -> Any:
        """Hold guest *name*'s lock (a context manager)."""
        return self.state.lock(name, self.config.lock_timeout)

    def wait_gone(self, name: str, timeout: float) -> bool:
        """Wait up to *timeout* s for the domain of *name* to be gone; whether it is."""
        return wait_gone(self.toolstack, name, timeout, interval=self.poll_interval)

    def _destroy(self, name: str) -> bool:
        return destroy_and_wait(self.toolstack, name, self.config.stop_timeout,
                                interval=self.poll_interval)

    def backend(self, record_disk: Optional[Dict[str, Any]]) -> DiskBackend:
        """The backend of a guest's disk record, or the configured one for None."""
        name = record_disk["backend"] if record_disk else self.config.disk_backend
        return backend_named(name, self.config, self.host)

    def free_disk(self, record: GuestRecord, folder: str) -> None:
        """Free the disk of *record*, whose guest folder is *folder*, if it has one."""
        if record.disk:
            self.backend(record.disk).free(record.disk, folder)

    def _release(self, name: str, nic: Optional[Dict[str, str]]) -> None:
        """Remove what the NAT network still holds for a stopped guest (if anything)."""
        if nic and nic.get("ipv4"):
            with step(f"release the NAT network address of guest {name}"):
                if self.nat.release(nic["mac"]):
                    log.info("guest %s: released what Xen's vif script left", name)

    def remove_locked(self, name: str) -> None:
        """Free the disk and delete the state of stopped guest *name* (lock held), its
        previous image included."""
        record = self.state.load(name)
        if not self.wait_gone(name, self.config.stop_timeout):
            raise ManagerError(f"domain {name} still exists: its disk cannot be freed")
        self._release(name, record.nic)
        self.discard_previous(name)
        with step(f"free the disk of guest {name}"):
            self.free_disk(record, self.state.guest_dir(name))
        with step(f"delete the state of guest {name}"):
            self.state.delete_guest(name)

    def discard_previous(self, name: str) -> bool:
        """Delete the image kept for a rollback of *name*, and free its store of saved
        disk bytes; whether there was one.  Its journal goes last but one: whatever
        moment this is interrupted at, the next call finishes it."""
        folder = self.state.previous_dir(name)
        if not os.path.lexists(folder):
            return False
        with step(f"discard the previous image of guest {name}"):
            journal = read_journal(folder)
            if journal is not None and journal.store:
                self.backend(journal.store).free(journal.store, folder)
            try:
                os.unlink(os.path.join(folder, JOURNAL))
            except FileNotFoundError:
                pass
            discard(folder)
        return True

    # -- start and stop ----------------------------------------------------------

    def start_locked(self, name: str) -> int:
        """Start guest *name* through the init sequence (its lock held); return its
        domain ID."""
        record = self.state.load(name)
        domid = self.toolstack.domid(name)
        if domid is not None:
            raise ManagerError(f"guest {name} is already running (domain ID {domid})")
        guest_dir = self.state.guest_dir(name)
        with step(f"read the configuration of guest {name}"):
            documents = read_xl_documents(guest_dir)
            params = self.params(name)
        nic = self._assign_nic(record, params.network)
        target = None
        if record.disk:
            target = self.backend(record.disk).target(record.disk, guest_dir)
            if not os.path.exists(target):
                raise ManagerError(f"the disk of guest {name} is missing: {target}")
        plan = self.start_plan(name, params)
        vif = vif_spec(params.network, nic, self.config) if nic else None
        with step("write the xl configuration"):
            write_atomic(plan.config_path, build_config(documents, name, guest_dir, target, vif))
        log.info("starting guest %s", name)
        return start_sequence(
            self.toolstack, plan, lambda n: self.destroy_and_release(n, nic),
            lambda: self._check_network(name, params))

    def params(self, name: str) -> GuestParams:
        """The checked params.cfg of guest *name*."""
        return read_params(read_params_file(self.state.guest_dir(name)), MANAGER_VARS)

    def start_plan(self, name: str, params: GuestParams) -> StartPlan:
        """What the scripts of guest *name* run with (its init scripts, a health check)."""
        guest_dir = self.state.guest_dir(name)
        return StartPlan(name, guest_dir, os.path.join(guest_dir, CONFIG_FILE), params.items,
                         script_stages(guest_dir, self.config.host_scripts),
                         self.config.script_timeout, base_environment(os.environ))

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

    def destroy_and_release(self, name: str, nic: Optional[Dict[str, str]]) -> bool:
        """Destroy domain *name* if it exists, release its network; whether it existed."""
        destroyed = self._destroy(name)
        self._release(name, nic)
        return destroyed

    def stop_locked(self, name: str, timeout: float, kill: bool, wait: bool = True) -> None:
        """Shut running guest *name* down (its lock held); *kill*: destroy it if that
        fails or takes longer than *timeout*."""
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
        if self.wait_gone(name, timeout):
            log.info("guest %s stopped", name)
            return
        if not kill:
            raise ManagerError(f"guest {name} did not shut down within {timeout:g} s "
                               "(use --kill to destroy it)")
        log.warning("guest %s did not shut down within %g s: destroying it", name, timeout)
        self._destroy(name)

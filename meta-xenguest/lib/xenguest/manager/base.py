"""What every operation on one guest needs: the settings, the host's commands, the
toolstack and the state, a guest's lock, its disk backend, and removing a
stopped guest.  :class:`~.guests.Manager` (the operations) and
:class:`~.deploy.Deployer` (making a guest) both build on it.
"""

import logging
from typing import Any, Dict, Optional

from ..programs import Host
from . import ManagerError, step
from .backends import DiskBackend, backend_named
from .config import ManagerConfig
from .guestnet import NatRuntime
from .state import GuestRecord, StateStore
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

    def _wait_gone(self, name: str, timeout: float) -> bool:
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
        """Free the disk and delete the state of stopped guest *name* (lock held)."""
        record = self.state.load(name)
        if not self._wait_gone(name, self.config.stop_timeout):
            raise ManagerError(f"domain {name} still exists: its disk cannot be freed")
        self._release(name, record.nic)
        with step(f"free the disk of guest {name}"):
            self.free_disk(record, self.state.guest_dir(name))
        with step(f"delete the state of guest {name}"):
            self.state.delete_guest(name)

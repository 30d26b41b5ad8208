"""Where a guest disk lives: a sparse file in the guest folder, or an LVM volume.

* ``file`` (default): ``guests/NAME/disk.img``, a sparse raw file; xl attaches
  it through a loop device set up by Xen's ``block`` hotplug script.
* ``lvm``: a logical volume ``LV_PREFIX + NAME`` in the configured volume group,
  or — when the image's disk.cfg names a ``DISK_DEVICE`` — in the volume group
  ``vg-xen-<device base name>`` (the earlier tool's convention).  That volume
  group must exist: the manager never initialises a device on its own.  A
  volume that already exists is never reused nor overwritten.

Both are attached with the same xl disk line (``format=raw``, ``vdev=xvda``).
"""

import abc
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Set

from ..disk import DiskConfig
from . import ManagerError
from .config import ManagerConfig
from .host import CommandError, Host
from .state import DISK_FILE

log = logging.getLogger("xenguest.manager")

MIB = 1 << 20


@dataclass
class Allocation:
    """A new disk: what to record, where to write it, whether it reads as zeros."""

    record: Dict[str, Any]
    path: str
    zeroed: bool


def xl_disk_spec(target: str) -> str:
    """The xl disk specification of a raw disk at *target* (``target=`` must be last)."""
    return f"format=raw, vdev=xvda, access=rw, target={target}"


class DiskBackend(abc.ABC):
    """Allocates and frees guest disks."""

    name = ""

    def commands(self) -> Set[str]:
        """The external commands the backend needs."""
        return set()

    def check(self, guest: str, disk: DiskConfig,
              replaced: Optional[Dict[str, Any]] = None) -> None:
        """Refuse early (before anything is made) what allocate would refuse.

        *replaced* is the recorded disk of a guest about to be replaced (freed first).
        """

    @abc.abstractmethod
    def allocate(self, guest: str, disk: DiskConfig, size: int, folder: str) -> Allocation:
        """Make a disk of *size* bytes for *guest*; *folder* is its (new) guest folder."""

    @abc.abstractmethod
    def target(self, record: Dict[str, Any], guest_dir: str) -> str:
        """The path of a recorded disk."""

    @abc.abstractmethod
    def free(self, record: Dict[str, Any], guest_dir: str) -> None:
        """Release a recorded disk (nothing happens if it is already gone)."""


class FileBackend(DiskBackend):
    name = "file"

    def allocate(self, guest: str, disk: DiskConfig, size: int, folder: str) -> Allocation:
        if disk.device:
            log.warning("%s: DISK_DEVICE %s is ignored: the disk is a file (backend file)",
                        guest, disk.device)
        path = os.path.join(folder, DISK_FILE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        return Allocation({"backend": self.name, "file": DISK_FILE, "size": size}, path, True)

    def target(self, record: Dict[str, Any], guest_dir: str) -> str:
        return os.path.join(guest_dir, record.get("file", DISK_FILE))

    def free(self, record: Dict[str, Any], guest_dir: str) -> None:
        try:
            os.unlink(self.target(record, guest_dir))
        except FileNotFoundError:
            pass


class LvmBackend(DiskBackend):
    name = "lvm"
    #: Attempts and pause (s) of lvremove while the hotplug scripts release the volume.
    remove_attempts = 5
    remove_pause = 1.0

    def __init__(self, host: Host, volume_group: str, lv_prefix: str) -> None:
        self.host = host
        self.volume_group = volume_group
        self.lv_prefix = lv_prefix

    def commands(self) -> Set[str]:
        return {"lvcreate", "lvremove", "lvs", "vgs"}

    def group_for(self, disk: DiskConfig) -> str:
        if disk.device:
            return "vg-xen-" + os.path.basename(disk.device.rstrip("/"))
        if not self.volume_group:
            raise ManagerError("the lvm backend needs [disk] volume_group in the settings")
        return self.volume_group

    def _lv_path(self, vg: str, lv: str) -> Optional[str]:
        result = self.host.run("lvs", ["--noheadings", "-o", "lv_path", f"{vg}/{lv}"],
                               check=False)
        path = result.stdout.strip()
        return path if result.returncode == 0 and path else None

    def check(self, guest: str, disk: DiskConfig,
              replaced: Optional[Dict[str, Any]] = None) -> None:
        vg, lv = self.group_for(disk), self.lv_prefix + guest
        if self.host.run("vgs", ["--noheadings", "-o", "vg_name", vg], check=False).returncode:
            hint = (f" (create it on {disk.device} with pvcreate and vgcreate)"
                    if disk.device else "")
            raise ManagerError(f"volume group {vg} does not exist{hint}")
        freed = (replaced or {}).get("backend") == self.name and \
            (replaced or {}).get("vg") == vg and (replaced or {}).get("lv") == lv
        if not freed and self._lv_path(vg, lv):
            raise ManagerError(f"logical volume {vg}/{lv} exists already: remove it or "
                               "choose another guest name")

    def allocate(self, guest: str, disk: DiskConfig, size: int, folder: str) -> Allocation:
        vg, lv = self.group_for(disk), self.lv_prefix + guest
        mib = -(-size // MIB)
        self.host.run("lvcreate", ["--yes", "--wipesignatures", "y", "--zero", "y",
                                   "-L", f"{mib}m", "-n", lv, vg])
        path = self._lv_path(vg, lv)
        record = {"backend": self.name, "vg": vg, "lv": lv, "path": path or "", "size": size}
        if not path:
            self.free(record, folder)
            raise ManagerError(f"lvcreate made {vg}/{lv} but lvs does not show it")
        return Allocation(record, path, False)

    def target(self, record: Dict[str, Any], guest_dir: str) -> str:
        return str(record["path"])

    def free(self, record: Dict[str, Any], guest_dir: str) -> None:
        vg, lv = record["vg"], record["lv"]
        for attempt in range(1, self.remove_attempts + 1):
            if not self._lv_path(vg, lv):
                return
            try:
                self.host.run("lvremove", ["-f", f"{vg}/{lv}"])
                return
            except CommandError:
                if attempt == self.remove_attempts:
                    raise
                log.info("logical volume %s/%s is still busy, retrying", vg, lv)
                time.sleep(self.remove_pause)


def backend_named(name: str, config: ManagerConfig, host: Host) -> DiskBackend:
    """The backend called *name* (``file`` or ``lvm``) with the settings of *config*."""
    if name == "file":
        return FileBackend()
    if name == "lvm":
        return LvmBackend(host, config.volume_group, config.lv_prefix)
    raise ManagerError(f"unknown disk backend {name!r}")

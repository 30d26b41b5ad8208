"""Where a guest disk lives: a sparse file in the guest folder, or an LVM volume.

* ``file`` (default): ``guests/NAME/disk.img``, a sparse raw file; xl attaches
  it through a loop device set up by Xen's ``block`` hotplug script.
* ``lvm``: a logical volume ``LV_PREFIX + NAME`` in the configured volume group,
  or — when the image's disk.cfg names a ``DISK_DEVICE`` — in the volume group
  ``vg-xen-<device base name>`` (the earlier tool's convention).  That volume
  group must exist: the manager never initialises a device on its own.  A
  volume that already exists is never reused nor overwritten.  Each volume
  gets a tag unique to the create that made it (``lvcreate --addtag``), and
  is removed only if it carries the tag its guest record names.

A disk is *reserved* first — its record, saved in the guest folder before
anything exists — then *allocated*: a create killed at any moment leaves a
record naming everything it may have made, and the next create frees it.

An update (:mod:`.switch`) keeps the replaced bytes of a disk in a *store* of
the same backend, reserved and allocated the same way: ``saved.img``, a sparse
file in the update's folder, or a volume ``LV+<8 hex digits>`` beside the
guest's (a ``+`` no guest name holds), tagged like any other.  It resizes the
disk (a file exactly; a volume only grows, and shrinks back to its exact
former size when an update is undone) and clears the replaced ranges of a file
(``fallocate --punch-hole``) so that they read as zeros and take no space.

Both are attached with the same xl disk line (``format=raw``, ``vdev=xvda``).
"""

import abc
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

from ..disk.config import DiskConfig
from ..disk.regions import Range, punch
from ..programs import CommandError, Host
from . import ManagerError
from .config import ManagerConfig
from .state import DISK_FILE

#: The store of an update's saved bytes (file backend), in the update's folder.
STORE_FILE = "saved.img"

log = logging.getLogger("xenguest.manager")

MIB = 1 << 20


@dataclass
class Allocation:
    """A new disk: where to write it, whether it reads as zeros."""

    path: str
    zeroed: bool


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
    def reserve(self, guest: str, disk: DiskConfig, size: int) -> Dict[str, Any]:
        """The record of a disk of *size* bytes for *guest*, before it is made."""

    @abc.abstractmethod
    def allocate(self, record: Dict[str, Any], folder: str) -> Allocation:
        """Make the reserved disk *record* (completed in place); *folder* is the new
        guest folder."""

    @abc.abstractmethod
    def target(self, record: Dict[str, Any], guest_dir: str) -> str:
        """The path of a recorded disk."""

    @abc.abstractmethod
    def free(self, record: Dict[str, Any], guest_dir: str) -> None:
        """Release a recorded disk (nothing happens if it is already gone)."""

    # -- what updates need -------------------------------------------------------

    def switch_commands(self) -> Set[str]:
        """The external commands an update or a rollback needs."""
        return self.commands()

    @abc.abstractmethod
    def reserve_store(self, disk: Dict[str, Any], size: int) -> Dict[str, Any]:
        """The record of a store of *size* bytes for the saved ranges of disk *disk*."""

    @abc.abstractmethod
    def disk_bytes(self, record: Dict[str, Any], guest_dir: str) -> int:
        """The size of a recorded disk as it is, in bytes."""

    @abc.abstractmethod
    def resize(self, record: Dict[str, Any], guest_dir: str, size: int, exact: bool) -> None:
        """Make a recorded disk *size* bytes long; without *exact*, a disk that cannot
        be given any size (a volume) is only grown if it is smaller."""

    def clear(self, record: Dict[str, Any], guest_dir: str, ranges: List[Range]) -> bool:
        """Make *ranges* of a recorded disk read as zeros if that is cheap; return
        whether it was done."""
        return False


class FileBackend(DiskBackend):
    name = "file"

    def __init__(self, host: Optional[Host] = None) -> None:
        self.host = host or Host()

    def reserve(self, guest: str, disk: DiskConfig, size: int) -> Dict[str, Any]:
        if disk.device:
            log.warning("%s: DISK_DEVICE %s is ignored: the disk is a file (backend file)",
                        guest, disk.device)
        return {"backend": self.name, "file": DISK_FILE, "size": size}

    def allocate(self, record: Dict[str, Any], folder: str) -> Allocation:
        path = self.target(record, folder)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, record["size"])
        finally:
            os.close(fd)
        return Allocation(path, True)

    def target(self, record: Dict[str, Any], guest_dir: str) -> str:
        return os.path.join(guest_dir, record.get("file", DISK_FILE))

    def free(self, record: Dict[str, Any], guest_dir: str) -> None:
        try:
            os.unlink(self.target(record, guest_dir))
        except FileNotFoundError:
            pass

    def switch_commands(self) -> Set[str]:
        return {"fallocate"}

    def reserve_store(self, disk: Dict[str, Any], size: int) -> Dict[str, Any]:
        return {"backend": self.name, "file": STORE_FILE, "size": size}

    def disk_bytes(self, record: Dict[str, Any], guest_dir: str) -> int:
        return os.path.getsize(self.target(record, guest_dir))

    def resize(self, record: Dict[str, Any], guest_dir: str, size: int, exact: bool) -> None:
        os.truncate(self.target(record, guest_dir), size)

    def clear(self, record: Dict[str, Any], guest_dir: str, ranges: List[Range]) -> bool:
        punch(self.host, self.target(record, guest_dir), ranges)
        return True


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

    def _lv(self, vg: str, lv: str) -> Optional[Tuple[str, List[str]]]:
        """(path, tags) of volume *vg*/*lv*, None if there is none."""
        result = self.host.run("lvs", ["--noheadings", "--separator", "|",
                                       "-o", "lv_path,lv_tags", f"{vg}/{lv}"], check=False)
        path, _, tags = result.stdout.strip().partition("|")
        if result.returncode or not path:
            return None
        return path, [t for t in tags.split(",") if t]

    def check(self, guest: str, disk: DiskConfig,
              replaced: Optional[Dict[str, Any]] = None) -> None:
        vg, lv = self.group_for(disk), self.lv_prefix + guest
        if self.host.run("vgs", ["--noheadings", "-o", "vg_name", vg], check=False).returncode:
            hint = (f" (create it on {disk.device} with pvcreate and vgcreate)"
                    if disk.device else "")
            raise ManagerError(f"volume group {vg} does not exist{hint}")
        freed = (replaced or {}).get("backend") == self.name and \
            (replaced or {}).get("vg") == vg and (replaced or {}).get("lv") == lv
        if not freed and self._lv(vg, lv):
            raise ManagerError(f"logical volume {vg}/{lv} exists already: remove it or "
                               "choose another guest name")

    def reserve(self, guest: str, disk: DiskConfig, size: int) -> Dict[str, Any]:
        return {"backend": self.name, "vg": self.group_for(disk), "lv": self.lv_prefix + guest,
                "tag": f"xenguest-{os.urandom(16).hex()}", "path": "", "size": size}

    def switch_commands(self) -> Set[str]:
        return self.commands() | {"lvresize"}

    def reserve_store(self, disk: Dict[str, Any], size: int) -> Dict[str, Any]:
        return {"backend": self.name, "vg": disk["vg"],
                "lv": f"{disk['lv']}+{os.urandom(4).hex()}",
                "tag": f"xenguest-{os.urandom(16).hex()}", "path": "", "size": size}

    def disk_bytes(self, record: Dict[str, Any], guest_dir: str) -> int:
        result = self.host.run("lvs", ["--noheadings", "--units", "b", "--nosuffix",
                                       "-o", "lv_size", f"{record['vg']}/{record['lv']}"])
        size = result.stdout.strip()
        if not size.isdigit():
            raise ManagerError(f"lvs shows no size for {record['vg']}/{record['lv']}: "
                               f"{size!r}")
        return int(size)

    def resize(self, record: Dict[str, Any], guest_dir: str, size: int, exact: bool) -> None:
        current = self.disk_bytes(record, guest_dir)
        if current == size or (current > size and not exact):
            return
        wanted = f"{size}b" if exact else f"{-(-size // MIB)}m"
        self.host.run("lvresize", ["--force", "-L", wanted, f"{record['vg']}/{record['lv']}"])

    def allocate(self, record: Dict[str, Any], folder: str) -> Allocation:
        vg, lv = record["vg"], record["lv"]
        mib = -(-record["size"] // MIB)
        self.host.run("lvcreate", ["--yes", "--wipesignatures", "y", "--zero", "y",
                                   "--addtag", record["tag"], "-L", f"{mib}m", "-n", lv, vg])
        found = self._lv(vg, lv)
        if not found:
            raise ManagerError(f"lvcreate made {vg}/{lv} but lvs does not show it")
        record["path"] = found[0]
        return Allocation(found[0], False)

    def target(self, record: Dict[str, Any], guest_dir: str) -> str:
        return str(record["path"])

    def free(self, record: Dict[str, Any], guest_dir: str) -> None:
        """Remove the recorded volume — only if it carries the record's tag (records
        made before tags were used name no tag)."""
        vg, lv, tag = record["vg"], record["lv"], record.get("tag")
        for attempt in range(1, self.remove_attempts + 1):
            found = self._lv(vg, lv)
            if not found:
                return
            if tag and tag not in found[1]:
                log.warning("logical volume %s/%s was not made for this guest (no tag %s): "
                            "left alone", vg, lv, tag)
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
        return FileBackend(host)
    if name == "lvm":
        return LvmBackend(host, config.volume_group, config.lv_prefix)
    raise ManagerError(f"unknown disk backend {name!r}")

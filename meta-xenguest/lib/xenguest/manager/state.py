"""The state folder: one folder per guest, a record of what was made, per-guest locks.

Layout below the state folder (``/var/lib/xenguest`` by default)::

    guests/NAME/                  the guest: its image's configuration, files/
                                  and init scripts (everything but disk/), plus
    guests/NAME/xenguest-manager.json   what the manager made (image, disk, ...)
    guests/NAME/disk.img          the disk (file backend)
    guests/NAME/xl.cfg            the xl configuration of the last start
    guests/.NAME.partial/         a guest being created (renamed to NAME at the end)
    guests/.NAME.removing/        a guest being deleted
    guests/.NAME.switch/          an update or rollback under way (see .switch)
    guests/.NAME.previous/        the image before the last update, kept for rollback
    locks/NAME.lock               serializes commands on guest NAME

A guest exists when ``guests/NAME/xenguest-manager.json`` exists, or while an
update or rollback of it is under way (its folder is renamed for a moment).
Lock files are never deleted (deleting a lock file others wait on would break
the lock).
"""

import errno
import fcntl
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional

from ..format.layout import GUEST_NAME, HOST_CONFIG, HOST_DISK, HOST_RECORD
from ..fsutil import naming
from ..locking import locked_temp, remove_stale_temps
from . import ManagerError

log = logging.getLogger("xenguest.manager")

GUESTS = "guests"
LOCKS = "locks"
RECORD = HOST_RECORD
DISK_FILE = HOST_DISK
RECORD_VERSION = 1
#: The journal of an update or rollback (in .NAME.switch/ and .NAME.previous/).
JOURNAL = "switch.json"
SWITCH_SUFFIX = ".switch"
PREVIOUS_SUFFIX = ".previous"
#: Lock file (in locks/) of the guests' network addresses: not a guest name.
ADDRESSES_LOCK = ".addresses.lock"



def check_guest_name(name: str) -> str:
    """Return *name* if it is a valid guest name, else raise ManagerError.

    Guest names (the library's ``GUEST_NAME``, also used by ``--xen-name``): 1 to
    64 letters, digits, '.', '_' and '-', starting with a letter or a digit.
    They name a Xen domain, a folder and a logical volume.
    """
    if not GUEST_NAME.match(name or ""):
        raise ManagerError(
            f"invalid guest name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or a digit")
    return name


CONFIG_FILE = HOST_CONFIG


@dataclass
class GuestRecord:
    """What the manager knows about a guest it created."""

    name: str
    image: str
    created: str
    network: str = "none"
    #: None (no disk) or {"backend": "file"|"lvm", "size": bytes, "path": ..., ...}.
    disk: Optional[Dict[str, Any]] = None
    #: None, or the guest's stable network addresses: {"mac": ..., "ipv4": ...}
    #: (ipv4 for nat guests only), chosen at its first start.
    nic: Optional[Dict[str, str]] = None
    version: int = RECORD_VERSION
    extra: Dict[str, Any] = field(default_factory=dict)
    #: When the guest last changed image (update or rollback), ISO 8601; "" never.
    updated: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> "GuestRecord":
        try:
            data = json.loads(text)
            return cls(name=data["name"], image=data["image"], created=data["created"],
                       network=data.get("network", "none"), disk=data.get("disk"),
                       nic=data.get("nic"),
                       version=int(data.get("version", RECORD_VERSION)),
                       extra=dict(data.get("extra") or {}), updated=data.get("updated", ""))
        except (ValueError, KeyError, TypeError) as e:
            raise ManagerError(f"{where}: damaged guest record ({e})") from None


#: The steps of a switch (an update or a rollback, :mod:`.switch`), in order.
PHASES = ("staging", "stopping", "saving", "installing", "swapping", "trial", "done")
#: What a switch is ("": not decided yet, while it is staged).
SWITCH_KINDS = ("", "update", "rollback")


@dataclass
class Journal:
    """What an update or a rollback of a guest does: written before each of its steps
    (see :mod:`.switch`), then kept with the previous image as what restores it."""

    #: update or rollback.
    kind: str
    #: The step under way (:data:`PHASES`).
    phase: str
    #: Whether the guest ran before (it is started again if the switch is undone).
    was_running: bool = False
    #: Whether the new image's guest is started and checked before the switch is done.
    trial: bool = False
    #: The guest's disk record before the switch (None: no disk).
    disk: Optional[Dict[str, Any]] = None
    old_size: int = 0
    new_size: int = 0
    #: (start, length) of the kept partitions.
    kept: List[List[int]] = field(default_factory=list)
    #: (start, length) of the disk's other ranges, as they were: stacked in the store.
    saved: List[List[int]] = field(default_factory=list)
    #: The record of the store holding them (a disk record of the guest's backend).
    store: Optional[Dict[str, Any]] = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def save(self, folder: str) -> None:
        write_atomic(os.path.join(folder, JOURNAL), self.to_json())


def read_journal(folder: str) -> Optional[Journal]:
    """The journal in *folder*, None if it has none; ManagerError if it is damaged."""
    path = os.path.join(folder, JOURNAL)
    try:
        with open(path, encoding="utf-8") as f:
            journal = Journal(**json.load(f))
        if journal.phase not in PHASES or journal.kind not in SWITCH_KINDS:
            raise ValueError(f"unknown step {journal.kind!r} {journal.phase!r}")
        return journal
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        raise ManagerError(f"{path}: damaged journal ({e}): remove the folder by hand "
                           "after checking the guest") from None


class StateStore:
    """The state folder of the manager."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.guests = os.path.join(root, GUESTS)
        self.locks = os.path.join(root, LOCKS)

    def guest_dir(self, name: str) -> str:
        return os.path.join(self.guests, name)

    def partial_dir(self, name: str) -> str:
        return os.path.join(self.guests, f".{name}.partial")

    def removing_dir(self, name: str) -> str:
        return os.path.join(self.guests, f".{name}.removing")

    def switch_dir(self, name: str) -> str:
        """The folder of an update or rollback of *name* under way."""
        return os.path.join(self.guests, f".{name}{SWITCH_SUFFIX}")

    def previous_dir(self, name: str) -> str:
        """The folder of the image *name* had before its last update."""
        return os.path.join(self.guests, f".{name}{PREVIOUS_SUFFIX}")

    def exists(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.guest_dir(name), RECORD))

    def names(self) -> List[str]:
        """Every guest, sorted (those with an update under way included)."""
        return sorted(set(n for n in self._entries() if GUEST_NAME.match(n) and self.exists(n))
                      | set(self.switching()))

    def switching(self) -> List[str]:
        """The guests with an update or rollback under way (or interrupted)."""
        return sorted(n[1:-len(SWITCH_SUFFIX)] for n in self._entries()
                      if n.startswith(".") and n.endswith(SWITCH_SUFFIX)
                      and GUEST_NAME.match(n[1:-len(SWITCH_SUFFIX)]))

    def _entries(self) -> List[str]:
        try:
            return os.listdir(self.guests)
        except FileNotFoundError:
            return []

    def load(self, name: str) -> GuestRecord:
        """The record of guest *name*; ManagerError when there is no such guest."""
        check_guest_name(name)
        path = os.path.join(self.guest_dir(name), RECORD)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise ManagerError(f"no guest {name} (see 'xenguest-manager list')") from None
        return GuestRecord.from_json(text, path)

    @staticmethod
    def save(folder: str, record: GuestRecord) -> None:
        """Write *record* into *folder* atomically."""
        write_atomic(os.path.join(folder, RECORD), record.to_json())

    def prepare(self) -> None:
        """Create the state folder's sub-folders."""
        for path in (self.guests, self.locks):
            try:
                os.makedirs(path, 0o755, exist_ok=True)
            except OSError as e:
                raise ManagerError(f"cannot create {path}: {e.strerror}") from None

    @contextmanager
    def lock(self, name: str, timeout: float, sleep: Any = time.sleep) -> Iterator[None]:
        """Hold the lock of guest *name* (waits up to *timeout* seconds for it)."""
        self.prepare()
        path = os.path.join(self.locks, f"{check_guest_name(name)}.lock")
        with hold_lock(path, timeout, f"guest {name}", sleep):
            yield

    @contextmanager
    def addresses_lock(self, timeout: float) -> Iterator[None]:
        """Hold the lock under which guests' network addresses are chosen."""
        self.prepare()
        with hold_lock(os.path.join(self.locks, ADDRESSES_LOCK), timeout,
                       "the guests' address book"):
            yield

    def delete_guest(self, name: str) -> None:
        """Delete guest *name*'s folder: renamed aside first, so that it vanishes at once."""
        folder = self.guest_dir(name)
        if not os.path.lexists(folder):
            return
        aside = self.removing_dir(name)
        discard(aside)
        os.rename(folder, aside)
        discard(aside)


@contextmanager
def hold_lock(path: str, timeout: float, what: str, sleep: Any = time.sleep) -> Iterator[None]:
    """Hold an exclusive flock on file *path* (created if needed), waiting up to
    *timeout* seconds; *what* names what it protects in messages."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ManagerError(f"cannot open lock file {path}: {e.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise ManagerError(f"cannot lock {path}: {e.strerror}") from None
            if time.monotonic() >= deadline:
                raise ManagerError(
                    f"{what} is busy: another xenguest-manager command still holds "
                    f"{path} after {timeout:g} s")
            if not waited:
                log.info("waiting for another xenguest-manager command on %s", what)
                waited = True
            sleep(0.1)
        yield
    finally:
        os.close(fd)


def discard(path: str) -> None:
    """Delete a folder tree if it exists."""
    if os.path.lexists(path):
        shutil.rmtree(path)


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Write *text* to *path* through a temporary file and a rename; the temporary
    files of killed commands are removed first (see :mod:`xenguest.locking`)."""
    remove_stale_temps(path)
    fd, tmp = locked_temp(path)
    try:
        with os.fdopen(os.dup(fd), "w", encoding="utf-8") as f, naming(path):
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        os.close(fd)


def read_record_if_any(folder: str) -> Optional[GuestRecord]:
    """The record in *folder*, or None if it has none or it is unreadable."""
    path = os.path.join(folder, RECORD)
    try:
        with open(path, encoding="utf-8") as f:
            return GuestRecord.from_json(f.read(), path)
    except (OSError, ManagerError):
        return None

"""The guest disk description: ``disk.cfg`` and the payload files in ``disk/``.

``disk.cfg`` holds ``DISK_SIZE``, ``DISK_DEVICE``, ``DISK_PART1`` .. ``DISK_PART4``
(``"SIZE:FS:CONTENT"``) and ``DISK_KEEP`` (the numbers of the partitions whose data
survives an update of the guest, separated by spaces: a key of its own, because
the earlier tool and this project's earlier versions read exactly three fields in
``DISK_PART<N>``); other keys are kept untouched.  A prebuilt disk — the
whole disk, already built from that description — is named by
``DISK_PREBUILT`` (a file in ``disk/``: ``.img``, or ``.img.zst`` whose zstd
header records its size) with ``DISK_PREBUILT_FROM``, the
:func:`~xenguest.disk.identity.description_digest` of the description and content
it was built from; tools that know neither key ignore them and build the disk.
An update writes a prebuilt disk's bytes everywhere except over the partitions
it keeps (see :mod:`xenguest.disk.build`).

Units (the earlier tool's convention, which images in the field rely on):
M = MiB (1048576 bytes); G = 1000 MiB; a bare number = G.  So ``4``, ``4G`` and
``4000M`` are the same size.  Sizes are handled as an int count of MiB and written
as ``<N>M`` (``0`` for no disk).  ``DISK_SIZE`` 0 (or absent, or empty) means no disk.

FS is one of :data:`FILESYSTEMS` or empty (no format; ``none`` is read as empty).
CONTENT is empty or the plain name of a file in ``disk/`` ending in one of
:data:`CONTENT_SUFFIXES`: a tar archive is unpacked into the formatted partition, an
image is written raw over the partition.
"""

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Collection, Dict, List, Optional, Tuple, TypeVar

from ..errors import DiskConfigError
from ..problems import Problem, error, warning
from ..shellvars import ShellVarFile

FILESYSTEMS: Tuple[str, ...] = ("ext2", "ext3", "ext4", "vfat", "swap")
CONTENT_SUFFIXES: Tuple[str, ...] = (
    ".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst",
    ".img", ".img.gz", ".img.bz2", ".img.xz", ".img.zst",
)
PARTITION_NUMBERS: Tuple[int, ...] = (1, 2, 3, 4)
#: The largest size accepted: 64 TiB, in MiB.
MAX_SIZE_MIB = 64 * 1024 * 1024
#: MiB per G (the earlier tool's convention).
MIB_PER_G = 1000

SOURCE = "disk.cfg"
T = TypeVar("T")
_SIZE_RE = re.compile(r"([0-9]+)([MmGg]?)")
_CONTENT_RE = re.compile(r"[A-Za-z0-9._+-]+")
_PART_KEY_RE = re.compile(r"DISK_PART([0-9]+)")
KEEP_KEY = "DISK_KEEP"
#: The suffix of a kept partition in ``--disk-add-part``.
KEEP_FLAG = "keep"
PREBUILT_KEY = "DISK_PREBUILT"
PREBUILT_FROM_KEY = "DISK_PREBUILT_FROM"
#: Name endings of a prebuilt disk: raw, or zstd (its header records the size).
PREBUILT_SUFFIXES: Tuple[str, ...] = (".img", ".img.zst")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_DEVICE_FORBIDDEN = frozenset("'\"$`;&|<>()")
_SIZE_HELP = "expected a whole number with an optional M or G suffix (M = MiB, G = 1000 MiB)"


def parse_size(text: str) -> int:
    """Read a size (``4``, ``4G``, ``4000M``, ``512m``) and return it in MiB.

    Raises :class:`DiskConfigError` naming the value when it is not a whole,
    non-negative size of at most 64 TiB.
    """
    match = _SIZE_RE.fullmatch(text)
    if not match:
        if not text:
            raise DiskConfigError(f"empty size: {_SIZE_HELP}")
        if text.startswith("-"):
            raise DiskConfigError(f"invalid size {text!r}: a size cannot be negative")
        if re.fullmatch(r"[0-9]*[.,][0-9]*[MmGg]?", text):
            raise DiskConfigError(
                f"invalid size {text!r}: fractional sizes are not supported "
                "(write 1500M rather than 1.5G)"
            )
        raise DiskConfigError(f"invalid size {text!r}: {_SIZE_HELP}")
    digits, unit = match.groups()
    if len(digits.lstrip("0")) > 12:  # far beyond the limit; avoids huge int arithmetic
        raise DiskConfigError(f"invalid size {text!r}: larger than 64 TiB")
    mib = int(digits) if unit in ("M", "m") else int(digits) * MIB_PER_G
    if mib > MAX_SIZE_MIB:
        raise DiskConfigError(f"invalid size {text!r}: larger than 64 TiB")
    return mib


def format_size(mib: int) -> str:
    """Write a size in MiB as stored in disk.cfg: ``4000M``, or ``0`` for none."""
    if mib < 0 or mib > MAX_SIZE_MIB:
        raise DiskConfigError(f"invalid size {mib}M: must be 0 to 64 TiB")
    return f"{mib}M" if mib else "0"


def _content_suffix(name: str) -> str:
    for suffix in sorted(CONTENT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise DiskConfigError(
        f"invalid partition content {name!r}: the name must end in one of "
        + ", ".join(CONTENT_SUFFIXES)
    )


def content_kind(name: str) -> str:
    """``"tar"`` (unpacked into the filesystem) or ``"img"`` (written raw) for *name*."""
    return _content_suffix(name)[1:].split(".")[0]


def content_compression(name: str) -> str:
    """The compression of content *name*: one of :data:`xenguest.disk.compression.COMPRESSIONS`
    (``""``, ``"gz"``, ``"bz2"``, ``"xz"``, ``"zst"``)."""
    parts = _content_suffix(name)[1:].split(".")
    return parts[1] if len(parts) > 1 else ""


def check_content_name(name: str) -> str:
    """Return *name* if it is a valid content file name, else raise DiskConfigError.

    A content name is a plain file name in ``disk/``: characters ``A-Za-z0-9._+-``,
    not starting with ``.`` or ``-``, no ``..``, ending in one of CONTENT_SUFFIXES.
    """
    if not _CONTENT_RE.fullmatch(name) or name.startswith((".", "-")) or ".." in name:
        raise DiskConfigError(
            f"invalid partition content {name!r}: expected a plain file name in disk/ "
            "(letters, digits, '.', '_', '+', '-'; not starting with '.' or '-')"
        )
    _content_suffix(name)
    return name


def check_prebuilt_name(name: str) -> str:
    """Return *name* if it can name a prebuilt disk in ``disk/``, else raise DiskConfigError."""
    check_content_name(name)
    if _content_suffix(name) not in PREBUILT_SUFFIXES:
        raise DiskConfigError(
            f"invalid prebuilt disk {name!r}: the name must end in .img (raw) or .img.zst "
            "(zstd, which records the disk's size)")
    return name


def check_description_digest(text: str) -> str:
    """Return *text* if it is a ``sha256:<64 hex digits>`` digest, else raise."""
    if not _DIGEST_RE.fullmatch(text):
        raise DiskConfigError(f"invalid digest {text!r}: expected sha256: and 64 lowercase "
                              "hex digits")
    return text


def check_device(text: str) -> str:
    """Return *text* if it can be a device path (DISK_DEVICE), else raise DiskConfigError."""
    bad = [c for c in text if c in _DEVICE_FORBIDDEN or c.isspace() or not c.isprintable()]
    if bad:
        raise DiskConfigError(
            f"invalid disk device {text!r}: {bad[0]!r} cannot be part of a device path"
        )
    return text


def _parse_fs(text: str) -> str:
    if text in ("", "none"):
        return ""
    if text not in FILESYSTEMS:
        raise DiskConfigError(
            f"invalid filesystem {text!r}: expected one of {', '.join(FILESYSTEMS)}, "
            "or nothing for no format"
        )
    return text


@dataclass
class Partition:
    """One partition: number 1-4, size in MiB (> 0), filesystem ("" = none), content,
    and whether its data survives updates (*keep*)."""

    number: int
    size_mib: int
    fs: str = ""
    content: str = ""
    keep: bool = False

    @classmethod
    def parse(cls, number: int, spec: str) -> "Partition":
        """Read ``SIZE:FS:CONTENT`` for partition *number*; raises DiskConfigError."""
        if number not in PARTITION_NUMBERS:
            raise DiskConfigError(f"the partition number must be 1 to 4 (got {number})")
        fields = spec.split(":")
        if len(fields) != 3:
            raise DiskConfigError(
                f"expected SIZE:FS:CONTENT (FS and CONTENT may be empty), got {spec!r}"
            )
        size_text, fs_text, content = fields
        size = parse_size(size_text)
        if size == 0:
            raise DiskConfigError("the partition size must be above 0")
        if content:
            check_content_name(content)
        return cls(number, size, _parse_fs(fs_text), content)

    @classmethod
    def parse_option(cls, text: str) -> "Partition":
        """Read ``NUM:SIZE:FS:CONTENT[:keep]`` (the ``--disk-add-part`` value)."""
        number_text, _, spec = text.partition(":")
        keep = text.count(":") == 4 and spec.endswith(":" + KEEP_FLAG)
        if keep:
            spec = spec[:-len(KEEP_FLAG) - 1]
        if spec.count(":") != 2 or not re.fullmatch(r"[0-9]{1,3}", number_text):
            raise DiskConfigError(
                f"invalid partition {text!r}: expected NUM:SIZE:FS:CONTENT or "
                f"NUM:SIZE:FS:CONTENT:{KEEP_FLAG} with NUM 1 to 4 (FS and CONTENT may be empty)"
            )
        part = _in_key_prefix(f"invalid partition {text!r}", cls.parse, int(number_text), spec)
        return replace(part, keep=keep)

    def spec(self) -> str:
        """The ``SIZE:FS:CONTENT`` form written in disk.cfg."""
        return f"{format_size(self.size_mib)}:{self.fs}:{self.content}"

    @property
    def key(self) -> str:
        """The disk.cfg variable of this partition (``DISK_PART1``)."""
        return f"DISK_PART{self.number}"

    def as_dict(self) -> dict:
        """A JSON-ready description of the partition."""
        return {
            "number": self.number,
            "size_mib": self.size_mib,
            "size": format_size(self.size_mib),
            "fs": self.fs,
            "content": self.content,
            "keep": self.keep,
        }


@dataclass
class DiskConfig:
    """The disk of a guest: size in MiB (0 = no disk), host device, partitions by number,
    and the prebuilt disk (a ``disk/`` file name, "" for none) with the description
    digest it was built from."""

    size_mib: int = 0
    device: str = ""
    partitions: Dict[int, Partition] = field(default_factory=dict)
    prebuilt: str = ""
    prebuilt_from: str = ""

    @classmethod
    def from_vars(cls, vars: ShellVarFile) -> "DiskConfig":
        """Read disk.cfg variables; raises DiskConfigError ``disk.cfg: KEY: ...``."""
        result = cls()
        size = vars.get("DISK_SIZE")
        if size:
            result.size_mib = _in_key("DISK_SIZE", parse_size, size)
        result.device = _in_key("DISK_DEVICE", check_device, vars.get("DISK_DEVICE") or "")
        for key, value in vars.items():
            match = _PART_KEY_RE.fullmatch(key)
            if not match:
                continue
            if match.group(1) not in ("1", "2", "3", "4"):
                raise DiskConfigError(f"{SOURCE}: {key}: partition numbers are 1 to 4")
            number = int(match.group(1))
            if value:
                result.partitions[number] = _in_key(key, Partition.parse, number, value)
        for number in _in_key(KEEP_KEY, _kept_numbers, vars.get(KEEP_KEY) or ""):
            if number not in result.partitions:
                raise DiskConfigError(f"{SOURCE}: {KEEP_KEY}: partition {number} is not defined")
            result.partitions[number].keep = True
        result.prebuilt = _in_key(PREBUILT_KEY, _optional, check_prebuilt_name,
                                  vars.get(PREBUILT_KEY))
        result.prebuilt_from = _in_key(PREBUILT_FROM_KEY, _optional, check_description_digest,
                                       vars.get(PREBUILT_FROM_KEY))
        if bool(result.prebuilt) != bool(result.prebuilt_from):
            given, missing = ((PREBUILT_KEY, PREBUILT_FROM_KEY) if result.prebuilt
                              else (PREBUILT_FROM_KEY, PREBUILT_KEY))
            raise DiskConfigError(f"{SOURCE}: {given} is set but {missing} is not: "
                                  "a prebuilt disk needs both")
        return result

    def to_vars(self, vars: ShellVarFile) -> None:
        """Write DISK_SIZE, DISK_DEVICE and DISK_PART1..4 into *vars*; other keys are kept.

        Absent partitions are removed; a value that already means the same is left as
        written (``4`` is not rewritten to ``4000M``).
        """
        format_size(self.size_mib)
        check_device(self.device)
        for number, part in self.partitions.items():
            _check_partition(number, part)
        old_size = vars.get("DISK_SIZE")
        if old_size is None or _size_or_none(old_size) != self.size_mib:
            vars.set("DISK_SIZE", format_size(self.size_mib))
        if vars.get("DISK_DEVICE") != self.device:
            vars.set("DISK_DEVICE", self.device)
        wanted = {f"DISK_PART{n}" for n in self.partitions}
        for key in vars.keys():
            if _PART_KEY_RE.fullmatch(key) and key not in wanted:
                vars.remove(key)
        for number in sorted(self.partitions):
            part = self.partitions[number]
            old = vars.get(part.key)
            if old is None or _partition_or_none(number, old) != replace(part, keep=False):
                vars.set(part.key, part.spec())
        kept = [n for n in sorted(self.partitions) if self.partitions[n].keep]
        old_keep = vars.get(KEEP_KEY)
        if not kept and old_keep is not None:
            vars.remove(KEEP_KEY)
        elif kept and (old_keep is None or _kept_or_none(old_keep) != kept):
            vars.set(KEEP_KEY, " ".join(str(n) for n in kept))
        if self.prebuilt:
            check_prebuilt_name(self.prebuilt)
            check_description_digest(self.prebuilt_from)
        for key, value in ((PREBUILT_KEY, self.prebuilt), (PREBUILT_FROM_KEY, self.prebuilt_from)):
            if value and vars.get(key) != value:
                vars.set(key, value)
            elif not value and vars.get(key) is not None:
                vars.remove(key)

    def problems(self, disk_files: Optional[Collection[str]]) -> List[Problem]:
        """Check the description against itself and the files in ``disk/``.

        *disk_files* are the names of the files in ``disk/``; None skips the checks
        that need them.  A disk whose partitions fill it exactly is valid.
        """
        found: List[Problem] = []
        parts = [self.partitions[n] for n in sorted(self.partitions)]
        total = sum(p.size_mib for p in parts)
        if parts and self.size_mib == 0:
            found.append(error(SOURCE, "partitions are defined but DISK_SIZE is 0 (no disk)"))
        elif total > self.size_mib:
            found.append(error(
                SOURCE,
                f"the partitions need {total}M but DISK_SIZE is {self.size_mib}M",
            ))
        users: Dict[str, str] = {}
        if self.prebuilt:
            users[self.prebuilt] = PREBUILT_KEY
            if self.size_mib == 0:
                found.append(error(f"{SOURCE}: {PREBUILT_KEY}",
                                   "a prebuilt disk, but DISK_SIZE is 0 (no disk)"))
            if disk_files is not None and self.prebuilt not in disk_files:
                found.append(error(f"{SOURCE}: {PREBUILT_KEY}",
                                   f"{self.prebuilt} is not in disk/"))
        for part in parts:
            found.extend(self._partition_problems(part, disk_files, users))
        if disk_files is not None:
            for name in sorted(set(disk_files) - set(users)):
                found.append(warning(SOURCE, f"disk/{name} is not used by any partition"))
        return found

    @staticmethod
    def _partition_problems(part: Partition, disk_files: Optional[Collection[str]],
                            users: Dict[str, str]) -> List[Problem]:
        where = f"{SOURCE}: {part.key}"
        if not part.content:
            return []
        found: List[Problem] = []
        if part.content in users:
            found.append(error(
                where, f"content {part.content} is already used by {users[part.content]}"
            ))
        else:
            users[part.content] = part.key
        if disk_files is not None and part.content not in disk_files:
            found.append(error(where, f"content {part.content} is not in disk/"))
        kind = content_kind(part.content)
        if kind == "tar" and part.fs in ("", "swap"):
            what = "no filesystem" if not part.fs else "swap"
            found.append(error(
                where, f"tar content {part.content} needs a filesystem to unpack into, "
                f"but the partition has {what}"
            ))
        elif kind == "img" and part.fs:
            found.append(warning(
                where, f"image content {part.content} is written raw over the partition: "
                f"the {part.fs} format is replaced by it"
            ))
        return found

    def as_dict(self) -> dict:
        """A JSON-ready description (for ``--json``)."""
        return {
            "size_mib": self.size_mib,
            "size": format_size(self.size_mib),
            "device": self.device,
            "partitions": [self.partitions[n].as_dict() for n in sorted(self.partitions)],
            "prebuilt": self.prebuilt,
            "prebuilt_from": self.prebuilt_from,
        }


def disk_bytes(disk: DiskConfig) -> int:
    """The size of the disk *disk* describes, in bytes: DISK_SIZE, or more when the
    partitions and the 1 MiB in front of them need more."""
    needed = 1 + sum(p.size_mib for p in disk.partitions.values())
    return max(disk.size_mib, needed) << 20


def _in_key_prefix(prefix: str, func: Callable[..., T], *args: Any) -> T:
    """Call *func*; prefix a DiskConfigError it raises with *prefix*."""
    try:
        return func(*args)
    except DiskConfigError as exc:
        raise exc.prefixed(prefix) from None


def _in_key(key: str, func: Callable[..., T], *args: Any) -> T:
    """Call *func*; prefix a DiskConfigError with ``disk.cfg: KEY``."""
    return _in_key_prefix(f"{SOURCE}: {key}", func, *args)


def _check_partition(number: int, part: Partition) -> None:
    """Refuse a partition built in code that disk.cfg could not hold as is."""
    if part.number != number:
        raise DiskConfigError(f"partition {part.number} is stored as partition {number}")
    if part.size_mib <= 0:
        raise DiskConfigError(f"partition {number}: the partition size must be above 0")
    parsed = _in_key_prefix(f"partition {number}", Partition.parse, number, part.spec())
    if replace(parsed, keep=part.keep) != part:
        raise DiskConfigError(f"partition {number}: invalid filesystem {part.fs!r}")


def _optional(check: Callable[[str], str], value: Optional[str]) -> str:
    """*value* checked by *check*, or "" when it is absent or empty."""
    return check(value) if value else ""


def _size_or_none(text: str) -> Optional[int]:
    if not text:
        return 0
    try:
        return parse_size(text)
    except DiskConfigError:
        return None


def _kept_numbers(text: str) -> List[int]:
    """The partition numbers of a DISK_KEEP value, sorted."""
    numbers = set()
    for word in text.split():
        if word not in ("1", "2", "3", "4"):
            raise DiskConfigError(f"{word!r} is not a partition number (1 to 4)")
        numbers.add(int(word))
    return sorted(numbers)


def _kept_or_none(text: str) -> Optional[List[int]]:
    try:
        return _kept_numbers(text)
    except DiskConfigError:
        return None


def _partition_or_none(number: int, text: str) -> Optional[Partition]:
    try:
        return Partition.parse(number, text)
    except DiskConfigError:
        return None

"""Build a guest disk from ``disk.cfg``: partition table, filesystems and content.

Layout: an msdos partition table; the first partition starts at 1 MiB and the
partitions follow each other in number order, each exactly its described size
(MiB; ``G`` is 1000 MiB), keeping its number (a missing number is an unused
slot, not a filler partition).  The disk is DISK_SIZE, or grows by what the
partitions and the 1 MiB in front of them need beyond it: an image whose
partitions add up exactly to DISK_SIZE gets a disk of DISK_SIZE + 1 MiB.

Everything is written at byte offsets into the target (a file or a block
device) — nothing is mounted and no loop device is needed:

* the table with ``sfdisk``;
* ext2/3/4 with ``mke2fs -E offset=``, vfat with ``mkfs.vfat --offset``;
  swap with ``mkswap`` on a sparse scratch file whose written blocks (the
  header) are then copied into the partition;
* ``.img[.gz|.bz2|.xz|.zst]`` content is decompressed (:mod:`xenguest.disk.compression`)
  and written raw over the partition (refused when larger than the partition);
  such a partition is not formatted first;
* ``.tar[.gz|.bz2|.xz|.zst]`` content is streamed into the new filesystem
  (:mod:`.populate`).
"""

import contextlib
import logging
import os
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Callable, Collection, ContextManager, Iterator, Optional, Set, Tuple

from ..errors import DiskError, step
from ..fsutil import naming
from ..programs import Host
from .compression import corrupt_errors, decompressed, program_needed
from .config import DiskConfig, content_compression, content_kind
from .populate import ExtPopulator, VfatPopulator, make_scratch, populate, remove_scratch
from .regions import copy_bytes, data_extents, write_all

log = logging.getLogger("xenguest.manager")

MIB = 1 << 20
SECTOR = 512
CHUNK = 1024 * 1024
#: msdos partition type of each filesystem ("" = not formatted).
TYPE_CODES = {"": "83", "ext2": "83", "ext3": "83", "ext4": "83", "vfat": "c", "swap": "82"}
_ZEROS = bytes(CHUNK)


@dataclass(frozen=True)
class PlannedPartition:
    """Where one partition goes (bytes) and what fills it."""

    number: int
    start: int
    size: int
    fs: str
    content: str

    @property
    def kind(self) -> str:
        """``tar``, ``img`` or ``""`` (no content)."""
        return content_kind(self.content) if self.content else ""

    @property
    def formatted(self) -> bool:
        """Whether a filesystem is made (raw image content replaces any format)."""
        return bool(self.fs) and self.kind != "img"

    def describe(self) -> str:
        what = [self.fs or "no filesystem"]
        if self.content:
            what.append(self.content)
        return f"partition {self.number} ({', '.join(what)})"


@dataclass(frozen=True)
class DiskPlan:
    """The whole disk: its size in bytes and its partitions in order."""

    size: int
    partitions: Tuple[PlannedPartition, ...]

    def commands(self) -> Set[str]:
        """The external commands provisioning needs."""
        needed: Set[str] = {"sfdisk"} if self.partitions else set()
        for part in self.partitions:
            program = program_needed(content_compression(part.content)) if part.content else None
            if program:
                needed.add(program)
            if part.formatted and part.fs.startswith("ext"):
                needed.add("mke2fs")
                if part.kind == "tar":
                    needed.add("debugfs")
            elif part.formatted and part.fs == "vfat":
                needed.add("mkfs.vfat")
                if part.kind == "tar":
                    needed.update(("mmd", "mcopy"))
            elif part.formatted and part.fs == "swap":
                needed.add("mkswap")
        return needed


def plan_disk(disk: DiskConfig) -> Optional[DiskPlan]:
    """The layout of *disk*, or None when the guest has no disk (DISK_SIZE 0)."""
    if disk.size_mib == 0:
        return None
    start = MIB
    parts = []
    for number in sorted(disk.partitions):
        part = disk.partitions[number]
        parts.append(PlannedPartition(number, start, part.size_mib * MIB, part.fs, part.content))
        start += part.size_mib * MIB
    return DiskPlan(max(disk.size_mib * MIB, start), tuple(parts))


def sfdisk_script(plan: DiskPlan) -> str:
    """The sfdisk input for *plan* (explicit partition numbers, sectors)."""
    lines = ["label: dos", "unit: sectors", ""]
    for part in plan.partitions:
        lines.append(f"part{part.number} : start={part.start // SECTOR}, "
                     f"size={part.size // SECTOR}, type={TYPE_CODES[part.fs]}")
    return "\n".join(lines) + "\n"


#: Opens the compressed content file NAME of ``disk/`` as a stream (a context manager).
ContentOpener = Callable[[str], ContextManager[BinaryIO]]


@contextlib.contextmanager
def open_content(open_raw: ContentOpener, name: str, host: Host) -> Iterator[BinaryIO]:
    """The decompressed content NAME, streamed from what *open_raw* opens; a program
    it needs (zstd where Python has no zstd) is found through *host*."""
    compression = content_compression(name)
    program = program_needed(compression)
    path = host.which(program) if program else None
    with open_raw(name) as raw:
        with decompressed(raw, compression, path) as stream:
            yield stream


#: What a corrupt compressed stream or archive raises while being read.
CORRUPT = (tarfile.TarError,) + corrupt_errors()


class Provisioner:
    """Writes a planned disk into *target* with the host's tools.

    *zeroed*: the target reads as zeros (a new sparse file), so raw content
    can skip its zero blocks and keep the file sparse.  *scratch_parent* is a
    folder for temporary staging (see :mod:`.populate`).
    """

    def __init__(self, host: Host, open_raw: ContentOpener, scratch_parent: str,
                 zeroed: bool) -> None:
        self.host = host
        self.open_raw = open_raw
        self.scratch_parent = scratch_parent
        self.zeroed = zeroed

    def provision(self, plan: DiskPlan, target: str, keep: Collection[int] = ()) -> None:
        """Write *plan* into *target*; the partitions numbered in *keep* are left as
        they are (an update keeps their data), only the table names them."""
        if plan.partitions:
            with step("write the partition table", DiskError):
                self.host.run("sfdisk", ["--no-reread", "--no-tell-kernel", "-q", target],
                              input=sfdisk_script(plan).encode())
        for part in plan.partitions:
            if part.number in keep:
                log.info("keeping %s", part.describe())
                continue
            with step(part.describe(), DiskError):
                self.partition(part, target)
        with step("flush the disk", DiskError):
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def partition(self, part: PlannedPartition, target: str) -> None:
        log.info("provisioning %s", part.describe())
        if part.formatted:
            self.format(part, target)
        if part.kind == "img":
            self.write_image(part, target)
        elif part.kind == "tar":
            self.unpack(part, target)

    def format(self, part: PlannedPartition, target: str) -> None:
        kib = part.size // 1024
        if part.fs.startswith("ext"):
            self.host.run("mke2fs", [
                "-q", "-F", "-t", part.fs,
                "-E", f"offset={part.start},nodiscard,root_owner=0:0",
                target, f"{kib}k"])
        elif part.fs == "vfat":
            sector = part.start // SECTOR
            self.host.run("mkfs.vfat", [f"--offset={sector}", "-h", str(sector),
                                        target, str(kib)])
        elif part.fs == "swap":
            self.make_swap(part, target)
        else:
            raise DiskError(f"unknown filesystem {part.fs!r}")

    def make_swap(self, part: PlannedPartition, target: str) -> None:
        """mkswap on a sparse scratch file of the partition's size, header copied over."""
        scratch = make_scratch(self.scratch_parent)
        try:
            area = os.path.join(scratch, "swap")
            fd = os.open(area, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, part.size)
                self.host.run("mkswap", [area])
                with _open_target(target) as out:
                    for start, length in data_extents(fd, 0, part.size):
                        copy_bytes(fd, start, out, part.start + start, length)
            finally:
                os.close(fd)
        finally:
            remove_scratch(scratch)

    def write_image(self, part: PlannedPartition, target: str) -> None:
        """Stream raw (decompressed) content over the partition, size-checked."""
        written = 0
        with self._content(part) as stream, _open_target(target) as fd:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                if written + len(chunk) > part.size:
                    raise DiskError(
                        f"{part.content} is larger than the partition "
                        f"({part.size // MIB} MiB)")
                if not (self.zeroed and chunk == _ZEROS[:len(chunk)]):
                    write_all(fd, chunk, part.start + written)
                written += len(chunk)
        log.info("wrote %d bytes of %s into partition %d", written, part.content, part.number)

    def unpack(self, part: PlannedPartition, target: str) -> None:
        scratch = make_scratch(self.scratch_parent)
        try:
            populator = (VfatPopulator(self.host, target, part.start) if part.fs == "vfat"
                         else ExtPopulator(self.host, target, part.start, scratch))
            with self._content(part) as stream:
                count = populate(populator, stream)
        finally:
            remove_scratch(scratch)
        log.info("unpacked %d members of %s into partition %d", count, part.content, part.number)

    @contextlib.contextmanager
    def _content(self, part: PlannedPartition) -> Iterator[BinaryIO]:
        """The content stream; a corrupt archive or compression becomes one clear error."""
        try:
            with open_content(self.open_raw, part.content, self.host) as stream:
                yield stream
        except CORRUPT as e:
            raise DiskError(f"{part.content} is corrupt or truncated: {e}") from None


@contextlib.contextmanager
def _open_target(target: str) -> Iterator[int]:
    fd = os.open(target, os.O_WRONLY)
    try:
        with naming(target):
            yield fd
    finally:
        os.close(fd)


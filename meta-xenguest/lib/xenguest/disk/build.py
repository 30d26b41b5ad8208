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

A prebuilt disk (``DISK_PREBUILT``: the same disk, built before) replaces all
of that: it is decompressed and written over the whole target in one stream,
after its partition table was found to be the one the description asks for;
zero blocks are skipped on a target that reads as zeros.  Its size must be the
disk's, exactly.

An update keeps the partitions marked ``keep`` (``DISK_KEEP``): they are
neither formatted nor filled, and a prebuilt disk is written around them — its
table, its other partitions and the gaps — so the guest's data stays.

With a :class:`~.identity.DiskIdentity` every identifier and time the tools
write is derived: the same description and content give the same bytes.
"""

import contextlib
import dataclasses
import logging
import os
import tarfile
from dataclasses import dataclass
from typing import (BinaryIO, Callable, Collection, ContextManager, Dict, Iterator, List,
                    Optional, Sequence, Set, Tuple)

from ..errors import DiskError, step
from ..fsutil import naming
from ..programs import Host
from .compression import (ContentTooLargeError, corrupt_errors, decompress_to_file,
                          decompressed, program_needed)
from .config import DiskConfig, content_compression, content_kind, disk_bytes
from .identity import DiskIdentity
from .prebuilt import TableEntry, table_problem
from .populate import ExtPopulator, VfatPopulator, make_scratch, populate, remove_scratch
from .regions import CHUNK, Range, complement, copy_bytes, data_extents, write_all

log = logging.getLogger("xenguest.manager")

MIB = 1 << 20
SECTOR = 512
#: msdos partition type of each filesystem ("" = not formatted).
TYPE_CODES = {"": "83", "ext2": "83", "ext3": "83", "ext4": "83", "vfat": "c", "swap": "82"}
_ZEROS = bytes(CHUNK)
#: Granularity of the holes left in a sparse target.
SPARSE_BLOCK = 64 * 1024


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
    """The whole disk: its size in bytes, its partitions in order and the prebuilt
    disk that holds all of it ("" for none: the disk is built)."""

    size: int
    partitions: Tuple[PlannedPartition, ...]
    prebuilt: str = ""

    def table(self) -> Tuple[TableEntry, ...]:
        """The msdos partition table of the disk: (number, first sector, sectors, type)."""
        return tuple((p.number, p.start // SECTOR, p.size // SECTOR, int(TYPE_CODES[p.fs], 16))
                     for p in self.partitions)

    def commands(self) -> Set[str]:
        """The external commands provisioning needs."""
        if self.prebuilt:
            program = program_needed(content_compression(self.prebuilt))
            return {program} if program else set()
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
    """The layout of *disk*, or None when the guest has no disk (DISK_SIZE 0); it is
    written from the prebuilt disk when *disk* names one."""
    if disk.size_mib == 0:
        return None
    start = MIB
    parts = []
    for number in sorted(disk.partitions):
        part = disk.partitions[number]
        parts.append(PlannedPartition(number, start, part.size_mib * MIB, part.fs, part.content))
        start += part.size_mib * MIB
    return DiskPlan(disk_bytes(disk), tuple(parts), disk.prebuilt)


def disk_commands(disk: DiskConfig) -> Set[str]:
    """The external commands that build *disk* from its partitions (none without a disk)."""
    plan = plan_disk(dataclasses.replace(disk, prebuilt="", prebuilt_from=""))
    return plan.commands() if plan else set()


def sfdisk_script(plan: DiskPlan, label_id: Optional[str] = None) -> str:
    """The sfdisk input for *plan* (explicit partition numbers, sectors); *label_id*
    is the disk identifier (default: sfdisk picks one at random)."""
    lines = ["label: dos"] + ([f"label-id: {label_id}"] if label_id else []) + \
        ["unit: sectors", ""]
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
    folder for temporary staging (see :mod:`.populate`).  *identity* gives the
    identifiers and the time the tools write (see :mod:`.identity`); without
    one the tools choose them (random, the clock).
    """

    def __init__(self, host: Host, open_raw: ContentOpener, scratch_parent: str,
                 zeroed: bool, identity: Optional[DiskIdentity] = None) -> None:
        self.host = host
        self.open_raw = open_raw
        self.scratch_parent = scratch_parent
        self.zeroed = zeroed
        self.identity = identity
        self.env: Dict[str, str] = identity.environment() if identity else {}

    def provision(self, plan: DiskPlan, target: str, keep: Collection[int] = ()) -> None:
        """Write *plan* into *target*; the partitions numbered in *keep* are left as
        they are (an update keeps their data): a prebuilt disk is written around
        them, and a built disk's table names them."""
        for part in plan.partitions:
            if part.number in keep:
                log.info("keeping %s", part.describe())
        if plan.prebuilt:
            with step(f"the prebuilt disk {plan.prebuilt}", DiskError):
                self.write_prebuilt(plan, target, keep)
        elif plan.partitions:
            label_id = self.identity.disk_id() if self.identity else None
            with step("write the partition table", DiskError):
                self.host.run("sfdisk", ["--no-reread", "--no-tell-kernel", "-q", target],
                              input=sfdisk_script(plan, label_id).encode())
        for part in plan.partitions if not plan.prebuilt else ():
            if part.number in keep:
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
            extended = f"offset={part.start},nodiscard,root_owner=0:0"
            uuid: List[str] = []
            if self.identity:
                extended += f",hash_seed={self.identity.uuid('hash_seed', part.number)}"
                uuid = ["-U", self.identity.uuid("uuid", part.number)]
            self.host.run("mke2fs", ["-q", "-F", "-t", part.fs, *uuid, "-E", extended,
                                     target, f"{kib}k"], env=self.env)
        elif part.fs == "vfat":
            sector = part.start // SECTOR
            volume = ["-i", self.identity.volume_id(part.number)] if self.identity else []
            self.host.run("mkfs.vfat", [f"--offset={sector}", "-h", str(sector), *volume,
                                        target, str(kib)], env=self.env)
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
                uuid = ["-U", self.identity.uuid("uuid", part.number)] if self.identity else []
                self.host.run("mkswap", [*uuid, area], env=self.env)
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
        with self._content(part.content) as stream, _open_target(target) as fd:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                if written + len(chunk) > part.size:
                    raise DiskError(
                        f"{part.content} is larger than the partition "
                        f"({part.size // MIB} MiB)")
                _write_data(fd, chunk, part.start + written, self.zeroed)
                written += len(chunk)
        log.info("wrote %d bytes of %s into partition %d", written, part.content, part.number)

    def write_prebuilt(self, plan: DiskPlan, target: str, keep: Collection[int] = ()) -> None:
        """Write the (decompressed) prebuilt disk over the target once its partition
        table is the planned one; its size must be the disk's.  The bytes of the
        partitions numbered in *keep* are not written: the target's stay."""
        kept = [(p.start, p.size) for p in plan.partitions if p.number in keep]
        program = program_needed(content_compression(plan.prebuilt))
        if self.zeroed and program and not kept:
            self._prebuilt_by_program(plan, target, self.host.which(program))
        else:
            self._prebuilt_by_stream(plan, target, complement(plan.size, kept))
        log.info("wrote the prebuilt disk %s (%d bytes)", plan.prebuilt, plan.size)

    def _prebuilt_by_stream(self, plan: DiskPlan, target: str,
                            ranges: Sequence[Range]) -> None:
        """Check the table in the first chunk, then write chunk by chunk what falls
        in *ranges* (start, length)."""
        name = plan.prebuilt
        written = 0
        with self._content(name) as stream, _open_target(target) as fd:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                if written == 0:
                    self._check_table(plan, chunk)
                if written + len(chunk) > plan.size:
                    raise DiskError(f"{name} is larger than the disk ({plan.size} bytes)")
                _write_within(fd, chunk, written, ranges, self.zeroed)
                written += len(chunk)
        if written != plan.size:
            raise DiskError(f"{name} holds {written} bytes, the disk has {plan.size}")

    def _prebuilt_by_program(self, plan: DiskPlan, target: str, program: str) -> None:
        """The decompressor writes the new sparse file itself, at most the disk's size;
        then its size and table are checked (a failure discards the file)."""
        name = plan.prebuilt
        try:
            with self.open_raw(name) as raw:
                decompress_to_file(raw, program, target, plan.size)
        except ContentTooLargeError:
            raise DiskError(f"{name} is larger than the disk ({plan.size} bytes)") from None
        except CORRUPT as e:
            raise DiskError(f"{name} is corrupt or truncated: {e}") from None
        with naming(target):
            with open(target, "rb") as written:
                size = os.fstat(written.fileno()).st_size
                head = written.read(SECTOR)
        if size != plan.size:
            raise DiskError(f"{name} holds {size} bytes, the disk has {plan.size}")
        self._check_table(plan, head)

    @staticmethod
    def _check_table(plan: DiskPlan, head: bytes) -> None:
        problem = table_problem(head[:SECTOR], plan.table()) if plan.partitions else None
        if problem:
            raise DiskError(f"{plan.prebuilt} is not the disk disk.cfg describes: {problem}")

    def unpack(self, part: PlannedPartition, target: str) -> None:
        scratch = make_scratch(self.scratch_parent)
        try:
            populator = (VfatPopulator(self.host, target, part.start, self.env)
                         if part.fs == "vfat"
                         else ExtPopulator(self.host, target, part.start, scratch, self.env))
            with self._content(part.content) as stream:
                count = populate(populator, stream)
        finally:
            remove_scratch(scratch)
        log.info("unpacked %d members of %s into partition %d", count, part.content, part.number)

    @contextlib.contextmanager
    def _content(self, name: str) -> Iterator[BinaryIO]:
        """The stream of the content file *name*; a corrupt archive or compression
        becomes one clear error."""
        try:
            with open_content(self.open_raw, name, self.host) as stream:
                yield stream
        except CORRUPT as e:
            raise DiskError(f"{name} is corrupt or truncated: {e}") from None


@contextlib.contextmanager
def _open_target(target: str) -> Iterator[int]:
    fd = os.open(target, os.O_WRONLY)
    try:
        with naming(target):
            yield fd
    finally:
        os.close(fd)


def _write_data(fd: int, chunk: bytes, offset: int, zeroed: bool) -> None:
    """Write *chunk* at *offset*; on a *zeroed* target, leave out its zero blocks."""
    if not zeroed:
        write_all(fd, chunk, offset)
        return
    if chunk == _ZEROS[:len(chunk)]:
        return
    start = None  # of the run of data blocks being gathered
    for pos in range(0, len(chunk), SPARSE_BLOCK):
        block = chunk[pos:pos + SPARSE_BLOCK]
        if block == _ZEROS[:len(block)]:
            if start is not None:
                write_all(fd, chunk[start:pos], offset + start)
                start = None
        elif start is None:
            start = pos
    if start is not None:
        write_all(fd, chunk[start:], offset + start)


def _write_within(fd: int, chunk: bytes, offset: int, ranges: Sequence[Range],
                  zeroed: bool) -> None:
    """Write the parts of *chunk* (at *offset*) that fall in *ranges* (start, length)."""
    end = offset + len(chunk)
    for start, length in ranges:
        first, last = max(start, offset), min(start + length, end)
        if first < last:
            _write_data(fd, chunk[first - offset:last - offset], first, zeroed)

"""Byte ranges of a guest disk: the ones an update replaces, saved aside and put back.

An update rewrites a guest's disk in place.  The kept partitions stay where
they are; everything else — the partition table, the other partitions, the
gaps and the end of the disk — is *replaced*.  Before that the replaced
bytes are copied into a store (a sparse file or a logical volume), one range
after the other, so that they can be put back exactly.

Copies stream in chunks of :data:`CHUNK` bytes.  A regular file is read by
its data extents (``SEEK_DATA``/``SEEK_HOLE``): its holes are never read,
and where the destination reads as zeros (a new sparse file, or a range
punched with ``fallocate``) they are not written either, so that sparse
files stay sparse.  A block device has no holes: it is read whole.

This module is light (no archive or filesystem code): every manager command
may need it to recover an interrupted update.
"""

import errno
import os
from typing import Iterable, Iterator, List, Sequence, Tuple

from ..errors import DiskError
from ..fsutil import naming
from ..programs import Host

#: (start, length) in bytes.
Range = Tuple[int, int]
#: (source offset, destination offset, length) in bytes.
Move = Tuple[int, int, int]

CHUNK = 1024 * 1024
_ZEROS = bytes(CHUNK)


def complement(size: int, kept: Iterable[Range]) -> List[Range]:
    """The ranges of a disk of *size* bytes outside the *kept* ranges, in order."""
    found = []
    position = 0
    for start, length in sorted(kept):
        if start > position:
            found.append((position, min(start, size) - position))
        position = max(position, start + length)
        if position >= size:
            break
    if position < size:
        found.append((position, size - position))
    return [r for r in found if r[1] > 0]


def stacked(ranges: Sequence[Range]) -> List[Move]:
    """Moves that put *ranges* of a disk one after the other from offset 0 (a store)."""
    moves = []
    offset = 0
    for start, length in ranges:
        moves.append((start, offset, length))
        offset += length
    return moves


def unstacked(ranges: Sequence[Range]) -> List[Move]:
    """The moves back from a store: the reverse of :func:`stacked`."""
    return [(store, disk, length) for disk, store, length in stacked(ranges)]


def total(ranges: Iterable[Range]) -> int:
    return sum(length for _, length in ranges)


def data_extents(fd: int, start: int, end: int) -> Iterator[Range]:
    """(start, length) of the data of file *fd* between *start* and *end*: its
    holes left out where the file system says where they are."""
    position = start
    while position < end:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:  # no SEEK_DATA here: all of it is data
                yield position, end - position
            return  # ENXIO: no data after position
        if data >= end:
            return
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        yield data, hole - data
        position = hole


def copy(source: str, target: str, moves: Iterable[Move], target_zeroed: bool) -> int:
    """Copy the *moves* from file or device *source* into *target* (not truncated);
    return the bytes written.  *target_zeroed*: the target ranges read as zeros, so
    the source's holes are skipped; else they are written as zeros."""
    written = 0
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        try:
            with naming(target):
                for src_offset, dst_offset, length in moves:
                    written += _copy_move(src, dst, src_offset, dst_offset, length,
                                          target_zeroed)
                os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return written


def _copy_move(src: int, dst: int, src_offset: int, dst_offset: int, length: int,
               target_zeroed: bool) -> int:
    written = 0
    position = src_offset
    end = src_offset + length
    for start, size in data_extents(src, src_offset, end):
        if not target_zeroed and start > position:
            written += _zero(dst, dst_offset + position - src_offset, start - position)
        written += copy_bytes(src, start, dst, dst_offset + start - src_offset, size)
        position = start + size
    if not target_zeroed and position < end:
        written += _zero(dst, dst_offset + position - src_offset, end - position)
    return written


def copy_bytes(src: int, src_offset: int, dst: int, dst_offset: int, length: int) -> int:
    """Copy *length* bytes between open files, at their offsets; return the count."""
    done = 0
    while done < length:
        chunk = os.pread(src, min(CHUNK, length - done), src_offset + done)
        if not chunk:
            raise DiskError(f"the source ended {length - done} bytes early")
        write_all(dst, chunk, dst_offset + done)
        done += len(chunk)
    return done


def _zero(dst: int, offset: int, length: int) -> int:
    done = 0
    while done < length:
        size = min(CHUNK, length - done)
        write_all(dst, _ZEROS[:size], offset + done)
        done += size
    return done


def write_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite all of *data* at *offset*."""
    view = memoryview(data)
    while view:
        count = os.pwrite(fd, view, offset)
        view = view[count:]
        offset += count


def punch(host: Host, path: str, ranges: Iterable[Range]) -> None:
    """Make the *ranges* of the regular file *path* holes (they read as zeros and take
    no space): ``fallocate --punch-hole``, which keeps the file's size."""
    for start, length in ranges:
        host.run("fallocate", ["--punch-hole", "--offset", str(start), "--length",
                               str(length), path])

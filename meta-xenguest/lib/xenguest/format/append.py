"""Changing file images in place: crash-safe appends and atomic rewrites.

Fast updates (:func:`append_members`) append new versions of changed members
at the end of the archive instead of rewriting a large payload:

1. With E the offset of the end-of-archive zero block and L the file size
   ([E, L) must be all zeros, see :func:`can_append`), the new members, two
   zero blocks and the record padding are written from E+1024 on; their first
   1024 bytes, which belong at E, are held back. Blocks E and E+512 stay zero,
   so every reader still sees the old archive, also while the append runs.
   Two blocks, not one: busybox tar skips a single zero block and reads on
   (GNU tar stops there with a "lone zero block" warning, Python at once).
2. fsync, write the held 1024 bytes at E in one write (the commit), fsync.
   (That write lies in one 4 KiB page unless E % 4096 == 3584.)
3. Any exception (KeyboardInterrupt included) before the commit truncates the
   file to L and zeroes [E, L) again: the file is byte-identical to before.

Extraction by name keeps last-occurrence semantics, but ``tar -xOf IMG
./guest.cfg`` (GNU tar and busybox) prints *every* occurrence, concatenated.
So after the commit, each superseded regular file is renamed in place from
``./NAME`` to ``././NAME``: one 512-byte header write (name field and
checksum). ``././NAME`` still extracts to the same path (then overwritten by
the newer member) and still matches ``--exclude=./disk``, but no longer
matches the member argument ``./NAME``. A member whose name is not stored in
its own header block (long names, pax) cannot be renamed so: the append is
refused and the caller rewrites the image (``pack``), as it does when
:func:`can_append` is false. A crash between the commit and the renames
leaves a valid archive that extracts right; the next append renames what is
left.

:func:`atomic_output` writes a whole new image next to the old one and
replaces it atomically.
"""

import contextlib
import os
import stat
from typing import BinaryIO, Callable, Iterable, Iterator, List, Optional, Tuple

from ..errors import ArchiveError, ImageError, XenguestError
from ..fsutil import naming
from ..locking import locked_temp, remove_stale_temps
from .archive import BLOCK, Member, TarIndex, TarWriter, _checksummed, source_date_epoch
from .streams import CHUNK


def _renamed_header(index: TarIndex, member: Member) -> Optional[bytes]:
    """Header block of *member* renamed to ``././NAME``, or None if not doable in place."""
    if member.data_offset != member.header_offset + BLOCK:
        return None
    block = bytearray(os.pread(index.fd, BLOCK, member.header_offset))
    stored = bytes(block[:100]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    new = ("././" + member.name).encode("utf-8", "surrogateescape")
    if stored != member.raw_name or len(new) > 100:
        return None
    block[:100] = new.ljust(100, b"\0")
    return _checksummed(block)


def _rename_plan(index: TarIndex, names: Iterable[str]) -> List[Tuple[int, bytes]]:
    """(offset, block) writes that stop older occurrences of *names* matching ``./NAME``."""
    plan = []
    for name in set(names):
        olds = [m for m in index.superseded if m.name == name]
        olds += [index.members[name]] if name in index.members else []
        for old in olds:
            if old.is_dir or old.raw_name.startswith("././"):
                continue
            block = _renamed_header(index, old)
            if block is None:
                raise ArchiveError(f"{index.path}: cannot replace member {name!r} in place "
                                   "(its name is not in its own header); rewrite the image")
            plan.append((old.header_offset, block))
    return plan


def can_append(index: TarIndex, names: Iterable[str] = ()) -> bool:
    """Whether :func:`append_members` can add members (named *names*) to *index*.

    False if anything but zeros follows the end of the archive, or an older
    occurrence of one of *names* cannot be renamed in place: rewrite the image then.
    """
    if index.trailing is not None:
        return False
    try:
        _rename_plan(index, names)
    except ArchiveError:
        return False
    return True


def append_members(path: str, index: TarIndex, write: Callable[[TarWriter], None],
                   mtime: Optional[int] = None) -> None:
    """Append the members that *write* adds to the TarWriter it gets, crash-safely.

    *index* must be an open index of *path*, read under the image's writer lock
    (:mod:`xenguest.locking`); it is stale afterwards (re-open it).
    On any exception before the commit the file is left byte-identical; an
    error after it (renaming older occurrences) leaves a valid, updated archive.
    ArchiveError if the image cannot be appended to (see :func:`can_append`).
    """
    mtime = source_date_epoch() if mtime is None else mtime
    end, size = index.end_offset, index.file_size
    if not can_append(index):
        raise ArchiveError(f"{path}: cannot append: data follows the end of the archive")
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise ImageError(f"cannot open {path} for writing: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino, info.st_size) != index.identity:
            raise ArchiveError(f"{path} changed since it was read")
        with naming(path):
            renames = _commit_tail(fd, index, write, mtime, end, size)
            for offset, block in renames:
                os.pwrite(fd, block, offset)
            if renames:
                os.fsync(fd)
    finally:
        os.close(fd)


def _commit_tail(fd: int, index: TarIndex, write: Callable[[TarWriter], None],
                 mtime: int, end: int, size: int) -> List[Tuple[int, bytes]]:
    """Steps 1 and 2 of the module docstring; return the rename writes to do after."""
    try:
        os.lseek(fd, end + 2 * BLOCK, os.SEEK_SET)
        writer = TarWriter(open(fd, "r+b", buffering=0, closefd=False), mtime)
        writer._start, writer._pos, writer._hold = 0, end, 2 * BLOCK
        write(writer)
        if not writer._names:
            return []
        renames = _rename_plan(index, writer._names)
        writer.close()
        os.fsync(fd)
        os.pwrite(fd, bytes(writer._held), end)
        os.fsync(fd)
        return renames
    except BaseException:
        os.ftruncate(fd, size)
        for pos in range(end, size, CHUNK):
            os.pwrite(fd, bytes(min(CHUNK, size - pos)), pos)
        os.fsync(fd)
        raise


def _rename_new(tmp: str, target: str, path: str) -> None:
    """Rename *tmp* to *target*, which must not exist: another writer's new file
    is never replaced (a hard link fails if the name is taken; where there
    are no hard links, the check and the rename are two steps)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        pass
    except OSError:
        if not os.path.lexists(target):
            os.replace(tmp, target)
            return
    else:
        os.unlink(tmp)
        return
    raise ImageError(f"{path}: exists already (made meanwhile by another process)")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str, replace: bool = True) -> Iterator[BinaryIO]:
    """Yield a file object whose content replaces *path* atomically on success
    (without *replace*: becomes *path*, which must not exist by then).

    The data goes to ``.<basename>.xenguest-tmp-<random>`` in the same directory
    (the directory of the symlink's target if *path* is a symbolic link), locked
    until it is renamed and removed on any exception; those left by killed
    writers are removed first (see :mod:`xenguest.locking`).  The new file keeps
    the old one's permission bits, else gets 0o644 minus the umask.  Do not
    close the yielded file object.

    Replacing an existing file is durable: the data is synced before the
    rename, so that after a power cut the path holds the old or the new
    content.  A new path is not synced (like ``cp`` and ``tar``): there is no
    old content to protect, and a build writing gigabytes should not wait for
    the disk.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    try:
        mode = os.stat(target).st_mode
        durable = True
    except FileNotFoundError:
        mode = 0o644 & ~_umask()
        durable = False
    if stat.S_ISDIR(mode):
        raise XenguestError(f"{path} is a directory")
    remove_stale_temps(target)
    tmp, held = "", -1
    try:  # from the moment the temporary file exists, a failure removes it
        try:
            fd, tmp = locked_temp(target)
        except OSError as exc:
            raise XenguestError(f"cannot create {path}: {exc.strerror}") from None
        held = os.dup(fd)  # holds the lock past the file object's close, until the rename
        with os.fdopen(fd, "wb") as out, naming(path):
            yield out  # type: ignore[misc]
            out.flush()
            os.fchmod(out.fileno(), stat.S_IMODE(mode))
            if durable:
                os.fsync(out.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            _rename_new(tmp, target, path)
    except BaseException:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    finally:
        if held >= 0:
            os.close(held)
    if not durable:
        return
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

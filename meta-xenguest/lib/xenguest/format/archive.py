"""Streaming, safe and reproducible tar I/O for xenguest file images.

A file image is an uncompressed tar of the image directory. Members are named
``./`` + *logical name* (``./``, ``./guest.cfg``, ``./guest.d/``,
``./disk/rootfs.tar.gz``) because consumers run ``tar -xOf IMG ./guest.cfg``
and ``tar -C DIR --exclude=./disk -xf IMG``. Inside the library names are
logical: no ``./`` prefix, no trailing slash, the root is ``""``.

Writing (:class:`TarWriter`) is reproducible: GNU format headers (long names
via ``././@LongLink``, sizes over 8 GiB in base-256), owner root/root, one
mtime for all members (:func:`source_date_epoch`, default 1980-01-01), the
caller's order, the archive padded to GNU tar's 10240-byte record: the same
bytes as ``tar --format=gnu --owner=root:0 --group=root:0 --mtime=@T
--sort=name`` (GNU tar 1.34) on the same tree, whatever the Python version.
Payloads are streamed (:mod:`xenguest.format.streams`), never held in memory.

Reading (:class:`TarIndex`) scans the headers only and refuses anything unsafe
or damaged: absolute names, ``..``, links, devices, FIFOs, sparse or unknown
member types, truncated data or headers, any header GNU tar, busybox tar and
Python's tarfile would not read alike (:mod:`xenguest.format.header`), a path
that is both a file and a folder, data after a lone zero block or after the
end marker. A later member of the same name replaces an earlier one (tar
semantics); the earlier ones are ``superseded``.

Fast updates and atomic rewrites are in :mod:`xenguest.format.append`, safe
extraction in :mod:`xenguest.format.extract`.
"""

import io
import os
import stat
import tarfile
from typing import BinaryIO, Dict, List, NamedTuple, Optional, Tuple

from ..digits import whole_number
from ..errors import ArchiveError, ImageError, XenguestError
from . import header as archive_header
from .header import BLOCK
from .streams import CHUNK, Hasher, Progress, copy_fd, write_all

RECORD = 10240
#: Default mtime of every member when SOURCE_DATE_EPOCH is not set:
#: 1980-01-01T00:00:00Z (the earliest time a zip or FAT file system can hold).
DEFAULT_MTIME = 315532800
MAX_MTIME = 8 ** 11 - 1
READ_LIMIT = 16 * 1024 * 1024
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ", "xz"), (b"BZh", "bzip2"),
               (b"\x28\xb5\x2f\xfd", "zstd"))


def source_date_epoch() -> int:
    """Member mtime: $SOURCE_DATE_EPOCH if set (and not empty), else DEFAULT_MTIME."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if value == "":
        return DEFAULT_MTIME
    mtime = whole_number(value)
    if mtime is None or mtime > MAX_MTIME:
        raise ImageError(f"SOURCE_DATE_EPOCH={value!r} is not a valid timestamp "
                         "(a non-negative integer number of seconds)")
    return mtime


def _normalize(raw: str) -> Tuple[Optional[str], str]:
    """Logical name of an archive name, or (None, reason) if it is unsafe."""
    if "\0" in raw:
        return None, "its name contains a NUL character"
    if raw.startswith("/"):
        return None, "absolute path"
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "'..' in path"
    return "/".join(parts), ""


def _check_logical(name: str, what: str = "member name") -> None:
    if _normalize(name)[0] != name:
        raise ArchiveError(f"unsafe {what} {name!r}: must be a relative path without "
                           "'.', '..', empty components or a trailing slash")
    problem = archive_header.name_problem(name)
    if problem:
        raise ArchiveError(f"unsafe {what} {name!r}: {problem}")


def _checksummed(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


class TarWriter:
    """Write a reproducible GNU tar archive to *fileobj*, from its current position.

    Members are written in the order of the calls, every one with *mtime*.
    On a plain file (or pipe) opened in binary mode the writer writes to its
    fd directly (kernel-side copies): do not write to *fileobj* meanwhile.
    :meth:`close` ends the archive but does not close *fileobj*.
    """

    def __init__(self, fileobj: BinaryIO, mtime: int) -> None:
        self._file = fileobj
        self._mtime = int(mtime)
        self._fd: Optional[int] = None
        if isinstance(fileobj, (io.FileIO, io.BufferedWriter, io.BufferedRandom)):
            fileobj.flush()
            self._fd = fileobj.fileno()
        try:
            self._start = fileobj.tell()
        except (OSError, AttributeError):
            self._start = 0
        self._pos = self._start
        self._hold = 0  # bytes held back from the start (see append_members)
        self._held = bytearray()
        self._names: Dict[str, None] = {}
        self._closed = False

    def _write(self, data: bytes) -> None:
        take = self._hold - len(self._held)
        if take > 0:
            self._held += data[:take]
            self._pos += len(data[:take])
            data = data[take:]
        self._pos += write_all(self._file if self._fd is None else self._fd, data)

    def _header(self, name: str, is_dir: bool, mode: int, size: int) -> None:
        _check_logical(name)
        if not name and not is_dir:
            raise ArchiveError("a regular file cannot be the root member of an image")
        if name in self._names:
            raise ArchiveError(f"member {name!r} added twice")
        info = tarfile.TarInfo("./" + name + ("/" if is_dir and name else ""))
        info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
        info.mode, info.size, info.mtime = mode, size, self._mtime
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        buf = bytearray(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
        # Byte for byte as GNU tar: empty device fields (Python < 3.9 writes
        # zeros), and a ././@LongLink header of mode 0644 owned by root.
        for start in {0, len(buf) - BLOCK}:
            block = bytearray(buf[start:start + BLOCK])
            block[329:345] = bytes(16)
            if block[156:157] == tarfile.GNUTYPE_LONGNAME:
                block[100:108] = b"0000644\0"
                block[265:329] = b"root".ljust(32, b"\0") * 2
            buf[start:start + BLOCK] = _checksummed(block)
        self._names[name] = None
        self._write(bytes(buf))

    def _pad(self, size: int) -> None:
        self._write(bytes(-size % BLOCK))

    def add_dir(self, name: str, mode: int = 0o755) -> None:
        """Add directory *name* ("" is the root, written as ``./``)."""
        self._header(name, True, mode, 0)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        """Add regular file *name* holding *data*."""
        self._header(name, False, mode, len(data))
        self._write(data)
        self._pad(len(data))

    def add_reserved(self, name: str, size: int, mode: int = 0o644) -> int:
        """Add regular file *name* of *size* zero bytes; return the offset of its data
        from the start of the file, to be overwritten (pwrite) once it is known."""
        self._header(name, False, mode, size)
        if len(self._held) < self._hold:
            raise ArchiveError(f"member {name!r} cannot be reserved in the held-back bytes")
        offset = self._pos
        self._write(bytes(size))
        self._pad(size)
        return offset

    def add_file(self, name: str, path: str, mode: int = 0o644,
                 progress: Optional[Progress] = None,
                 hasher: Optional[Hasher] = None) -> None:
        """Add regular file *name* with the content of *path*, streamed (and hashed
        on the way into *hasher* if given)."""
        try:
            src = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise XenguestError(f"cannot read {path}: {exc.strerror}") from None
        try:
            info = os.fstat(src)
            if not stat.S_ISREG(info.st_mode):
                raise XenguestError(f"{path} is not a regular file")
            self._header(name, False, mode, info.st_size)
            self._copy(src, 0, info.st_size, progress, path, hasher)
            if os.fstat(src).st_size != info.st_size:
                raise ArchiveError(f"{path} changed size while being archived")
            self._pad(info.st_size)
        finally:
            os.close(src)

    def add_member_from(self, name: str, index: "TarIndex", src_name: str,
                        mode: int = 0o644, progress: Optional[Progress] = None,
                        hasher: Optional[Hasher] = None) -> None:
        """Add regular file *name* with the data of member *src_name* of *index*."""
        member = index.file_member(src_name)
        self._header(name, False, mode, member.size)
        self._copy(index.fd, member.data_offset, member.size, progress, index.path, hasher)
        self._pad(member.size)

    def _copy(self, src: int, offset: int, size: int, progress: Optional[Progress],
              what: str, hasher: Optional[Hasher] = None) -> None:
        take = min(size, self._hold - len(self._held))
        if take > 0:
            data = os.pread(src, take, offset)
            if len(data) < take:
                raise ArchiveError(f"{what} shrank while being copied")
            if hasher is not None:
                hasher.update(data)
            self._write(data)
        out = self._file if self._fd is None else self._fd
        copy_fd(src, out, size - take, progress, offset + take, hasher, what)
        self._pos += size - take

    def close(self) -> None:
        """Write the two end-of-archive zero blocks and pad to a whole record (once)."""
        if self._closed:
            return
        self._closed = True
        self._write(bytes(2 * BLOCK))
        self._write(bytes(-(self._pos - self._start) % RECORD))
        if self._fd is None:
            self._file.flush()


class Member(NamedTuple):
    """One member of an archive (its last occurrence, unless superseded)."""

    name: str
    is_dir: bool
    size: int
    mode: int
    mtime: int
    data_offset: int
    header_offset: int
    raw_name: str


class TarIndex:
    """The checked table of contents of a file image, holding one open fd."""

    def __init__(self, path: str, fd: int, members: Dict[str, Member],
                 superseded: List[Member], end_offset: int, info: os.stat_result,
                 trailing: Optional[int] = None) -> None:
        self.path = path
        self.fd = fd
        self.members = members
        self.superseded = superseded
        self.end_offset = end_offset
        self.file_size = info.st_size
        self.identity = (info.st_dev, info.st_ino, info.st_size)
        #: Offset of data after the end marker (None: only zeros follow it).
        self.trailing = trailing

    @classmethod
    def open(cls, path: str, allow_trailing: bool = False) -> "TarIndex":
        """Scan the headers of the tar file *path*; ArchiveError if unsafe or damaged.

        Data after the end marker is refused unless *allow_trailing* (for the
        writers that rewrite the image without it): no tar reader sees it, but
        an image must be exactly what every reader sees.
        """
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ImageError(f"cannot open {path}: {exc.strerror}") from None
        try:
            return cls._scan(path, fd, allow_trailing)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def _scan(cls, path: str, fd: int, allow_trailing: bool) -> "TarIndex":
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArchiveError(f"{path} is not a regular file")
        if info.st_size == 0:
            raise ArchiveError(f"{path}: not a tar archive (empty file)")
        members: Dict[str, Member] = {}
        superseded: List[Member] = []
        pos = 0
        while True:
            block = os.pread(fd, BLOCK, pos)
            if block.count(0) == len(block):
                break
            member = _read_member(path, fd, pos, block, info.st_size)
            if member.name in members:
                superseded.append(members[member.name])
            members[member.name] = member
            pos = member.data_offset + member.size + (-member.size % BLOCK)
        _check_layout(path, list(members.values()) + superseded)
        trailing = _check_end(path, fd, pos, info.st_size)
        if trailing is not None and not allow_trailing:
            raise ArchiveError(f"{path}: data after the end of the archive, at offset "
                               f"{trailing} (an interrupted update leaves it: 'pack IMAGE "
                               "IMAGE' writes the image again without it)")
        return cls(path, fd, members, superseded, pos, info, trailing)

    def file_member(self, name: str) -> Member:
        """The regular-file member *name*; ArchiveError if missing or a directory."""
        member = self.members.get(name)
        if member is None:
            raise ArchiveError(f"{self.path}: no member {name!r}")
        if member.is_dir:
            raise ArchiveError(f"{self.path}: member {name!r} is a directory")
        return member

    def read_bytes(self, name: str, limit: int = READ_LIMIT) -> bytes:
        """The data of member *name*, refused if larger than *limit* bytes."""
        member = self.file_member(name)
        if member.size > limit:
            raise ArchiveError(f"{self.path}: member {name!r} is too large "
                               f"({member.size} bytes, at most {limit})")
        out = io.BytesIO()
        copy_fd(self.fd, out, member.size, offset=member.data_offset, what=self.path)
        return out.getvalue()

    def copy_member(self, name: str, out_fd: int,
                    progress: Optional[Progress] = None) -> int:
        """Stream the data of member *name* to *out_fd* (file, pipe, terminal); its size."""
        member = self.file_member(name)
        return copy_fd(self.fd, out_fd, member.size, progress, member.data_offset,
                       what=self.path)

    def open_member(self, name: str) -> BinaryIO:
        """A read-only binary file object of the data of member *name*.

        It reads through this index's fd: use it while the index is open.
        """
        member = self.file_member(name)
        raw = _MemberReader(self.fd, member.data_offset, member.size)
        return io.BufferedReader(raw, CHUNK)  # type: ignore[return-value]

    def close(self) -> None:
        """Close the fd (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "TarIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_member(path: str, fd: int, pos: int, block: bytes, file_size: int) -> Member:
    """The member whose header (or first long-name header) is *block* at *pos*."""
    header_offset = pos
    try:
        header = archive_header.parse(block)
        name = header.name
        if header.kind == archive_header.LONG_NAME:
            data = os.pread(fd, header.size, pos + BLOCK)
            if len(data) < header.size:
                raise ArchiveError(f"{path}: truncated image: a long name at offset {pos} "
                                   "runs past the end of the file")
            name = archive_header.long_name(data)
            pos += BLOCK + header.size + (-header.size % BLOCK)
            block = os.pread(fd, BLOCK, pos)
            if len(block) < BLOCK or block.count(0) == BLOCK:
                raise archive_header.HeaderError("a long name is not followed by its member")
            header = archive_header.parse(block)
            if header.kind == archive_header.LONG_NAME:
                raise archive_header.HeaderError("two long names for one member")
    except archive_header.HeaderError as exc:
        if header_offset == 0 and isinstance(exc, archive_header.NotAHeader):
            head = os.pread(fd, 8, 0)
            kind = [k for magic, k in _COMPRESSED if head.startswith(magic)]
            hint = f" (it is {kind[0]}-compressed; images are plain tar)" if kind else ""
            raise ArchiveError(f"{path}: not a tar archive{hint}") from None
        if len(block) < BLOCK:
            raise ArchiveError(f"{path}: damaged archive: truncated header at offset "
                               f"{pos}") from None
        raise ArchiveError(f"{path}: damaged archive: invalid header at offset {pos}: "
                           f"{exc}") from None
    raw = name.decode("utf-8", "surrogateescape")
    logical, reason = _normalize(raw)
    if logical is not None:
        reason = archive_header.name_problem(raw) or ""
    if logical is None or reason:
        raise ArchiveError(f"{path}: unsafe member {archive_header.shown(name)!r}: {reason}")
    is_dir = header.kind == archive_header.DIR
    if not logical and not is_dir:
        raise ArchiveError(f"{path}: damaged member {raw!r}: the root is not a directory")
    if raw.endswith("/") and not is_dir:
        raise ArchiveError(f"{path}: damaged member {raw!r}: a file name ending in '/' "
                           "(tar readers disagree on what it is)")
    data_offset = pos + BLOCK
    if data_offset + header.size + (-header.size % BLOCK) > file_size:
        raise ArchiveError(f"{path}: truncated image: the data of member {raw!r} "
                           "runs past the end of the file")
    return Member(logical, is_dir, header.size, header.mode, header.mtime, data_offset,
                  header_offset, raw)


def _check_layout(path: str, members: List[Member]) -> None:
    """No path may be both a file and a folder, in any occurrence of any member."""
    files = {m.name for m in members if not m.is_dir}
    folders = {m.name for m in members if m.is_dir}
    for name in files | folders:
        parts = name.split("/")
        folders.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
    both = sorted(files & folders)
    if both:
        raise ArchiveError(f"{path}: {both[0]!r} is both a file and a folder")


def _check_end(path: str, fd: int, end: int, file_size: int) -> Optional[int]:
    """Check what follows the last member at *end*: nothing, the end marker (two
    zero blocks) and zero padding, or one zero block and the end of the file (GNU
    tar warns, busybox fails on a partial block).  Return the offset of any data
    after the marker."""
    rest = file_size - end
    if 0 < rest < 2 * BLOCK and rest != BLOCK:
        what = "not a tar archive" if end == 0 else \
            f"truncated image: a partial block at offset {end + rest // BLOCK * BLOCK}"
        raise ArchiveError(f"{path}: {what}")
    after = os.pread(fd, BLOCK, end + BLOCK)
    if after.count(0) != len(after):
        raise ArchiveError(f"{path}: damaged archive: data after a lone zero block at "
                           f"offset {end} (tar readers disagree on where the archive ends)")
    pos = end + 2 * BLOCK
    while pos < file_size:
        chunk = os.pread(fd, min(CHUNK, file_size - pos), pos)
        if not chunk:
            break
        if chunk.count(0) != len(chunk):
            return pos + next(i for i, byte in enumerate(chunk) if byte)
        pos += len(chunk)
    return None


class _MemberReader(io.RawIOBase):
    """Raw reader of [start, start+size) of an fd, with pread (no shared position)."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        super().__init__()
        self._fd, self._start, self._size, self._pos = fd, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buf: "memoryview") -> int:  # type: ignore[override]
        want = min(len(buf), self._size - self._pos)
        if want <= 0:
            return 0
        data = os.pread(self._fd, want, self._start + self._pos)
        buf[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

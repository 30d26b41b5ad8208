"""A writer for the "newc" cpio format that Linux unpacks as an initramfs.

Every entry belongs to root; the archive is built from explicit entries, so it needs no root
privileges, no host cpio, and its content does not depend on the host's file owners.
"""

import gzip
import os
import stat
from typing import Dict, Optional, Protocol, Tuple

# path in the archive -> ("dir", None, mode) | ("file", host path or bytes, mode)
#                        | ("link", target, 0o777)
Entry = Tuple[str, object, int]


class Writable(Protocol):
    """Where an archive goes: a binary file or a gzip stream."""

    def write(self, data: bytes) -> int:
        ...


class Staging:
    """The content of an initramfs, keyed by absolute path inside it."""

    def __init__(self) -> None:
        self.entries: Dict[str, Entry] = {}

    def _parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        while parent not in ("/", "") and parent not in self.entries:
            self.entries[parent] = ("dir", None, 0o755)
            parent = os.path.dirname(parent)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        self._parents(path)
        self.entries[path] = ("dir", None, mode)

    def add_file(self, path: str, source: str, mode: Optional[int] = None) -> None:
        """Copy the host file SOURCE to PATH (its permission bits unless MODE is given)."""
        if mode is None:
            mode = stat.S_IMODE(os.stat(source).st_mode)
        self._parents(path)
        self.entries[path] = ("file", source, mode)

    def add_data(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._parents(path)
        self.entries[path] = ("file", data, mode)

    def add_symlink(self, path: str, target: str) -> None:
        self._parents(path)
        self.entries[path] = ("link", target, 0o777)

    def write(self, out: Writable) -> None:
        """Write the whole archive (parents before children) to OUT."""
        writer = CpioWriter(out)
        for path in sorted(self.entries):
            kind, value, mode = self.entries[path]
            name = path.lstrip("/")
            if kind == "dir":
                writer.add(name, stat.S_IFDIR | mode, b"")
            elif kind == "link":
                writer.add(name, stat.S_IFLNK | 0o777, str(value).encode())
            elif isinstance(value, bytes):
                writer.add(name, stat.S_IFREG | mode, value)
            else:
                with open(str(value), "rb") as handle:
                    writer.add(name, stat.S_IFREG | mode, handle.read())
        writer.close()

    def write_gzip(self, path: str, level: int = 6) -> None:
        """Write the archive gzip-compressed to the host file PATH (atomically)."""
        tmp = path + ".tmp"
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=0) as out:
                self.write(out)
        os.replace(tmp, path)


class CpioWriter:
    """Sequential newc writer: add() entries, then close() to write the trailer."""

    def __init__(self, out: Writable) -> None:
        self.out = out
        self.inode = 300000
        self.written = 0

    def _put(self, data: bytes) -> None:
        self.out.write(data)
        self.written += len(data)

    def _pad(self) -> None:
        if self.written % 4:
            self._put(b"\0" * (4 - self.written % 4))

    def add(self, name: str, mode: int, data: bytes) -> None:
        self.inode += 1
        nlink = 2 if stat.S_ISDIR(mode) else 1
        encoded = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        self._put(b"070701" + b"".join(b"%08X" % value for value in fields))
        self._put(encoded)
        self._pad()
        self._put(data)
        self._pad()

    def close(self) -> None:
        self.add("TRAILER!!!", 0, b"")

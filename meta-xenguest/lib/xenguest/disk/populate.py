"""Unpack a tar stream into a filesystem inside a disk, without mounting it.

Nothing is mounted, no loop device is used and the archive is never unpacked
as a whole: the tar is read as a stream (decompressed by Python) and every
member goes straight into the filesystem at its byte offset in the disk:

* ext2/3/4 — with ``debugfs -w`` (e2fsprogs): ``mkdir``, ``write``,
  ``symlink``, ``ln``, ``mknod`` and ``set_inode_field`` for modes, owners
  (numeric uid/gid), modification times and hard-link counts.  ``debugfs
  write`` copies from a host file, so each regular file's content is staged
  in a scratch folder and written in batches: the scratch space needed is one
  batch (:data:`BATCH_BYTES`) or the largest file, never the whole payload
  (the scratch files are reused from batch to batch).
* vfat — with mtools (``mmd``, ``mcopy`` reading the content from a pipe).
  FAT has no owners, modes or links: hard links become copies; symbolic
  links and device nodes are refused.

Limits: extended attributes and ACLs in the archive are not copied; owner
names are ignored (numeric ids are used); file names cannot hold a newline.
"""

import math
import os
import re
import shutil
import tarfile
from typing import BinaryIO, Dict, List, Optional, Set, Tuple, Union

from ..errors import DiskError
from ..programs import Host, last_line

#: Limits of one debugfs run: staged content (bytes), staged files, commands.
BATCH_BYTES = 64 * 1024 * 1024
BATCH_FILES = 1024
BATCH_COMMANDS = 8192
CHUNK = 1024 * 1024
MAX_TIME = 2 ** 32 - 1

_BANNER = re.compile(r"debugfs [0-9]")


def fs_path(name: str) -> str:
    """The absolute in-filesystem path of tar member *name* (``./etc/x`` -> ``/etc/x``)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise DiskError(f"archive member {name!r} points outside the archive root")
        if any(c in part for c in "\n\r\0"):
            raise DiskError(f"archive member {name!r}: file names with line breaks "
                               "are not supported")
    return "/" + "/".join(parts)


def _parent(path: str) -> str:
    return os.path.dirname(path) or "/"


def _quote(text: str) -> str:
    """A debugfs command argument: double quotes, an inner quote doubled."""
    return '"' + text.replace('"', '""') + '"'


def _mtime(member: tarfile.TarInfo) -> int:
    """The member's modification time, clamped to what the filesystems hold."""
    if not math.isfinite(member.mtime):  # a pax header may say "nan" or "inf"
        raise DiskError(f"archive member {member.name!r}: its modification time is not "
                           "a number")
    return min(max(int(member.mtime), 0), MAX_TIME)


class ExtPopulator:
    """Writes tar members into an ext2/3/4 filesystem at *offset* of *target*."""

    def __init__(self, host: Host, target: str, offset: int, scratch: str,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.host = host
        self.env = env or {}
        self.device = f"{target}?offset={offset}"
        self.scratch = os.path.abspath(scratch)
        # mke2fs made the root folder and lost+found (a tar of a filesystem holds it too)
        self.kinds: Dict[str, str] = {"/": "dir", "/lost+found": "dir"}
        self.links: Dict[str, int] = {}
        self.dir_attrs: Dict[str, Tuple[int, int, int, int]] = {}
        self.commands: List[str] = []
        self.staged = 0
        self.staged_bytes = 0
        self.cwd = ""

    # -- members -------------------------------------------------------------

    def add(self, member: tarfile.TarInfo, data: Optional[BinaryIO]) -> None:
        """Add one member (its *data* stream for regular files)."""
        path = fs_path(member.name)
        if member.isdir():
            self._ensure_dir(path)
            self.dir_attrs[path] = (member.mode & 0o7777, member.uid, member.gid, _mtime(member))
            return
        if path == "/":
            raise DiskError(f"archive member {member.name!r} replaces the root folder")
        self._ensure_dir(_parent(path))
        self._make_room(path, member.name)
        name = os.path.basename(path)
        if member.isreg():
            assert data is not None
            tmp = self._stage(data, member.size, member.mode & 0o7777)
            self._cd(_parent(path))
            self.commands.append(f"write {_quote(tmp)} {_quote(name)}")
            self.kinds[path] = "file"
            self._attributes(path, member, mode=None)
        elif member.issym():
            if any(c in member.linkname for c in "\n\r\0"):
                raise DiskError(f"archive member {member.name!r}: link targets with "
                                   "line breaks are not supported")
            self._cd(_parent(path))
            self.commands.append(f"symlink {_quote(name)} {_quote(member.linkname)}")
            self.kinds[path] = "other"
            self._attributes(path, member, mode=None)
        elif member.islnk():
            target = fs_path(member.linkname)
            if self.kinds.get(target) != "file":
                raise DiskError(f"archive member {member.name!r} is a hard link to "
                                   f"{member.linkname!r}, which is not an earlier regular file")
            self._cd(_parent(path))
            self.commands.append(f"ln {_quote(target)} {_quote(name)}")
            self.links[target] = self.links.get(target, 1) + 1
            self.kinds[path] = "link:" + target
        elif member.ischr() or member.isblk() or member.isfifo():
            self._cd(_parent(path))
            if member.isfifo():
                self.commands.append(f"mknod {_quote(name)} p")
                kind = 0o010000
            else:
                letter, kind = ("c", 0o020000) if member.ischr() else ("b", 0o060000)
                self.commands.append(
                    f"mknod {_quote(name)} {letter} {member.devmajor} {member.devminor}")
            self.kinds[path] = "other"
            self._attributes(path, member, mode=kind | (member.mode & 0o7777))
        else:
            raise DiskError(f"archive member {member.name!r}: unsupported member type "
                               f"{member.type!r}")
        if (len(self.commands) >= BATCH_COMMANDS or self.staged >= BATCH_FILES
                or self.staged_bytes >= BATCH_BYTES):
            self.flush()

    def finish(self) -> None:
        """Apply folder attributes and hard-link counts, then run the last batch."""
        for path in sorted(self.dir_attrs):
            mode, uid, gid, mtime = self.dir_attrs[path]
            self.commands.append(f"sif {_quote(path)} mode 0{0o040000 | mode:o}")
            self._owner_time(path, uid, gid, mtime)
        for path, count in sorted(self.links.items()):
            self.commands.append(f"sif {_quote(path)} links_count {count}")
        self.flush()

    # -- helpers -------------------------------------------------------------

    def _ensure_dir(self, path: str) -> None:
        kind = self.kinds.get(path)
        if kind == "dir":
            return
        if kind is not None:
            raise DiskError(f"archive folder {path} replaces a file of the same name")
        self._ensure_dir(_parent(path))
        self._cd(_parent(path))
        self.commands.append(f"mkdir {_quote(os.path.basename(path))}")
        self.kinds[path] = "dir"

    def _make_room(self, path: str, member_name: str) -> None:
        """A later member replaces an earlier one of the same name (as tar does)."""
        kind = self.kinds.get(path)
        if kind is None:
            return
        if kind == "dir":
            raise DiskError(f"archive member {member_name!r} replaces a folder")
        if path in self.links or any(k == "link:" + path for k in self.kinds.values()):
            raise DiskError(f"archive member {member_name!r} replaces a hard-linked file")
        self.commands.append(f"rm {_quote(path)}")
        del self.kinds[path]

    def _cd(self, folder: str) -> None:
        if self.cwd != folder:
            self.commands.append(f"cd {_quote(folder)}")
            self.cwd = folder

    def _attributes(self, path: str, member: tarfile.TarInfo, mode: Optional[int]) -> None:
        if mode is not None:
            self.commands.append(f"sif {_quote(path)} mode 0{mode:o}")
        self._owner_time(path, member.uid, member.gid, _mtime(member))

    def _owner_time(self, path: str, uid: int, gid: int, mtime: int) -> None:
        quoted = _quote(path)
        self.commands.append(f"sif {quoted} uid {uid}")
        self.commands.append(f"sif {quoted} gid {gid}")
        self.commands.append(f"sif {quoted} mtime @{mtime}")

    def _stage(self, data: BinaryIO, size: int, mode: int) -> str:
        """Copy one file's content to the next scratch file of the batch; return its path."""
        tmp = os.path.join(self.scratch, f"{self.staged:05d}")
        self.staged += 1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                copied = _copy_stream(data, out)
            os.chmod(tmp, mode)
        except OSError as e:
            raise DiskError(f"cannot stage file content in {self.scratch}: "
                               f"{e.strerror}") from None
        if copied != size:
            raise DiskError(f"archive member truncated ({copied} of {size} bytes)")
        self.staged_bytes += size
        return tmp

    def flush(self) -> None:
        """Run debugfs on the pending commands; any message on stderr is a failure."""
        if not self.commands:
            return
        script = os.path.join(self.scratch, "commands")
        with open(script, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write("\n".join(self.commands) + "\n")
        result = self.host.run("debugfs", ["-w", "-f", script, self.device], check=False,
                               env=self.env)
        errors = [line for line in result.stderr.splitlines()
                  if line.strip() and not _BANNER.match(line)]
        if result.returncode != 0 or errors:
            detail = errors[0].strip() if errors else last_line(result.stderr, result.stdout)
            if "allocate" in detail or "No free space" in detail or "no free" in detail.lower():
                detail += " (the partition is too small for its content)"
            raise DiskError(f"debugfs: {detail}")
        self.commands = []
        self.staged = 0
        self.staged_bytes = 0
        self.cwd = ""


class VfatPopulator:
    """Writes tar members into a FAT filesystem at *offset* of *target* with mtools."""

    def __init__(self, host: Host, target: str, offset: int,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.host = host
        self.env = env or {}
        self.spec = f"{target}@@{offset}"
        self.dirs: Set[str] = {"/"}
        self.files: Set[str] = set()

    def _env(self, mtime: int) -> Dict[str, str]:
        return dict(self.env, MTOOLS_SKIP_CHECK="1", SOURCE_DATE_EPOCH=str(mtime))

    def _ensure_dir(self, path: str, mtime: int) -> None:
        if path in self.dirs:
            return
        if path in self.files:
            raise DiskError(f"archive folder {path} replaces a file of the same name")
        self._ensure_dir(_parent(path), mtime)
        self.host.run("mmd", ["-i", self.spec, "::" + path], env=self._env(mtime))
        self.dirs.add(path)

    def add(self, member: tarfile.TarInfo, data: Optional[BinaryIO]) -> None:
        path = fs_path(member.name)
        mtime = _mtime(member)
        if member.isdir():
            self._ensure_dir(path, mtime)
            return
        what = ("symbolic link" if member.issym() else "device node or pipe"
                if member.ischr() or member.isblk() or member.isfifo() else "")
        if what:
            raise DiskError(f"archive member {member.name!r}: a vfat filesystem cannot "
                               f"hold a {what}")
        if path in self.dirs:
            raise DiskError(f"archive member {member.name!r} replaces a folder")
        self._ensure_dir(_parent(path), mtime)
        base = ["-i", self.spec, "-D", "o"]
        if member.isreg():
            assert data is not None
            self.host.run_feeding("mcopy", base + ["-", "::" + path],
                                  lambda pipe: _copy_stream(data, pipe), env=self._env(mtime))
        elif member.islnk():
            target = fs_path(member.linkname)
            if target not in self.files:
                raise DiskError(f"archive member {member.name!r} is a hard link to "
                                   f"{member.linkname!r}, which is not an earlier file")
            self.host.run("mcopy", base + ["::" + target, "::" + path], env=self._env(mtime))
        else:
            raise DiskError(f"archive member {member.name!r}: unsupported member type "
                               f"{member.type!r}")
        self.files.add(path)

    def finish(self) -> None:
        """Nothing is pending: mtools writes each member at once."""


def _copy_stream(src: BinaryIO, dst: BinaryIO) -> int:
    total = 0
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return total
        dst.write(chunk)
        total += len(chunk)


def populate(populator: Union[ExtPopulator, VfatPopulator], stream: BinaryIO) -> int:
    """Read the tar *stream* member by member into *populator*; return the member count."""
    count = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            data = tar.extractfile(member) if member.isreg() else None
            populator.add(member, data)
            count += 1
    populator.finish()
    return count


def make_scratch(parent: str) -> str:
    """A private scratch folder below *parent* for staged content."""
    path = os.path.join(parent, ".populate")
    os.mkdir(path, 0o700)
    return path


def remove_scratch(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)

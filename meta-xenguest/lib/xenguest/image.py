"""The image model: one view over a directory image or a file (tar) image.

An :class:`Image` is opened (or started empty), edited in memory — every change
only records where the new content comes from (bytes, a source file, a member
of the original image) — and then committed in one step:

* a new file image is written canonically to a temporary file and renamed;
* an existing file image gets the changed members appended (payload untouched,
  see :mod:`xenguest.archive`), or is rewritten atomically when members were
  removed;
* a directory image gets new files staged as temporary files first, then
  renamed into place, then removed files deleted.

Nothing is written before :meth:`Image.commit`, so an operation that fails
while applying its options leaves the image exactly as it was.
"""

import os
import stat
from dataclasses import dataclass
from typing import BinaryIO, Callable, Dict, List, Optional, Set, Tuple, Union

from . import archive, layout
from .archive_append import append_members, atomic_output, can_append
from .archive_extract import extract
from .errors import ImageError, XenguestError

Progress = Optional[Callable[[int, int], None]]

DIRECTORY = "directory"
FILE = "file"

#: Largest configuration member read into memory.
MAX_CONFIG_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One file of the image view and where its content comes from.

    Exactly one of *data* (new content), *path* (a file on disk: a source
    given by the user, or the file of a directory image) and *member* (the raw
    member name in the original file image) is set.
    """

    name: str
    size: int
    mode: int
    data: Optional[bytes] = None
    path: Optional[str] = None
    member: Optional[str] = None


class Image:
    """A xenguest image, opened with :meth:`open` or started with :meth:`new`."""

    def __init__(self, path: str, kind: str, is_new: bool) -> None:
        self.path = path
        self.kind = kind
        self.is_new = is_new
        self.index: Optional[archive.TarIndex] = None
        self._base: Dict[str, Entry] = {}
        self._entries: Dict[str, Entry] = {}
        self._dirs: Set[str] = set()

    # -- opening ---------------------------------------------------------

    @classmethod
    def open(cls, path: str) -> "Image":
        """Open an existing directory or file image for reading and editing."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ImageError(f"{path}: no such image") from None
        except OSError as e:
            raise ImageError(f"{path}: cannot open image: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            image = cls(path, DIRECTORY, is_new=False)
            image._scan_directory()
        elif stat.S_ISREG(st.st_mode):
            image = cls(path, FILE, is_new=False)
            image._scan_tar()
        else:
            raise ImageError(f"{path}: not a directory or a regular file")
        image._base = dict(image._entries)
        return image

    @classmethod
    def new(cls, path: str, kind: str) -> "Image":
        """Start an empty image that :meth:`commit` will write to *path*."""
        return cls(path, kind, is_new=True)

    def _scan_tar(self) -> None:
        self.index = archive.TarIndex.open(self.path)
        for raw, member in self.index.members.items():
            name = _logical(raw)
            if member.is_dir:
                self._dirs.add(name)
            elif name not in self._entries or raw == name:
                self._entries[name] = Entry(name, member.size, member.mode, member=raw)

    def _scan_directory(self) -> None:
        root = self.path
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            for name in dirnames + filenames:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                if stat.S_ISDIR(st.st_mode):
                    self._dirs.add(_logical(rel))
                elif stat.S_ISREG(st.st_mode):
                    logical = _logical(rel)
                    if logical not in self._entries or rel == logical:
                        self._entries[logical] = Entry(
                            logical, st.st_size, stat.S_IMODE(st.st_mode), path=full
                        )
                else:
                    raise ImageError(
                        f"{self.path}: {rel} is a link or a special file: "
                        "an image holds only regular files and folders"
                    )

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
            self.index = None

    def __enter__(self) -> "Image":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------

    def names(self) -> List[str]:
        """Names of all files in the image, in canonical order."""
        return sorted(self._entries, key=layout.order_key)

    def files_in(self, folder: str) -> List[str]:
        """Names of the files below *folder*, sorted (``guest.d/a.cfg`` ...)."""
        prefix = folder + "/"
        return sorted(n for n in self._entries if n.startswith(prefix))

    def exists(self, name: str) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ImageError(f"{self.path}: no {name} in the image") from None

    def size(self) -> int:
        """Total size of the files in the image."""
        return sum(e.size for e in self._entries.values())

    def read_bytes(self, name: str) -> bytes:
        entry = self.entry(name)
        if entry.size > MAX_CONFIG_SIZE:
            raise ImageError(f"{self.path}: {name} is too large to be a configuration file")
        if entry.data is not None:
            return entry.data
        if entry.member is not None:
            assert self.index is not None
            return self.index.read_bytes(entry.member, MAX_CONFIG_SIZE)
        with open(entry.path, "rb") as f:  # type: ignore[arg-type]
            return f.read(MAX_CONFIG_SIZE + 1)

    def read_text(self, name: str) -> str:
        """Content of a text member (UTF-8)."""
        data = self.read_bytes(name)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ImageError(
                f"{self.path}: {name} is not UTF-8 text (byte {e.start})"
            ) from None

    def copy_to_fd(self, name: str, fd: int, progress: Progress = None) -> int:
        """Stream a member's content to a file descriptor; return bytes written."""
        entry = self.entry(name)
        if entry.member is not None:
            assert self.index is not None
            return self.index.copy_member(entry.member, fd, progress)
        if entry.data is not None:
            _write_all(fd, entry.data)
            return len(entry.data)
        with open(entry.path, "rb") as src:  # type: ignore[arg-type]
            return archive.copy_fd(src.fileno(), fd, entry.size, progress=progress)

    def open_member(self, name: str) -> BinaryIO:
        """A readable binary stream of a member's content (for streaming decompression)."""
        entry = self.entry(name)
        if entry.member is not None:
            assert self.index is not None
            return self.index.open_member(entry.member)
        if entry.data is not None:
            import io

            return io.BytesIO(entry.data)
        return open(entry.path, "rb")  # type: ignore[arg-type]

    def superseded(self) -> List[Tuple[str, int]]:
        """(name, size) of older versions of members still held by a file image."""
        if self.index is None:
            return []
        return [(_logical(m.name), m.size) for m in self.index.superseded]

    def format_version(self) -> int:
        """The image's format version: 1 for images made by the earlier tool."""
        if not self.exists(layout.FORMAT_MEMBER):
            return 1
        text = self.read_text(layout.FORMAT_MEMBER).strip()
        if not text.isdigit():
            raise ImageError(f"{self.path}: {layout.FORMAT_MEMBER} holds {text!r}, not a version")
        return int(text)

    # -- editing (in memory) ---------------------------------------------

    def write_bytes(self, name: str, data: bytes, mode: Optional[int] = None) -> None:
        """Set a member's content; unchanged content keeps the original member."""
        mode = layout.mode_for(name) if mode is None else mode
        current = self._entries.get(name)
        if current is not None and current.size == len(data) and current.mode == mode:
            if current.data == data or (current.data is None and self.read_bytes(name) == data):
                return
        self._entries[name] = Entry(name, len(data), mode, data=data)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode("utf-8"))

    def add_file(self, name: str, source: str, mode: Optional[int] = None) -> None:
        """Set a member's content to the file *source* (read at commit time)."""
        try:
            st = os.stat(source)
        except OSError as e:
            raise XenguestError(f"{source}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise XenguestError(f"{source}: not a regular file")
        if not os.access(source, os.R_OK):
            raise XenguestError(f"{source}: not readable")
        mode = layout.mode_for(name) if mode is None else mode
        self._entries[name] = Entry(name, st.st_size, mode, path=os.path.abspath(source))

    def remove(self, name: str) -> bool:
        """Remove one file; return whether it existed."""
        return self._entries.pop(name, None) is not None

    def remove_tree(self, folder: str) -> None:
        """Remove a folder's files and sub-folders (the folder itself stays)."""
        for name in self.files_in(folder):
            del self._entries[name]
        self._dirs = {d for d in self._dirs if not d.startswith(folder + "/")}

    def clear(self) -> None:
        """Remove every file and folder."""
        self._entries.clear()
        self._dirs.clear()

    def has_changes(self) -> bool:
        return self.is_new or self._entries != self._base

    # -- committing ------------------------------------------------------

    def commit(self, progress: Progress = None, complete: bool = True) -> bool:
        """Write the changes; return whether anything was written.

        *complete* images get every standard folder and the format member.
        """
        if complete and self._entries.get(layout.FORMAT_MEMBER) is None:
            self.write_text(layout.FORMAT_MEMBER, layout.format_text())
        if not self.has_changes():
            return False
        if self.kind == DIRECTORY:
            self._commit_directory(complete)
        elif not self.is_new and self._can_append():
            self._append_changes(progress)
        else:
            self.write_file(self.path, progress)
        self.close()
        self._rescan()
        self._base = dict(self._entries)
        self.is_new = False
        return True

    def _changed(self) -> Tuple[List[Entry], List[Entry]]:
        changed = [e for n, e in self._entries.items() if self._base.get(n) != e]
        removed = [e for n, e in self._base.items() if n not in self._entries]
        changed.sort(key=lambda e: layout.order_key(e.name))
        return changed, removed

    def _can_append(self) -> bool:
        """Whether the changes can be appended: nothing removed, a clean archive end."""
        assert self.index is not None
        changed, removed = self._changed()
        return not removed and can_append(self.index, [e.name for e in changed])

    def _append_changes(self, progress: Progress) -> None:
        assert self.index is not None
        changed = self._changed()[0]
        have_dirs = {_logical(raw) for raw, m in self.index.members.items() if m.is_dir}
        new_dirs = sorted(
            {d for e in changed for d in _parents(e.name)} - have_dirs, key=layout.order_key
        )
        tracker = _Tracker(progress, sum(e.size for e in changed))

        def write(writer: "archive.TarWriter") -> None:
            for d in new_dirs:
                writer.add_dir(d)
            for entry in changed:
                self._write_entry(writer, entry, tracker)

        append_members(self.path, self.index, write)
        tracker.finish()

    def _rescan(self) -> None:
        self._entries.clear()
        self._dirs.clear()
        if self.kind == FILE:
            self._scan_tar()
        else:
            self._scan_directory()

    def write_file(self, dest: str, progress: Progress = None) -> None:
        """Write the whole image canonically as a new file image at *dest* (atomic)."""
        dirs = set(self._dirs) | set(layout.FOLDERS) | {""}
        for name in self._entries:
            dirs.update(_parents(name))
        items: List[Tuple[Tuple[int, str], Optional[Entry], str]] = []
        items.extend((layout.order_key(d, True), None, d) for d in dirs)
        items.extend((layout.order_key(n), e, n) for n, e in self._entries.items())
        items.sort(key=lambda t: t[0])
        tracker = _Tracker(progress, sum(e.size for e in self._entries.values()))
        with atomic_output(dest) as out:
            writer = archive.TarWriter(out, archive.source_date_epoch())
            for _, entry, name in items:
                if entry is None:
                    writer.add_dir(name)
                else:
                    self._write_entry(writer, entry, tracker)
            writer.close()
        tracker.finish()

    def _write_entry(self, writer: "archive.TarWriter", entry: Entry, tracker: "_Tracker") -> None:
        mode = _normal_mode(entry)
        if entry.data is not None:
            writer.add_bytes(entry.name, entry.data, mode)
        elif entry.member is not None:
            assert self.index is not None
            writer.add_member_from(entry.name, self.index, entry.member, mode, tracker.member)
        else:
            writer.add_file(entry.name, entry.path, mode, tracker.member)
        tracker.advance(entry.size)

    def _commit_directory(self, complete: bool) -> None:
        changed, removed = self._changed()
        created_dirs: List[str] = []
        staged: List[Tuple[str, str]] = []
        try:
            if self.is_new or complete:
                for folder in layout.FOLDERS:
                    _makedirs(self.path, folder, created_dirs)
            for entry in changed:
                target = os.path.join(self.path, *entry.name.split("/"))
                _makedirs(self.path, os.path.dirname(entry.name), created_dirs)
                tmp = os.path.join(
                    os.path.dirname(target), f".{os.path.basename(target)}.xenguest-tmp"
                )
                staged.append((tmp, target))
                self._stage(entry, tmp)
        except BaseException:
            for tmp, _ in staged:
                _unlink_quietly(tmp)
            for d in reversed(created_dirs):
                _rmdir_quietly(d)
            raise
        for tmp, target in staged:
            os.replace(tmp, target)
        for entry in removed:
            _unlink_quietly(entry.path or os.path.join(self.path, *entry.name.split("/")))
        self._rescan()

    def _stage(self, entry: Entry, tmp: str) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if entry.data is not None:
                _write_all(fd, entry.data)
            elif entry.member is not None:
                assert self.index is not None
                self.index.copy_member(entry.member, fd)
            else:
                with open(entry.path, "rb") as src:  # type: ignore[arg-type]
                    archive.copy_fd(src.fileno(), fd, entry.size)
            os.fchmod(fd, _normal_mode(entry))
        finally:
            os.close(fd)


class _Tracker:
    """Adds up the progress of several members into one (done, total) report."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0

    def member(self, done: int, _total: int) -> None:
        if self.progress is not None:
            self.progress(self.done + done, self.total)

    def advance(self, size: int) -> None:
        self.done += size

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.total, self.total)


def _logical(name: str) -> str:
    """Map a stored name to its logical name (legacy ``disk-files/`` -> ``disk/``)."""
    if name == layout.LEGACY_DISK or name.startswith(layout.LEGACY_DISK + "/"):
        return layout.DISK + name[len(layout.LEGACY_DISK):]
    return name


def _parents(name: str) -> List[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _normal_mode(entry: Entry) -> int:
    return layout.mode_for(entry.name)


def _write_all(fd: int, data: Union[bytes, memoryview]) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _makedirs(root: str, rel: str, created: List[str]) -> None:
    path = root
    for part in [p for p in rel.split("/") if p]:
        path = os.path.join(path, part)
        try:
            os.mkdir(path, 0o755)
            created.append(path)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise ImageError(f"{path}: exists and is not a folder") from None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rmdir_quietly(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def copy_tree_out(image: Image, dest: str, select: Callable[[str], bool]) -> List[str]:
    """Copy the selected files and folders of *image* into the existing folder *dest*.

    *select* gets file names, and folder names with a trailing slash.  Nothing
    is overwritten; on failure everything created is removed again.
    """
    if image.index is not None:
        files = {e.member: n for n, e in image._entries.items() if e.member is not None}
        dirs = {raw: _logical(raw) for raw, m in image.index.members.items()
                if m.is_dir and _logical(raw)}

        def wanted(raw: str) -> bool:
            if raw in files:
                return select(files[raw])
            return raw in dirs and select(dirs[raw] + "/")

        return extract(image.index, dest, select=wanted,
                               rename=lambda raw: files.get(raw) or dirs[raw])
    if not os.path.isdir(dest):
        raise ImageError(f"{dest}: no such folder")
    names = [n for n in image.names() if select(n)]
    folders = sorted(d for d in image._dirs if d and select(d + "/"))
    for name in names:
        if os.path.lexists(os.path.join(dest, *name.split("/"))):
            raise ImageError(f"{dest}: {name} exists already: refusing to overwrite it")
    created_dirs: List[str] = []
    written: List[str] = []
    try:
        for folder in folders:
            _makedirs(dest, folder, created_dirs)
        for name in names:
            _makedirs(dest, os.path.dirname(name), created_dirs)
            target = os.path.join(dest, *name.split("/"))
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            written.append(target)
            try:
                image.copy_to_fd(name, fd)
                os.fchmod(fd, _normal_mode(image.entry(name)))
            finally:
                os.close(fd)
    except BaseException:
        for path in reversed(written):
            _unlink_quietly(path)
        for d in reversed(created_dirs):
            _rmdir_quietly(d)
        raise
    return folders + names

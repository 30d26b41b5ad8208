"""The image model: one view over a directory image or a file (tar) image.

An :class:`Image` is opened (or started empty), edited in memory — every change
only records where the new content comes from (bytes, a source file, a member
of the original image) — and then committed in one step:

* a new file image is written canonically to a temporary file and renamed;
* an existing file image gets the changed members appended (payload untouched,
  see :mod:`xenguest.format.archive`), or is rewritten atomically when members were
  removed;
* a directory image gets new files staged as temporary files first, then
  swapped in as one journaled commit (:mod:`xenguest.format.dircommit`).

Writers open an image with ``write=True`` (or start one with :meth:`Image.new`)
and so hold its writer lock (:mod:`xenguest.locking`) until they close it.

Every commit keeps the digest manifest (:mod:`xenguest.format.manifest`) right: the
members written are hashed while they are copied; an append lists unchanged
members with their line of the previous manifest (nothing else is read) and
appends the new manifest, and leaves an image without a manifest without one.

Nothing is written before :meth:`Image.commit`, so an operation that fails
while applying its options leaves the image exactly as it was.

A verified image is read through :meth:`Image.pin` (see :mod:`xenguest.format.pinned`):
every byte read from it afterwards is a byte that was verified.
"""

import contextlib
import io
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO, Dict, Iterator, List, Optional, Set, Tuple

from .. import locking
from ..digits import whole_number
from ..errors import ImageError, XenguestError
from ..fsutil import naming, require_path
from . import archive, dircommit, layout, manifest, streams
from . import header as archive_header
from .append import append_members, atomic_output, can_append
from .pinned import CheckedReader, Pin
from .streams import Progress, Tracker, write_all

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
        self._allow_trailing = False
        #: Files of an interrupted commit in a directory image (see :mod:`.dircommit`).
        self.leftovers: List[str] = []
        self._lock: Optional[int] = None
        self._pin: Optional[Pin] = None

    # -- opening ---------------------------------------------------------

    @classmethod
    def open(cls, path: str, write: bool = False, allow_trailing: bool = False) -> "Image":
        """Open an existing directory or file image for reading, or with *write*
        for editing and committing (the writer lock is held until :meth:`close`).

        *allow_trailing* accepts data after the end of a file image's archive
        (see :meth:`archive.TarIndex.open`): for the writers that rewrite it.
        """
        require_path(path, "image")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ImageError(f"{path}: no such image") from None
        except OSError as e:
            raise ImageError(f"{path}: cannot open image: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            image = cls(path, DIRECTORY, is_new=False)
        elif stat.S_ISREG(st.st_mode):
            image = cls(path, FILE, is_new=False)
        else:
            raise ImageError(f"{path}: not a directory or a regular file")
        image._allow_trailing = allow_trailing
        try:
            image._take_lock(write)
            image._rescan()
            if image._lock is not None and image.index is not None and \
                    image.index.identity[:2] != locking.identity(image._lock):
                raise ImageError(f"{path}: replaced while being opened (by a writer that "
                                 "does not lock it): try again")
        except BaseException:
            image.close()
            raise
        image._base = dict(image._entries)
        return image

    @classmethod
    def new(cls, path: str, kind: str) -> "Image":
        """Start an empty image that :meth:`commit` will write to *path* (the writer
        lock of what *path* holds, if anything, is held until :meth:`close`)."""
        require_path(path, "image")
        image = cls(path, kind, is_new=True)
        if kind == DIRECTORY or os.path.isfile(path):
            image._take_lock(True)
        return image

    def _take_lock(self, write: bool) -> None:
        """Hold the image's lock (see :mod:`.locking`); a writer then removes what
        killed writers left."""
        if write or self.kind == DIRECTORY:
            try:
                self._lock = locking.lock_image(self.path, exclusive=write)
            except FileNotFoundError:
                raise ImageError(f"{self.path}: no such image") from None
            except OSError as e:
                raise ImageError(f"{self.path}: cannot open image: {e.strerror}") from None
        if write and self.kind == DIRECTORY:
            dircommit.recover(self.path)
        elif write:
            locking.remove_stale_temps(self.path)

    def _scan_tar(self) -> None:
        self.index = archive.TarIndex.open(self.path, self._allow_trailing)
        for raw, member in self.index.members.items():
            self._found(raw, None if member.is_dir else
                        Entry(_logical(raw), member.size, member.mode, member=raw))

    def _scan_directory(self) -> None:
        root = self.path
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            for name in dirnames + filenames:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                problem = archive_header.name_problem(rel)
                if problem:
                    raise ImageError(f"{self.path}: {rel!r}: {problem}")
                if stat.S_ISDIR(st.st_mode):
                    self._found(rel, None)
                elif dircommit.is_leftover(name):
                    self.leftovers.append(rel)
                elif stat.S_ISREG(st.st_mode):
                    self._found(rel, Entry(_logical(rel), st.st_size, stat.S_IMODE(st.st_mode),
                                           path=full))
                else:
                    raise ImageError(
                        f"{self.path}: {rel} is a link or a special file: "
                        "an image holds only regular files and folders"
                    )

    def _found(self, stored: str, entry: Optional[Entry]) -> None:
        """Record a folder (*entry* None) or file found by a scan under its stored name."""
        name = _logical(stored)
        if entry is None:
            self._dirs.add(name)
        elif name in self._entries:
            legacy = layout.LEGACY_DISK + name[len(layout.DISK):]
            raise ImageError(f"{self.path}: it holds both {name} and {legacy} (the earlier "
                             f"tool's name of {layout.DISK}/): which one is the content is "
                             "ambiguous")
        else:
            self._entries[name] = entry

    def _check_paths(self) -> None:
        """No logical path may be both a file and a folder (``disk-files/`` is ``disk/``)."""
        folders = set(self._dirs)
        for name in list(self._entries) + list(self._dirs):
            folders.update(_parents(name))
        both = sorted(folders.intersection(self._entries))
        if both:
            raise ImageError(f"{self.path}: {both[0]} is both a file and a folder")

    def close(self) -> None:
        self._close_index()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _close_index(self) -> None:
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

    def folders(self) -> List[str]:
        """Names of the folders of the image, those its files imply included, sorted
        (the root left out)."""
        found = {d for d in self._dirs if d}
        for name in self._entries:
            found.update(_parents(name))
        return sorted(found)

    def exists(self, name: str) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ImageError(f"{self.path}: no {name} in the image") from None

    def unchanged(self, name: str) -> bool:
        """Whether file *name* is as the image held it when opened (neither added nor
        replaced since)."""
        return name in self._base and self._base[name] == self._entries.get(name)

    def size(self) -> int:
        """Total size of the files in the image."""
        return sum(e.size for e in self._entries.values())

    def pin(self) -> None:
        """Read from now on only bytes that agree with the manifest read next (see
        :mod:`.pinned`); for reading, never for editing."""
        self._pin = Pin(self.path)

    @property
    def pinned(self) -> bool:
        return self._pin is not None

    def read_bytes(self, name: str) -> bytes:
        if self._pin is not None and name in self._pin.kept:
            return self._pin.kept[name]
        entry = self.entry(name)
        if entry.size > MAX_CONFIG_SIZE:
            raise ImageError(f"{self.path}: {name} is too large to be a configuration file")
        if entry.data is not None:
            data = entry.data
        elif entry.member is not None:
            assert self.index is not None
            data = self.index.read_bytes(entry.member, MAX_CONFIG_SIZE)
        else:
            with self._open_file(entry) as f:
                data = f.read(MAX_CONFIG_SIZE + 1)
        return data if self._pin is None else self._pin.keep(name, data)

    def read_text(self, name: str) -> str:
        """Content of a text member (UTF-8)."""
        data = self.read_bytes(name)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ImageError(
                f"{self.path}: {name} is not UTF-8 text (byte {e.start})"
            ) from None

    def copy_to_fd(self, name: str, fd: int, progress: Optional[Progress] = None) -> int:
        """Stream a member's content to a file descriptor; return bytes written."""
        entry = self.entry(name)
        hasher = None
        if self._pin is not None:
            if name in self._pin.kept:
                return write_all(fd, self._pin.kept[name])
            hasher = self._pin.hasher(name)
        if entry.member is not None:
            assert self.index is not None
            member = self.index.file_member(entry.member)
            count = streams.copy_fd(self.index.fd, fd, member.size, progress,
                                    member.data_offset, hasher, self.path)
        elif entry.data is not None:
            count = write_all(fd, entry.data)
            if hasher is not None:
                hasher.update(entry.data)
        else:
            with self._open_file(entry) as src:
                count = streams.copy_fd(src.fileno(), fd, entry.size, progress,
                                        hasher=hasher, what=entry.path or name)
        if self._pin is not None:
            self._pin.check(name, count, hasher)
        return count

    @contextlib.contextmanager
    def open_member(self, name: str) -> Iterator[BinaryIO]:
        """A readable binary stream of a member's content, for a ``with`` block
        (streaming decompression); on a pinned image the end of the block (or a
        failure in it) reads the rest of the member and checks all of it."""
        if self._pin is not None and name in self._pin.kept:
            yield io.BytesIO(self._pin.kept[name])
            return
        entry = self.entry(name)
        if entry.member is not None:
            assert self.index is not None
            stream = self.index.open_member(entry.member)
        elif entry.data is not None:
            stream = io.BytesIO(entry.data)
        else:
            stream = self._open_file(entry)
        with stream:
            if self._pin is None:
                yield stream
                return
            checked = CheckedReader(self._pin, name, stream)
            try:
                yield io.BufferedReader(checked, streams.CHUNK)  # type: ignore[misc]
            except Exception:
                checked.finish()  # a changed member explains a reader's failure best
                raise
            checked.finish()

    @staticmethod
    def _open_file(entry: Entry) -> BinaryIO:
        """The file of a directory image's member, never through a symbolic link."""
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # type: ignore
        return os.fdopen(fd, "rb")

    def superseded(self) -> List[Tuple[str, int]]:
        """(name, size) of older versions of members still held by a file image."""
        if self.index is None:
            return []
        return [(_logical(m.name), m.size) for m in self.index.superseded]

    def format_version(self) -> int:
        """The image's format version: 1 for images made by the earlier tool."""
        if not self.exists(layout.FORMAT_MEMBER):
            return 1
        text = self.read_text(layout.FORMAT_MEMBER).strip(" \t\r\n")
        version = whole_number(text)
        if version is None:
            raise ImageError(f"{self.path}: {layout.FORMAT_MEMBER} holds {text!r}, not a version")
        return version

    # -- editing (in memory) ---------------------------------------------

    def write_bytes(self, name: str, data: bytes, mode: Optional[int] = None) -> None:
        """Set a member's content; unchanged content keeps the original member."""
        mode = layout.mode_for(name) if mode is None else mode
        current = self._entries.get(name)
        if current is not None and current.size == len(data) and current.mode == mode:
            if current.data == data or (current.data is None and self.read_bytes(name) == data):
                return
        self._set(Entry(name, len(data), mode, data=data))

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
        self._set(Entry(name, st.st_size, mode, path=os.path.abspath(source)))

    def _set(self, entry: Entry) -> None:
        """Add or replace a file; refused where the image has a folder of its name,
        or a file where it needs a folder."""
        name = entry.name
        if name in self._dirs or name in layout.FOLDERS or \
                any(n.startswith(name + "/") for n in self._entries):
            raise ImageError(f"{self.path}: {name} is a folder in the image: it cannot "
                             "also be a file")
        for parent in _parents(name):
            if parent in self._entries:
                raise ImageError(f"{self.path}: {parent} is a file in the image: it cannot "
                                 "also be a folder")
        self._entries[name] = entry

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

    def commit(self, progress: Optional[Progress] = None, complete: bool = True) -> bool:
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
        self._rescan()
        self._base = dict(self._entries)
        self.is_new = False
        return True

    def _changed(self) -> Tuple[List[Entry], List[Entry]]:
        """Changed and removed entries, the manifest left out (it is derived)."""
        changed = [e for n, e in self._entries.items()
                   if self._base.get(n) != e and n != layout.MANIFEST_MEMBER]
        removed = [e for n, e in self._base.items() if n not in self._entries]
        changed.sort(key=lambda e: layout.order_key(e.name))
        return changed, removed

    def _can_append(self) -> bool:
        """Whether the changes can be appended: nothing removed, a clean archive end."""
        assert self.index is not None
        changed, removed = self._changed()
        names = [e.name for e in changed] + [layout.MANIFEST_MEMBER]
        return not removed and can_append(self.index, names)

    def _old_manifest(self) -> Optional[Dict[str, "manifest.Line"]]:
        """The lines of the manifest the image had when opened (None: none, or damaged)."""
        entry = self._base.get(layout.MANIFEST_MEMBER)
        if entry is None or self._entries.get(layout.MANIFEST_MEMBER) != entry:
            return None
        try:
            return manifest.parse(self.read_bytes(layout.MANIFEST_MEMBER), self.path)
        except XenguestError:
            return None

    def _updated_manifest(self, changed: List[Entry],
                          builder: "manifest.Builder") -> Optional[bytes]:
        """The new manifest after writing *changed* through *builder*, or None when
        it is unchanged or the image has none."""
        old = self._old_manifest() if not self.is_new else {}
        if old is None:
            return None
        written = {e.name for e in changed}
        for name in self._entries:
            if manifest.covered(name) and name not in written and name in old:
                builder.keep(old[name])
        data = builder.render()
        if old and self._entries[layout.MANIFEST_MEMBER].size == len(data) \
                and self.read_bytes(layout.MANIFEST_MEMBER) == data:
            return None
        return data

    def _append_changes(self, progress: Optional[Progress]) -> None:
        assert self.index is not None
        changed = self._changed()[0]
        have_dirs = {_logical(raw) for raw, m in self.index.members.items() if m.is_dir}
        new_dirs = sorted(
            {d for e in changed for d in _parents(e.name)} - have_dirs, key=layout.order_key
        )
        tracker = Tracker(progress, sum(e.size for e in changed))
        builder = manifest.Builder()

        def write(writer: "archive.TarWriter") -> None:
            for d in new_dirs:
                writer.add_dir(d)
            for entry in changed:
                self._write_entry(writer, entry, tracker, builder)
            data = self._updated_manifest(changed, builder)
            if data is not None:
                writer.add_bytes(layout.MANIFEST_MEMBER, data, layout.FILE_MODE)

        append_members(self.path, self.index, write)
        tracker.finish()

    def _rescan(self) -> None:
        self._close_index()
        self._entries.clear()
        self._dirs.clear()
        self.leftovers.clear()
        if self.kind == FILE:
            self._scan_tar()
        else:
            self._scan_directory()
        self._check_paths()

    def write_file(self, dest: str, progress: Optional[Progress] = None, replace: bool = True) -> None:
        """Write the whole image canonically as a new file image at *dest* (atomic;
        without *replace*, *dest* must not exist by then)."""
        dirs = set(self._dirs) | set(layout.FOLDERS) | {""}
        for name in self._entries:
            dirs.update(_parents(name))
        items: List[Tuple[Tuple[int, str], Optional[Entry], str]] = []
        items.extend((layout.order_key(d, True), None, d) for d in dirs)
        files = {n: e for n, e in self._entries.items() if n != layout.MANIFEST_MEMBER}
        items.extend((layout.order_key(n), e, n) for n, e in files.items())
        items.append((layout.order_key(layout.MANIFEST_MEMBER), None, layout.MANIFEST_MEMBER))
        items.sort(key=lambda t: t[0])
        size = manifest.rendered_size((n, e.size) for n, e in files.items()
                                      if manifest.covered(n))
        tracker = Tracker(progress, sum(e.size for e in files.values()))
        builder = manifest.Builder()
        with atomic_output(dest, replace) as out:
            writer = archive.TarWriter(out, archive.source_date_epoch())
            offset = 0
            for _, entry, name in items:
                if name == layout.MANIFEST_MEMBER:
                    offset = writer.add_reserved(name, size, layout.FILE_MODE)
                elif entry is None:
                    writer.add_dir(name)
                else:
                    self._write_entry(writer, entry, tracker, builder)
            writer.close()
            data = builder.render()
            if len(data) != size:
                raise ImageError(f"{dest}: the manifest has {len(data)} bytes, not {size}")
            os.pwrite(out.fileno(), data, offset)
        tracker.finish()

    def _write_entry(self, writer: "archive.TarWriter", entry: Entry, tracker: "Tracker",
                     builder: "manifest.Builder") -> None:
        mode = _normal_mode(entry)
        hasher = builder.hasher(entry.name, entry.size, mode) \
            if manifest.covered(entry.name) else None
        if entry.data is not None:
            if hasher is not None:
                hasher.update(entry.data)
            writer.add_bytes(entry.name, entry.data, mode)
        elif entry.member is not None:
            assert self.index is not None
            writer.add_member_from(entry.name, self.index, entry.member, mode, tracker.member,
                                   hasher)
        else:
            writer.add_file(entry.name, entry.path, mode, tracker.member, hasher)
        tracker.advance(entry.size)

    def _commit_directory(self, complete: bool) -> None:
        changed, removed = self._changed()
        commit = dircommit.DirectoryCommit(self.path)
        builder = manifest.Builder()

        def stage(entry: Entry) -> None:
            hasher = builder.hasher(entry.name, entry.size, _normal_mode(entry)) \
                if manifest.covered(entry.name) else None
            with naming(os.path.join(self.path, *entry.name.split("/"))):
                self._stage(entry, commit.stage(entry.name), hasher)

        try:
            if self.is_new or complete:
                commit.folders(*layout.FOLDERS)
            for entry in changed:
                stage(entry)
            data = self._updated_manifest(changed, builder) if complete else None
            if data is not None:
                stage(Entry(layout.MANIFEST_MEMBER, len(data), layout.FILE_MODE, data=data))
            for entry in removed:
                commit.remove(os.path.relpath(entry.path, self.path) if entry.path
                              else entry.name)
        except BaseException:
            commit.roll_back()
            raise
        commit.apply()

    def _stage(self, entry: Entry, tmp: str, hasher: Optional[streams.Hasher]) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if entry.data is not None:
                if hasher is not None:
                    hasher.update(entry.data)
                write_all(fd, entry.data)
            elif entry.member is not None:
                assert self.index is not None
                member = self.index.file_member(entry.member)
                streams.copy_fd(self.index.fd, fd, member.size, offset=member.data_offset,
                                hasher=hasher)
            else:
                with open(entry.path, "rb") as src:  # type: ignore[arg-type]
                    streams.copy_fd(src.fileno(), fd, entry.size, hasher=hasher)
            os.fchmod(fd, _normal_mode(entry))
        finally:
            os.close(fd)


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

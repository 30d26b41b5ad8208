"""Committing to a directory image: all of a change, or nothing of it.

A directory image changes file by file, so a commit goes in steps:

1. stage: each new version is written to ``.NAME.xenguest-tmp`` beside NAME;
   a missing folder is listed in a journal, ``.xenguest-journal`` at the
   image's root, then made;
2. the journal lists the folders made and the files added, replaced and
   removed;
3. swap: each replaced or removed file is renamed to ``.NAME.xenguest-old``,
   each new version renamed to NAME;
4. the journal is deleted — the commit is done — then the kept old versions.

Any failure before step 4 puts everything back: the image is byte for byte
as it was.  A process killed before step 4 leaves the journal, and the next
writer (holding the writer lock, see :mod:`.locking`) rolls the commit back
the same way; killed later, it leaves old versions that the next writer
deletes.  These names are never members of the image.
"""

import contextlib
import os
import stat
from typing import Callable, Dict, Iterator, List, Tuple

from ..errors import ImageError
from ..fsutil import makedirs, naming, rmdir_quietly, unlink_quietly
from . import layout

JOURNAL = ".xenguest-journal"
STAGED = ".xenguest-tmp"
KEPT = ".xenguest-old"


def is_leftover(name: str) -> bool:
    """Whether the file name *name* (no folder) is one a commit writes for itself."""
    return name == JOURNAL or name.startswith(".") and name.endswith((STAGED, KEPT))


class DirectoryCommit:
    """One commit to the directory image at *root*: stage, then :meth:`apply`."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.plan: Dict[str, List[str]] = {"folders": [], "added": [], "replaced": [],
                                           "removed": []}

    def _path(self, rel: str, mark: str = "") -> str:
        parent, _, base = rel.rpartition("/")
        return os.path.join(self.root, *parent.split("/"), f".{base}{mark}" if mark else base)

    def folders(self, *rels: str) -> None:
        """Make the folders *rels* (and their parents) where missing; they are
        journaled first."""
        missing: List[str] = []
        for rel in rels:
            parts = [p for p in rel.split("/") if p]
            for depth in range(1, len(parts) + 1):
                sub = "/".join(parts[:depth])
                if sub not in missing and not os.path.lexists(os.path.join(self.root, sub)):
                    missing.append(sub)
        if missing:
            self.plan["folders"] += missing
            self._save()
        for rel in rels:
            makedirs(self.root, rel, [])

    def stage(self, rel: str) -> str:
        """The file to write the new version of *rel* to (its folder is made)."""
        self.folders(rel.rpartition("/")[0])
        target = self._path(rel)
        try:
            mode = os.lstat(target).st_mode
        except FileNotFoundError:
            self.plan["added"].append(rel)
        else:
            if not stat.S_ISREG(mode):
                raise ImageError(f"{target}: is a folder or a special file, not a file: "
                                 "it cannot be replaced by one")
            self.plan["replaced"].append(rel)
        return self._path(rel, STAGED)

    def remove(self, rel: str) -> None:
        """Remove the file *rel* when the commit is applied."""
        self.plan["removed"].append(rel)

    def _save(self) -> None:
        """Write the journal (atomically)."""
        import json  # only directory images write journals: file-image updates skip it

        journal = os.path.join(self.root, JOURNAL)
        staged = self._path(JOURNAL, STAGED)
        with open(staged, "w", encoding="utf-8", errors="surrogateescape") as f, \
                naming(journal):
            json.dump(self.plan, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(staged, journal)

    def apply(self) -> None:
        """Steps 2 to 4; on any failure everything is put back, then it is raised."""
        try:
            self._save()
            for rel in self.plan["replaced"] + self.plan["removed"]:
                os.rename(self._path(rel), self._path(rel, KEPT))
            for rel in self.plan["added"] + self.plan["replaced"]:
                os.rename(self._path(rel, STAGED), self._path(rel))
        except BaseException:
            self.roll_back()
            raise
        os.unlink(os.path.join(self.root, JOURNAL))
        for rel in self.plan["replaced"] + self.plan["removed"]:
            unlink_quietly(self._path(rel, KEPT))

    def roll_back(self) -> None:
        """Put the image back as it was before this commit (at any step before 4).

        A step that fails leaves the journal, for the next writer to finish."""
        done = True

        def attempt(step: Callable[[], None]) -> None:
            nonlocal done
            try:
                step()
            except (FileNotFoundError, IsADirectoryError):
                pass  # not there, or a folder: nothing of this commit's to undo
            except OSError:
                done = False

        for rel in self.plan["replaced"] + self.plan["removed"]:
            if os.path.lexists(self._path(rel, KEPT)):
                attempt(lambda: os.replace(self._path(rel, KEPT), self._path(rel)))
        for rel in self.plan["added"]:  # whatever file is there now, this commit put there
            attempt(lambda: os.unlink(self._path(rel)))
        for rel in self.plan["added"] + self.plan["replaced"]:
            attempt(lambda: os.unlink(self._path(rel, STAGED)))
        for rel in reversed(self.plan["folders"]):
            rmdir_quietly(os.path.join(self.root, rel))
        unlink_quietly(self._path(JOURNAL, STAGED))
        if done:
            unlink_quietly(os.path.join(self.root, JOURNAL))


def recover(root: str) -> None:
    """Finish what a killed commit to the image *root* left: roll it back if its
    journal is there, then delete every staged file and kept old version."""
    _remove_leftovers(root, (STAGED,))  # those of files staged after the journal was written
    journal = os.path.join(root, JOURNAL)
    if os.path.lexists(journal):
        import json

        commit = DirectoryCommit(root)
        try:
            with open(journal, encoding="utf-8", errors="surrogateescape") as f:
                plan = json.load(f)
            for key in commit.plan:
                commit.plan[key] = [str(rel) for rel in plan[key]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ImageError(f"{journal}: cannot roll back the interrupted update it "
                             f"describes: {e}") from None
        commit.roll_back()
        if os.path.lexists(journal):
            raise ImageError(f"{journal}: the interrupted update it describes could not be "
                             "rolled back completely (see the .xenguest-old files)")
    _remove_leftovers(root, (STAGED, KEPT))


def _remove_leftovers(root: str, marks: Tuple[str, ...]) -> None:
    for dirpath, filenames in _image_folders(root):
        for name in filenames:
            if name.startswith(".") and name.endswith(marks):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(dirpath, name))


def _image_folders(root: str) -> Iterator[Tuple[str, List[str]]]:
    """(folder, file names) of the image's root and of the folders of the format,
    the only places a commit writes to (a wrong folder is not searched through)."""
    yield root, [n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n))]
    for top in layout.FOLDERS + (layout.SIGNATURES, layout.LEGACY_DISK):
        for dirpath, _, filenames in os.walk(os.path.join(root, top)):
            yield dirpath, filenames

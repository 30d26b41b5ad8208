"""Copying the files of an image out into a folder (extract, the manager's install)."""

import os
from typing import Callable, Dict, List, Set

from ..errors import ImageError
from ..fsutil import makedirs, naming, rmdir_quietly, unlink_quietly
from .extract import extract
from .image import Image, _logical, _normal_mode


def copy_tree_out(image: Image, dest: str, select: Callable[[str], bool]) -> List[str]:
    """Copy the selected files and folders of *image* into the existing folder *dest*.

    *select* gets file names, and folder names with a trailing slash.  Nothing
    is overwritten; on failure everything created is removed again.
    """
    if image.index is not None and not image.pinned:  # a pinned image checks each copy
        files = {e.member: n for n, e in image._entries.items() if e.member is not None}
        made: Set[str] = set()
        dirs: Dict[str, str] = {}
        for raw, member in image.index.members.items():
            # disk/ and the earlier disk-files/ are one folder: extract it once
            if member.is_dir and _logical(raw) and _logical(raw) not in made:
                dirs[raw] = _logical(raw)
                made.add(dirs[raw])

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
            makedirs(dest, folder, created_dirs)
        for name in names:
            makedirs(dest, os.path.dirname(name), created_dirs)
            target = os.path.join(dest, *name.split("/"))
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            written.append(target)
            try:
                with naming(target):
                    image.copy_to_fd(name, fd)
                os.fchmod(fd, _normal_mode(image.entry(name)))
            finally:
                os.close(fd)
    except BaseException:
        for path in reversed(written):
            unlink_quietly(path)
        for d in reversed(created_dirs):
            rmdir_quietly(d)
        raise
    return folders + names

"""Small file-system helpers: paths, folders, and errors that name their file."""

import contextlib
import errno
import os
import stat
from typing import Iterator, List

from .errors import ImageError


def require_path(path: str, what: str) -> str:
    """*path*, unless it is empty (an empty path is not the current folder)."""
    if not path:
        raise ImageError(f"the {what} path is empty")
    return path


#: Errors of a write that found no room: they name no file by themselves.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextlib.contextmanager
def naming(path: str) -> Iterator[None]:
    """Give *path* as the file name to an out-of-space error raised inside (a write
    to an fd names no file), so that the message says which file did not fit."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno in _NO_ROOM:
            e.filename = path
        raise


def makedirs(root: str, rel: str, created: List[str]) -> None:
    """Create the folders of *rel* below *root*; append the ones made to *created*."""
    path = root
    for part in [p for p in rel.split("/") if p]:
        path = os.path.join(path, part)
        try:
            os.mkdir(path, 0o755)
            created.append(path)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise ImageError(f"{path}: exists and is not a folder") from None


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def rmdir_quietly(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass

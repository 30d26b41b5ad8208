"""One writer of an image at a time, and temporary files that nothing leaves behind.

Every writer of an image (update, sign, pack onto itself, create replacing
it) holds the image's writer lock — an exclusive ``flock`` on the image file
or folder — from before it reads the image until its commit is done.  A
second writer waits, then reads what the first one wrote: no reported change
is lost.  Readers of a directory image hold a shared lock, so that they never
see a commit half done; readers of a file image need none (an append or a
replacement leaves the old archive readable, see :mod:`.archive_append`).
A killed process releases its locks.  Where the file system cannot lock
(some network file systems), writers go on unlocked.

A new file image is written to ``.NAME.xenguest-tmp-`` and a random suffix,
beside NAME, locked by its writer until it is renamed to NAME.  Such a file whose lock is
free was left by a killed writer: the next writer of NAME removes it.
"""

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from typing import Tuple

#: What the temporary files of a file image are called after the image's name.
TEMP_MARK = ".xenguest-tmp"
_CANNOT_LOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF, errno.EINVAL}
_OPEN = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def _flock(fd: int, operation: int) -> None:
    """flock, or nothing where the file system cannot lock."""
    try:
        fcntl.flock(fd, operation)
    except OSError as e:
        if e.errno not in _CANNOT_LOCK:
            raise


def identity(fd: int) -> Tuple[int, int]:
    """(device, inode) of the file open as *fd*."""
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _same_file(fd: int, path: str, follow: bool = False) -> bool:
    """Whether *path* (*follow*: a symbolic link's target) still names the file of *fd*."""
    try:
        named = os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == identity(fd)


def lock_image(path: str, exclusive: bool) -> int:
    """Wait for the lock of the image file or folder *path*; return the fd holding it.

    *exclusive* is a writer's lock, else a reader's (shared).  An image that
    was replaced while waiting is locked again under its new identity.
    OSError if *path* cannot be opened (FileNotFoundError: no such image).
    """
    while True:
        fd = os.open(path, _OPEN)
        try:
            _flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            if _same_file(fd, path, follow=True):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def locked_temp(path: str) -> Tuple[int, str]:
    """A new, empty temporary file beside *path* (fd, name), locked until closed."""
    directory, base = os.path.split(path)
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}{TEMP_MARK}-", dir=directory or ".")
        try:
            _flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, tmp):  # else a cleaner took it for a dead writer's
                return fd, tmp
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)


def remove_stale_temps(path: str) -> None:
    """Remove the temporary files beside *path* of writers that were killed.

    A file whose lock cannot be taken belongs to a live writer (or lies on a
    file system without locks): it is left alone.
    """
    directory, base = os.path.split(path)
    prefix = f".{base}{TEMP_MARK}-"
    try:
        names = [n for n in os.listdir(directory or ".") if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        tmp = os.path.join(directory, name)
        try:
            fd = os.open(tmp, _OPEN | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            if _same_file(fd, tmp):
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        finally:
            os.close(fd)

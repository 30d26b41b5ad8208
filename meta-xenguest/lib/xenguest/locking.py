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
"""

import errno
import fcntl
import os
from typing import Tuple

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

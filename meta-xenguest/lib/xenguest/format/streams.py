"""Moving payload bytes between file descriptors, streamed, never held in memory.

A plain copy is kernel-side (``copy_file_range``, then ``sendfile``, then
1 MiB read/write chunks when the file systems allow neither).  A hashing copy
(:func:`copy_fd` with a hasher, :func:`hash_fd`) reads each chunk once into a
small ring of reusable buffers and hashes it on a second thread while the
calling thread writes it and reads the next: hashlib and the system calls
release the GIL, so on two cores a SHA-256 copy costs about what the slower of
hashing and copying costs, not their sum.
"""

import errno
import os
import queue
import threading
from typing import Any, BinaryIO, Callable, List, Optional, Union

from ..errors import ArchiveError

#: How often a long copy reports progress.
PROGRESS_STEP = 64 * 1024 * 1024
#: Chunk of the read/write copies; 1 MiB buffers stay in the CPU caches, larger ones do not.
CHUNK = 1024 * 1024
#: Buffers in flight in a hashing copy: one being hashed, one being written, one being read.
HASH_BUFFERS = 3
_NO_KERNEL_COPY = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP,
                   errno.ENOTSUP, errno.EBADF, errno.ETXTBSY, errno.EPERM}

Progress = Callable[[int, int], None]
#: A hashlib object (``update(bytes)``): data copied through it is hashed on the way.
Hasher = Any
Output = Union[int, BinaryIO]


def write_all(out: Output, data: Union[bytes, memoryview]) -> int:
    """Write all of *data* to *out* (an fd or a file object); return its length."""
    if not isinstance(out, int):
        out.write(data)
        return len(data)
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
    return len(data)


def _report(progress: Optional[Progress], done: int, count: int, reported: int) -> int:
    """Call *progress* every PROGRESS_STEP bytes (the caller reports the end); return
    the position last reported."""
    if progress and done - reported >= PROGRESS_STEP and done < count:
        progress(done, count)
        return done
    return reported


def copy_range(src: int, offset: int, count: int, out: Output,
               progress: Optional[Progress], what: str) -> None:
    """Copy *count* bytes of fd *src* from *offset* to *out* (an fd or a file object),
    kernel-side where possible; ArchiveError naming *what* if the source is shorter."""
    method = "range" if isinstance(out, int) else "rw"
    done = reported = 0
    while done < count:
        want = min(count - done, PROGRESS_STEP)
        try:
            if method == "range":
                got = os.copy_file_range(src, out, want, offset + done)  # type: ignore[arg-type]
            elif method == "sendfile":
                got = os.sendfile(out, src, offset + done, want)  # type: ignore[arg-type]
            else:
                got = write_all(out, os.pread(src, min(want, CHUNK), offset + done))
        except (OSError, AttributeError) as exc:
            if method == "rw" or getattr(exc, "errno", errno.ENOSYS) not in _NO_KERNEL_COPY:
                raise
            got = 0
        if got == 0:  # read/write decides: some file systems make kernel copies return 0
            if method == "rw":
                raise ArchiveError(f"{what} shrank while being copied")
            method = "sendfile" if method == "range" else "rw"
            continue
        done += got
        reported = _report(progress, done, count, reported)
    if progress:
        progress(done, count)


class _HashingThread:
    """A thread that feeds submitted chunks to a hasher, in order, and hands each
    buffer back once hashed.  Use as a context manager; the buffers are its own."""

    def __init__(self, hasher: Hasher, count: int) -> None:
        size = min(CHUNK, count)
        self._hasher = hasher
        self._free: "queue.Queue[bytearray]" = queue.Queue()
        for _ in range(HASH_BUFFERS):
            self._free.put(bytearray(size))
        self._todo: "queue.Queue[Optional[memoryview]]" = queue.Queue()
        self._failure: List[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="xenguest-hash", daemon=True)

    def _run(self) -> None:
        while True:
            chunk = self._todo.get()
            if chunk is None:
                return
            try:
                if not self._failure:
                    self._hasher.update(chunk)
            except BaseException as e:  # handed to the caller's thread by __exit__
                self._failure.append(e)
            self._free.put(chunk.obj)  # type: ignore[arg-type]  # the whole buffer

    def buffer(self) -> memoryview:
        """A buffer to read the next chunk into (waits for one to be hashed)."""
        return memoryview(self._free.get())

    def submit(self, chunk: memoryview) -> None:
        """Hash *chunk* (a slice of a buffer from :meth:`buffer`) after the previous ones."""
        self._todo.put(chunk)

    def __enter__(self) -> "_HashingThread":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._todo.put(None)
        self._thread.join()
        if self._failure and exc[0] is None:
            raise self._failure[0]


def _copy_hashing(src: int, offset: int, count: int, out: Optional[Output],
                  hasher: Hasher, progress: Optional[Progress], what: str) -> None:
    """Copy like :func:`copy_range`, hashing the bytes on the way (each read once);
    *out* None only hashes."""
    if count <= CHUNK:  # one chunk: nothing to overlap
        data = os.pread(src, count, offset)
        if len(data) < count:
            raise ArchiveError(f"{what} shrank while being copied")
        hasher.update(data)
        if out is not None:
            write_all(out, data)
        if progress:
            progress(count, count)
        return
    done = reported = 0
    with _HashingThread(hasher, count) as hashing:
        while done < count:
            view = hashing.buffer()
            got = os.preadv(src, [view[:count - done]], offset + done)
            if got == 0:
                raise ArchiveError(f"{what} shrank while being copied")
            chunk = view[:got]
            hashing.submit(chunk)
            if out is not None:
                write_all(out, chunk)
            done += got
            reported = _report(progress, done, count, reported)
    if progress:
        progress(done, count)


def hash_fd(fd: int, offset: int, count: int, hasher: Hasher) -> None:
    """Feed *count* bytes of *fd* from *offset* to *hasher* (streamed)."""
    _copy_hashing(fd, offset, count, None, hasher, None, "the file")


def copy_fd(src_fd: int, out_fd: Output, count: int, progress: Optional[Progress] = None,
            offset: int = 0, hasher: Optional[Hasher] = None, what: str = "the source file"
            ) -> int:
    """Copy *count* bytes of regular file *src_fd* from *offset* to *out_fd*; return count.

    Kernel-side where possible (*out_fd* may be a file, pipe or terminal), or
    through *hasher* when given; ArchiveError naming *what* if the source is
    shorter.  *src_fd*'s position is not used.
    """
    if hasher is not None:
        _copy_hashing(src_fd, offset, count, out_fd, hasher, progress, what)
    else:
        copy_range(src_fd, offset, count, out_fd, progress, what)
    return count


class Tracker:
    """Adds up the progress of several members into one (done, total) report."""

    def __init__(self, progress: Optional[Progress], total: int) -> None:
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

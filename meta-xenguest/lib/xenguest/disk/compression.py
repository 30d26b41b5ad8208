"""Decompressed streams of partition content, whatever compression its name says.

gzip, bzip2 and xz are decompressed by Python.  zstd is decompressed by
Python's own module where it has one (3.14 and later), else by the ``zstd``
program, fed from the compressed stream on a second thread.  Either way the
content is streamed: nothing is held in memory, and every byte is read once.

Where the content goes to a file that reads as zeros, the ``zstd`` program
writes it there itself (:func:`decompress_to_file`): sparse, and without
passing the decompressed bytes through a pipe and Python.
"""

import bz2
import contextlib
import gzip
import lzma
import resource
import signal
import subprocess
import tempfile
import threading
import zlib
from typing import Any, BinaryIO, Callable, Iterator, List, Optional, Tuple

from ..errors import XenguestError

#: Compressions a content name can carry ("" is none), by name suffix.
COMPRESSIONS: Tuple[str, ...] = ("", "gz", "bz2", "xz", "zst")
#: The program that decompresses zstd where Python cannot.
ZSTD_PROGRAM = "zstd"
CHUNK = 1024 * 1024


class CorruptContentError(XenguestError):
    """Compressed content is corrupt or truncated."""


class ContentTooLargeError(XenguestError):
    """Decompressed content is larger than the room it was given."""


def _python_zstd() -> Any:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # novermin (3.14+)
    except ImportError:
        return None
    return zstd


def program_needed(compression: str) -> Optional[str]:
    """The program decompressing *compression* needs, or None when Python does it."""
    return ZSTD_PROGRAM if compression == "zst" and _python_zstd() is None else None


def corrupt_errors() -> Tuple[type, ...]:
    """What Python's decompressors raise on a corrupt or truncated stream."""
    errors: List[type] = [EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile,
                          CorruptContentError]
    zstd = _python_zstd()
    if zstd is not None:
        errors.append(zstd.ZstdError)
    return tuple(errors)


@contextlib.contextmanager
def decompressed(raw: BinaryIO, compression: str,
                 program: Optional[str] = None) -> Iterator[BinaryIO]:
    """*raw* decompressed as *compression* (one of :data:`COMPRESSIONS`).

    *program* is the path of the program :func:`program_needed` names, when it
    names one.  A failing program raises :class:`CorruptContentError` when the
    stream is closed.
    """
    if compression not in COMPRESSIONS:
        raise XenguestError(f"unknown compression {compression!r}")
    if compression == "":
        yield raw
        return
    needed = program_needed(compression)
    if needed:
        with _through_program(raw, [program or needed, "-d", "-c", "-q"]) as stream:
            yield stream
        return
    if compression == "gz":
        stream: Any = gzip.GzipFile(fileobj=raw, mode="rb")
    elif compression == "bz2":
        stream = bz2.BZ2File(raw)
    elif compression == "xz":
        stream = lzma.LZMAFile(raw)
    else:
        stream = _python_zstd().ZstdFile(raw)
    with stream:
        yield stream


def decompress_to_file(raw: BinaryIO, program: str, target: str, limit: int) -> None:
    """Decompress the zstd stream *raw* with the zstd program at *program* into the
    file *target* (replaced; zero blocks are left as holes), at most *limit* bytes
    of it (ContentTooLargeError beyond); CorruptContentError if zstd fails."""

    def at_most_limit() -> None:  # in the child, before zstd runs
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)

    with _program(raw, [program, "-d", "-q", "-f", "--sparse", "-o", target],
                  subprocess.DEVNULL, at_most_limit) as proc:
        pass
    if proc.returncode in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        raise ContentTooLargeError(f"it holds more than {limit} bytes")


def _feed(raw: BinaryIO, pipe: BinaryIO, failures: List[BaseException]) -> None:
    """Copy *raw* into *pipe*, then close it; keep what went wrong in *failures*."""
    try:
        while True:
            chunk = raw.read(CHUNK)
            if not chunk:
                break
            pipe.write(chunk)
    except BrokenPipeError:
        pass  # the program stopped reading: its exit status says why
    except BaseException as e:  # noqa: B902 - handed to the calling thread
        failures.append(e)
    finally:
        try:
            pipe.close()
        except BrokenPipeError:
            pass


@contextlib.contextmanager
def _through_program(raw: BinaryIO, argv: List[str]) -> Iterator[BinaryIO]:
    """The output of the filter program *argv* whose input is *raw*."""
    with _program(raw, argv, subprocess.PIPE) as proc:
        assert proc.stdout is not None
        try:
            yield proc.stdout
            while proc.stdout.read(CHUNK):  # what the reader left (tar padding)
                pass
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()


@contextlib.contextmanager
def _program(raw: BinaryIO, argv: List[str], stdout: Any,
             preexec: Optional[Callable[[], None]] = None) -> Iterator["subprocess.Popen[bytes]"]:
    """Run *argv* with *raw* fed to its input on a second thread; after the block,
    wait for it: CorruptContentError if it failed (but for the signal SIGXFSZ,
    left to the caller)."""
    name = argv[0].rsplit("/", 1)[-1]
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=stdout,
                                    stderr=errors, preexec_fn=preexec)
        except OSError as e:
            raise XenguestError(f"cannot run {name}: {e.strerror}") from None
        assert proc.stdin is not None
        failures: List[BaseException] = []
        feeder = threading.Thread(target=_feed, args=(raw, proc.stdin, failures),
                                  name=f"{name}-feed", daemon=True)
        feeder.start()
        try:
            yield proc
        except BaseException:
            proc.kill()
            raise
        finally:
            returncode = proc.wait()
            feeder.join()
        if failures:
            raise failures[0]
        if returncode != 0 and returncode not in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
            errors.seek(0)
            lines = [x.strip() for x in errors.read(64 * 1024).decode("utf-8", "replace")
                     .splitlines() if x.strip()]
            detail = f": {lines[-1]}" if lines else ""
            raise CorruptContentError(f"{name} failed (exit status {returncode}){detail}")

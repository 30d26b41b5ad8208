"""Decompressed streams of partition content, whatever compression its name says.

gzip, bzip2 and xz are decompressed by Python.  zstd is decompressed by
Python's own module where it has one (3.14 and later), else by the ``zstd``
program, fed from the compressed stream on a second thread.  Either way the
content is streamed: nothing is held in memory, and every byte is read once.
"""

import bz2
import contextlib
import gzip
import lzma
import subprocess
import tempfile
import threading
import zlib
from typing import Any, BinaryIO, Iterator, List, Optional, Tuple

from ..errors import XenguestError

#: Compressions a content name can carry ("" is none), by name suffix.
COMPRESSIONS: Tuple[str, ...] = ("", "gz", "bz2", "xz", "zst")
#: The program that decompresses zstd where Python cannot.
ZSTD_PROGRAM = "zstd"
CHUNK = 1024 * 1024


class CorruptContentError(XenguestError):
    """Compressed content is corrupt or truncated."""


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
    name = argv[0].rsplit("/", 1)[-1]
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=errors)
        except OSError as e:
            raise XenguestError(f"cannot run {name}: {e.strerror}") from None
        assert proc.stdin is not None and proc.stdout is not None
        failures: List[BaseException] = []
        feeder = threading.Thread(target=_feed, args=(raw, proc.stdin, failures),
                                  name=f"{name}-feed", daemon=True)
        feeder.start()
        try:
            yield proc.stdout
            while proc.stdout.read(CHUNK):  # what the reader left (tar padding)
                pass
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            returncode = proc.wait()
            feeder.join()
        if failures:
            raise failures[0]
        if returncode != 0:
            errors.seek(0)
            lines = [x.strip() for x in errors.read(64 * 1024).decode("utf-8", "replace")
                     .splitlines() if x.strip()]
            detail = f": {lines[-1]}" if lines else ""
            raise CorruptContentError(f"{name} failed (exit status {returncode}){detail}")

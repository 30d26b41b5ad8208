"""Decompressed content streams: Python's decompressors and the real zstd program."""

import bz2
import gzip
import io
import lzma
import os
import shutil

import pytest
from manager_util import zstd
from xenguest.disk.compression import (
    COMPRESSIONS,
    CorruptContentError,
    corrupt_errors,
    decompressed,
    program_needed,
)
from xenguest.errors import XenguestError

DATA = os.urandom(100_000) + bytes(3 * 1024 * 1024) + b"the end"
COMPRESS = {"": lambda d: d, "gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress,
            "zst": zstd}


def program(compression):
    name = program_needed(compression)
    return shutil.which(name) if name else None


class FailingReader(io.RawIOBase):
    """A compressed stream whose storage fails after the first read."""

    def __init__(self, data):
        self.data, self.reads = data, 0

    def readable(self):
        return True

    def read(self, size=-1):
        self.reads += 1
        if self.reads > 1:
            raise OSError(5, "Input/output error")
        return self.data[:size]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_every_compression_round_trips(compression):
    raw = io.BytesIO(COMPRESS[compression](DATA))
    with decompressed(raw, compression, program(compression)) as stream:
        assert stream.read() == DATA


def test_zstd_needs_the_program_only_without_python_zstd():
    try:
        from compression import zstd as python_zstd  # noqa: F401
    except ImportError:
        assert program_needed("zst") == "zstd"
    else:
        assert program_needed("zst") is None
    assert [program_needed(c) for c in ("", "gz", "bz2", "xz")] == [None] * 4


def test_a_reader_may_stop_early():
    raw = io.BytesIO(zstd(DATA))
    with decompressed(raw, "zst", program("zst")) as stream:
        assert stream.read(10) == DATA[:10]


def test_a_failing_reader_stops_the_program():
    raw = io.BytesIO(zstd(DATA))
    with pytest.raises(ValueError, match="reader failed"):
        with decompressed(raw, "zst", program("zst")) as stream:
            stream.read(10)
            raise ValueError("reader failed")


def test_corrupt_zstd_is_one_clear_error():
    if program_needed("zst") is None:
        pytest.skip("Python decompresses zstd itself: covered by corrupt_errors()")
    with pytest.raises(CorruptContentError, match=r"^zstd failed \(exit status 1\): "):
        with decompressed(io.BytesIO(b"not zstd at all" * 10), "zst", program("zst")) as s:
            s.read()
    truncated = zstd(DATA)[:1000]
    with pytest.raises(corrupt_errors()):
        with decompressed(io.BytesIO(truncated), "zst", program("zst")) as s:
            s.read()


def test_a_failing_source_is_reported():
    raw = FailingReader(zstd(DATA))
    with pytest.raises(OSError, match="Input/output error"):
        with decompressed(raw, "zst", program("zst")) as stream:
            stream.read()


def test_unknown_compression_and_missing_program():
    with pytest.raises(XenguestError, match="unknown compression 'lz4'"):
        with decompressed(io.BytesIO(b""), "lz4"):
            pass
    if program_needed("zst"):
        with pytest.raises(XenguestError, match="^cannot run no-such-zstd: "):
            with decompressed(io.BytesIO(b""), "zst", "/nonexistent/no-such-zstd"):
                pass

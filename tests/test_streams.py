"""Streamed copies: kernel-side plain copies and the two-thread hashing copy."""

import hashlib
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xenguest.errors import ArchiveError
from xenguest.format.streams import CHUNK, PROGRESS_STEP, copy_fd, hash_fd

DATA = os.urandom(3 * CHUNK + 12345)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("streams") / "src"
    path.write_bytes(DATA)
    return str(path)


def copied(source: str, tmp_path, count: int, offset: int = 0, hashed: bool = True):
    """Copy COUNT bytes of SOURCE from OFFSET; (bytes written, hex digest or None)."""
    hasher = hashlib.sha256() if hashed else None
    out = str(tmp_path / "out")
    with open(source, "rb") as f, open(out, "wb") as o:
        assert copy_fd(f.fileno(), o.fileno(), count, offset=offset, hasher=hasher) == count
    with open(out, "rb") as o:
        return o.read(), hasher.hexdigest() if hasher else None


def test_plain_copy_from_an_offset(source, tmp_path):
    data, _ = copied(source, tmp_path, 100, offset=10, hashed=False)
    assert data == DATA[10:110]


@settings(max_examples=25, deadline=None)
@given(count=st.sampled_from([0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, len(DATA) - 7])
       | st.integers(0, len(DATA) - 7), offset=st.integers(0, 7))
def test_hashing_copy_writes_and_hashes_the_same_bytes(source, tmp_path_factory, count, offset):
    data, digest = copied(source, tmp_path_factory.mktemp("h"), count, offset)
    assert data == DATA[offset:offset + count]
    assert digest == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("hashed", [False, True])
def test_a_short_source_is_an_error(source, tmp_path, hashed):
    with pytest.raises(ArchiveError, match="the source file shrank while being copied"):
        copied(source, tmp_path, len(DATA) + 1, hashed=hashed)


def test_hash_only(source):
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        hash_fd(f.fileno(), 5, 2 * CHUNK + 3, digest)
    assert digest.hexdigest() == hashlib.sha256(DATA[5:2 * CHUNK + 8]).hexdigest()


def test_hashing_copy_reports_progress_and_reads_each_byte_once(tmp_path, monkeypatch):
    size = 2 * PROGRESS_STEP + 5
    src = tmp_path / "big"
    with open(str(src), "wb") as f:
        f.truncate(size)  # sparse: cheap to make, reads as zeros
    reads = []
    real_preadv = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, off: reads.append(off) or
                        real_preadv(fd, bufs, off))
    calls = []
    digest = hashlib.sha256()
    with open(str(src), "rb") as f, open(os.devnull, "wb") as out:
        copy_fd(f.fileno(), out.fileno(), size, lambda d, t: calls.append((d, t)),
                hasher=digest)
    assert calls == [(PROGRESS_STEP, size), (2 * PROGRESS_STEP, size), (size, size)]
    assert reads == list(range(0, size, CHUNK))
    zeros = hashlib.sha256()
    block = bytes(CHUNK)
    for pos in range(0, size, CHUNK):
        zeros.update(block[:min(CHUNK, size - pos)])
    assert digest.hexdigest() == zeros.hexdigest()


class FailingHasher:
    """A hasher that fails on its second chunk (stands in for any hashing error)."""

    def __init__(self):
        self.chunks = 0

    def update(self, data):
        self.chunks += 1
        if self.chunks == 2:
            raise ValueError("hasher broke")


def test_a_hasher_failure_reaches_the_caller(source, tmp_path):
    threads = threading.active_count()
    with open(source, "rb") as f, open(str(tmp_path / "out"), "wb") as out:
        with pytest.raises(ValueError, match="hasher broke"):
            copy_fd(f.fileno(), out.fileno(), len(DATA), hasher=FailingHasher())
    assert threading.active_count() == threads


def test_a_write_failure_stops_the_hashing_thread(source):
    threads = threading.active_count()
    read_end, write_end = os.pipe()
    os.close(read_end)  # writing now fails with EPIPE
    try:
        with open(source, "rb") as f, pytest.raises(BrokenPipeError):
            copy_fd(f.fileno(), write_end, len(DATA), hasher=hashlib.sha256())
    finally:
        os.close(write_end)
    assert threading.active_count() == threads

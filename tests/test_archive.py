"""Tests of xenguest.format.archive against the real GNU tar, busybox tar and Python tarfile."""

import gzip
import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
import threading
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mkimage_util import patch_header
from xenguest import operations
from xenguest.errors import ArchiveError, ImageError, XenguestError
from xenguest.format.append import append_members, atomic_output, can_append
from xenguest.format.archive import DEFAULT_MTIME, TarIndex, TarWriter, source_date_epoch
from xenguest.format.extract import extract
from xenguest.format.streams import PROGRESS_STEP

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "meta-xenguest", "lib")
LONG = "files/" + "long-directory-name-" * 4 + "/" + "a-file-with-a-long-name-" * 3 + ".bin"
KERNEL = bytes(range(256)) * 40 + b"tail"
ROOTFS = gzip.compress(b"root filesystem content\n" * 500, mtime=0)


def run(*cmd, **kwargs):
    kwargs.setdefault("check", True)
    return subprocess.run(cmd, capture_output=True, **kwargs)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def source_tree(root):
    """A small image directory: the inputs of the sample image."""
    os.makedirs(os.path.join(root, "files"))
    with open(os.path.join(root, "files", "kernel"), "wb") as f:
        f.write(KERNEL)
    with open(os.path.join(root, "rootfs.tar.gz"), "wb") as f:
        f.write(ROOTFS)
    return root


def write_sample(path, src, mtime=DEFAULT_MTIME):
    """Write the sample image, members in sorted order as the callers do."""
    with open(path, "wb") as f:
        w = TarWriter(f, mtime)
        w.add_dir("")
        w.add_bytes("disk.cfg", b'DISK_SIZE="0"\n')
        w.add_dir("disk")
        w.add_file("disk/rootfs.tar.gz", os.path.join(src, "rootfs.tar.gz"))
        w.add_dir("files")
        w.add_file("files/kernel", os.path.join(src, "files", "kernel"))
        w.add_bytes("guest.cfg", b"memory = 1024\nvcpus = 1\n")
        w.add_dir("guest.d")
        w.add_bytes("guest.d/kernel.cfg", b'kernel = "files/kernel"\n')
        w.add_dir("init.d")
        w.add_bytes("init.d/10-net.sh", b"#!/bin/sh\necho net\n", mode=0o755)
        w.add_bytes("params.cfg", b'GUEST_AUTOBOOT="1"\n')
        w.close()
    return path


EXPECTED = {
    "disk.cfg": (0o644, b'DISK_SIZE="0"\n'),
    "disk": (0o755, None),
    "disk/rootfs.tar.gz": (0o644, ROOTFS),
    "files": (0o755, None),
    "files/kernel": (0o644, KERNEL),
    "guest.cfg": (0o644, b"memory = 1024\nvcpus = 1\n"),
    "guest.d": (0o755, None),
    "guest.d/kernel.cfg": (0o644, b'kernel = "files/kernel"\n'),
    "init.d": (0o755, None),
    "init.d/10-net.sh": (0o755, b"#!/bin/sh\necho net\n"),
    "params.cfg": (0o644, b'GUEST_AUTOBOOT="1"\n'),
}


def tree(root):
    """{relative path: (permission bits, content or None for a directory)}."""
    found = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(parent, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            assert stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode), rel
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    content = f.read()
            found[rel] = (stat.S_IMODE(st.st_mode), content)
    return found


@pytest.fixture
def sample(tmp_path):
    src = source_tree(str(tmp_path / "src"))
    return write_sample(str(tmp_path / "guest.xenguest"), src)


# --- writing --------------------------------------------------------------------------

def test_gnu_tar_lists_members_with_root_owner_and_fixed_mtime(sample):
    out = run("tar", "-tvf", sample, env=dict(os.environ, TZ="UTC")).stdout.decode()
    rows = [line.split() for line in out.splitlines()]
    assert [r[5] for r in rows] == [
        "./", "./disk.cfg", "./disk/", "./disk/rootfs.tar.gz", "./files/", "./files/kernel",
        "./guest.cfg", "./guest.d/", "./guest.d/kernel.cfg", "./init.d/",
        "./init.d/10-net.sh", "./params.cfg"]
    assert {r[1] for r in rows} == {"root/root"}
    assert {(r[3], r[4]) for r in rows} == {("1980-01-01", "00:00")}
    assert rows[0][0] == "drwxr-xr-x" and rows[10][0] == "-rwxr-xr-x"
    assert rows[5][2] == str(len(KERNEL))
    assert os.path.getsize(sample) % 10240 == 0


def test_tar_xO_prints_a_member(sample):
    assert run("tar", "-xOf", sample, "./guest.cfg").stdout == b"memory = 1024\nvcpus = 1\n"
    assert run("busybox", "tar", "-xOf", sample, "./params.cfg").stdout == \
        b'GUEST_AUTOBOOT="1"\n'


@pytest.mark.parametrize("tool", [["tar"], ["busybox", "tar"]])
def test_real_tars_extract_the_tree(sample, tmp_path, tool):
    dest = tmp_path / "out"
    dest.mkdir()
    run(*tool, "-C", str(dest), "-xf", sample)
    assert tree(str(dest)) == EXPECTED


def test_gnu_tar_exclude_disk_as_consumers_do(sample, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    run("tar", "-C", str(dest), "--exclude=./disk", "-xf", sample)
    assert tree(str(dest)) == {k: v for k, v in EXPECTED.items() if not k.startswith("disk/")
                               and k != "disk"}


def test_byte_identical_to_gnu_tar(tmp_path):
    """Same bytes as GNU tar --format=gnu with root owner, fixed mtime and sorted names."""
    src = tmp_path / "src"
    (src / "init.d").mkdir(parents=True)
    (src / "guest.cfg").write_bytes(b"memory = 1\n")
    (src / "init.d" / "net.sh").write_bytes(b"#!/bin/sh\n")
    (src / LONG).parent.mkdir(parents=True)
    (src / LONG).write_bytes(b"long")
    for path, mode in [(src, 0o755), (src / "init.d", 0o755), (src / "init.d" / "net.sh", 0o755),
                       (src / "guest.cfg", 0o644), (src / LONG, 0o644)]:
        os.chmod(str(path), mode)
    for parent in (src / LONG).parents:
        if parent != src and str(parent).startswith(str(src)):
            os.chmod(str(parent), 0o755)
    gnu = str(tmp_path / "gnu.tar")
    run("tar", "--format=gnu", "--owner=root:0", "--group=root:0", "--mtime=@1600000000",
        "--sort=name", "-C", str(src), "-cf", gnu, "./")
    ours = str(tmp_path / "ours.tar")
    with open(ours, "wb") as f:
        w = TarWriter(f, 1600000000)
        for rel in sorted(run("tar", "-tf", gnu).stdout.decode().split()):
            name = rel[2:].rstrip("/")
            if rel.endswith("/"):
                w.add_dir(name)
            else:
                w.add_file(name, str(src / name), os.stat(str(src / name)).st_mode & 0o777)
        w.close()
    assert sha256(ours) == sha256(gnu)


def test_python_tarfile_reads_it(sample):
    with tarfile.open(sample) as tf:
        members = tf.getmembers()
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == \
            {(0, 0, "root", "root", DEFAULT_MTIME)}
        assert tf.extractfile("./files/kernel").read() == KERNEL
        assert members[0].name == "." and members[0].isdir()


def test_writes_are_byte_identical_whatever_the_inputs_metadata(tmp_path):
    src1 = source_tree(str(tmp_path / "src1"))
    src2 = source_tree(str(tmp_path / "src2"))
    os.utime(os.path.join(src2, "files", "kernel"), (12345, 12345))
    os.chown(os.path.join(src2, "rootfs.tar.gz"), 1234, 5678)
    one = write_sample(str(tmp_path / "one"), src1)
    two = write_sample(str(tmp_path / "two"), src2)
    assert sha256(one) == sha256(two)


def test_source_date_epoch(monkeypatch, tmp_path):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert source_date_epoch() == DEFAULT_MTIME == 315532800
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "")
    assert source_date_epoch() == DEFAULT_MTIME
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date_epoch() == 1700000000
    path = write_sample(str(tmp_path / "img"), source_tree(str(tmp_path / "s")),
                        source_date_epoch())
    with TarIndex.open(path) as index:
        assert {m.mtime for m in index.members.values()} == {1700000000}
    for bad in ["-1", "1.5", "abc", " 12", "0x10", "99999999999999"]:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", bad)
        with pytest.raises(ImageError, match="SOURCE_DATE_EPOCH"):
            source_date_epoch()


def test_long_names(tmp_path):
    path = str(tmp_path / "img")
    with open(path, "wb") as f:
        w = TarWriter(f, DEFAULT_MTIME)
        w.add_dir("")
        w.add_bytes(LONG, b"long")
        w.close()
    assert len("./" + LONG) > 100
    assert run("tar", "-tf", path).stdout.decode().splitlines() == ["./", "./" + LONG]
    assert run("tar", "-xOf", path, "./" + LONG).stdout == b"long"
    dest = tmp_path / "bb"
    dest.mkdir()
    run("busybox", "tar", "-C", str(dest), "-xf", path)
    assert (dest / LONG).read_bytes() == b"long"
    with TarIndex.open(path) as index:
        assert index.read_bytes(LONG) == b"long"


def test_member_over_8_gib(tmp_path):
    """GNU format encodes sizes over 8 GiB in base-256; the data is a hole in a sparse file."""
    size = 9 * 1024 ** 3 + 7
    info = tarfile.TarInfo("./disk/big.img")
    info.size = size
    header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    assert header[124] == 0x80  # base-256 marker of the size field
    path = str(tmp_path / "big")
    with open(path, "wb") as f:
        f.write(header)
        f.seek(512 + size + (-size % 512))
        f.write(bytes(10240))
    out = run("tar", "-tvf", path).stdout.decode()
    assert str(size) in out and "./disk/big.img" in out
    with TarIndex.open(path) as index:
        assert index.members["disk/big.img"].size == size
        assert index.end_offset == 512 + size + (-size % 512)


def test_writer_refuses_unsafe_names():
    w = TarWriter(io.BytesIO(), DEFAULT_MTIME)
    for bad in ["/abs", "../x", "a/../b", "./a", "a/", "a//b", "a\0b"]:
        with pytest.raises(ArchiveError, match="unsafe member name"):
            w.add_bytes(bad, b"")
    with pytest.raises(ArchiveError, match="root"):
        w.add_bytes("", b"")


def test_add_file_refuses_missing_and_special_sources(tmp_path):
    w = TarWriter(io.BytesIO(), DEFAULT_MTIME)
    with pytest.raises(XenguestError, match="cannot read .*nothing"):
        w.add_file("x", str(tmp_path / "nothing"))
    os.mkfifo(str(tmp_path / "fifo"))
    with pytest.raises(XenguestError, match="not a regular file"):
        w.add_file("x", str(tmp_path / "fifo"))


def test_add_file_streams_without_holding_the_payload(tmp_path):
    big = str(tmp_path / "payload")
    with open(big, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1024 * 1024))
        f.write(b"x" * 4096)
    calls = []

    class Sink:  # a file object without a file descriptor: read/write fallback
        size = 0

        def write(self, data):
            self.size += len(data)

        def flush(self):
            pass

    for out in [open(str(tmp_path / "img"), "wb"), Sink()]:
        tracemalloc.start()
        w = TarWriter(out, DEFAULT_MTIME)
        w.add_file("disk/payload", big, progress=lambda d, t: calls.append((d, t)))
        w.close()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 4 * 1024 * 1024, peak
        if isinstance(out, Sink):
            assert out.size == os.path.getsize(str(tmp_path / "img"))
        else:
            out.close()
    total = os.path.getsize(big)
    assert calls[:2] == [(PROGRESS_STEP, total), (total, total)]
    with TarIndex.open(str(tmp_path / "img")) as index:
        out = os.open(str(tmp_path / "copy"), os.O_WRONLY | os.O_CREAT)
        index.copy_member("disk/payload", out)
        os.close(out)
    assert sha256(big) == sha256(str(tmp_path / "copy"))


# --- reading --------------------------------------------------------------------------

def test_index_of_the_sample(sample):
    with TarIndex.open(sample) as index:
        assert sorted(index.members) == sorted([""] + list(EXPECTED))
        kernel = index.members["files/kernel"]
        assert (kernel.size, kernel.mode, kernel.mtime, kernel.raw_name) == \
            (len(KERNEL), 0o644, DEFAULT_MTIME, "./files/kernel")
        assert index.members["init.d/10-net.sh"].mode == 0o755
        assert index.members["guest.d"].is_dir
        assert index.read_bytes("files/kernel") == KERNEL
        with pytest.raises(ArchiveError, match="too large"):
            index.read_bytes("files/kernel", limit=100)
        with pytest.raises(ArchiveError, match="no member 'nope'"):
            index.read_bytes("nope")
        with pytest.raises(ArchiveError, match="is a directory"):
            index.read_bytes("files")
        with gzip.GzipFile(fileobj=index.open_member("disk/rootfs.tar.gz")) as gz:
            assert gz.read() == gzip.decompress(ROOTFS)
        assert index.superseded == []
        assert index.end_offset == max(m.data_offset + m.size for m in
                                       index.members.values()) // 512 * 512 + 512


def test_copy_member_to_a_pipe(sample):
    read_end, write_end = os.pipe()
    received = []
    reader = threading.Thread(target=lambda: received.append(os.fdopen(read_end, "rb").read()))
    reader.start()
    progress = []
    with TarIndex.open(sample) as index:
        assert index.copy_member("files/kernel", write_end,
                                 lambda d, t: progress.append((d, t))) == len(KERNEL)
    os.close(write_end)
    reader.join()
    assert received == [KERNEL]
    assert progress == [(len(KERNEL), len(KERNEL))]


def test_names_without_dot_slash_prefix(tmp_path):
    src = tmp_path / "d"
    (src / "files").mkdir(parents=True)
    (src / "guest.cfg").write_bytes(b"memory = 1\n")
    (src / "files" / "k").write_bytes(b"k")
    path = str(tmp_path / "plain.tar")
    run("tar", "-C", str(src), "-cf", path, "guest.cfg", "files")
    with TarIndex.open(path) as index:
        assert set(index.members) == {"guest.cfg", "files", "files/k"}
        assert index.members["guest.cfg"].raw_name == "guest.cfg"
    # GNU tar stores a file named twice as a hard link to the first copy: refused.
    run("tar", "-C", str(src), "-cf", path, "guest.cfg", ".")
    with pytest.raises(ArchiveError, match="'./guest.cfg': it is a hard link"):
        TarIndex.open(path)
    run("tar", "-C", str(src), "-cf", path, ".")
    with TarIndex.open(path) as index:
        assert set(index.members) == {"", "guest.cfg", "files", "files/k"}
        assert index.members[""].raw_name == "./"


def hostile(path, kind):
    """Write a tar with one hostile member of *kind* after a harmless one."""
    def add(tf, name, type_=tarfile.REGTYPE, data=b"", **extra):
        info = tarfile.TarInfo(name)
        info.type, info.size = type_, len(data)
        for key, value in extra.items():
            setattr(info, key, value)
        tf.addfile(info, io.BytesIO(data))
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        add(tf, "./guest.cfg", data=b"ok\n")
        if kind == "absolute":
            add(tf, "/etc/evil", data=b"x")
        elif kind == "dotdot":
            add(tf, "../evil", data=b"x")
        elif kind == "inner-dotdot":
            add(tf, "./a/../../evil", data=b"x")
        elif kind == "symlink":
            add(tf, "./files", tarfile.SYMTYPE, linkname="/tmp")
        elif kind == "hardlink":
            add(tf, "./evil", tarfile.LNKTYPE, linkname="./guest.cfg")
        elif kind == "chardev":
            add(tf, "./evil", tarfile.CHRTYPE, devmajor=1, devminor=3)
        elif kind == "blockdev":
            add(tf, "./evil", tarfile.BLKTYPE, devmajor=8, devminor=0)
        elif kind == "fifo":
            add(tf, "./evil", tarfile.FIFOTYPE)
        elif kind == "unknown-type":
            add(tf, "./evil", b"Z", data=b"x")
        elif kind == "file-as-root":
            add(tf, "./", data=b"x")
    if kind in ("nul", "pax"):
        info = tarfile.TarInfo("./ev\0il" + "l" * 100 if kind == "nul" else "x")
        info.pax_headers = {"path": "./evil"} if kind == "pax" else {}
        with open(path, "wb") as f:
            f.write(info.tobuf(tarfile.PAX_FORMAT if kind == "pax" else tarfile.GNU_FORMAT)
                    + bytes(1024))


HOSTILE = [("absolute", "'/etc/evil': absolute path"),
           ("dotdot", "'../evil': '..' in path"),
           ("inner-dotdot", "'./a/../../evil': '..' in path"),
           ("symlink", "'./files': it is a symbolic link"),
           ("hardlink", "'./evil': it is a hard link"),
           ("chardev", "'./evil': it is a character device"),
           ("blockdev", "'./evil': it is a block device"),
           ("fifo", "'./evil': it is a FIFO"),
           ("unknown-type", "'./evil': it is of unsupported type"),
           ("file-as-root", "'./': the root is not a directory"),
           ("nul", "'./ev\\\\x00il" + "l" * 100 + "': its name contains a NUL"),
           ("pax", "'././@PaxHeader': it is a pax extended header")]


@pytest.mark.parametrize("kind,message", HOSTILE, ids=[kind for kind, _ in HOSTILE])
def test_hostile_members_are_refused(tmp_path, kind, message):
    path = str(tmp_path / "evil.tar")
    hostile(path, kind)
    with pytest.raises(ArchiveError) as err:
        TarIndex.open(path)
    assert str(err.value).startswith(path + ": ")
    assert message.replace("\\\\", "\\") in str(err.value)


def test_gnu_sparse_member_is_refused(tmp_path):
    sparse = tmp_path / "sparse"
    with open(str(sparse), "wb") as f:
        f.seek(1024 * 1024)
        f.write(b"data")
    path = str(tmp_path / "sparse.tar")
    run("tar", "--format=gnu", "--sparse", "-C", str(tmp_path), "-cf", path, "sparse")
    with pytest.raises(ArchiveError, match="'sparse': it is a sparse file"):
        TarIndex.open(path)


def test_damaged_archives_are_refused(tmp_path, sample):
    data = open(sample, "rb").read()
    with TarIndex.open(sample) as index:
        kernel = index.members["files/kernel"]
        guest = index.members["guest.cfg"]
    cases = {
        "truncated-data": (data[:kernel.data_offset + 100], "truncated image: the data of "
                           "member './files/kernel' runs past the end of the file"),
        "truncated-header": (data[:guest.header_offset + 200],
                             f"truncated header at offset {guest.header_offset}"),
        "garbage-header": (data[:guest.header_offset] + b"garbage!" * 64,
                           f"invalid header at offset {guest.header_offset}"),
        "not-a-tar": (b"memory = 1024\n" * 100, "not a tar archive"),
        "gzip": (gzip.compress(data), "not a tar archive (it is gzip-compressed"),
        "empty": (b"", "not a tar archive (empty file)"),
        "short": (b"\0" * 100 + b"x", "not a tar archive"),
        "one zero byte": (b"\0", "not a tar archive"),
        "partial end block": (data[:guest.data_offset + 512] + bytes(100),
                              f"a partial block at offset {guest.data_offset + 512}"),
    }
    for name, (content, message) in cases.items():
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(content)
        with pytest.raises(ArchiveError) as err:
            TarIndex.open(path)
        assert str(err.value).startswith(path + ": "), name
        assert message in str(err.value), (name, str(err.value))
    with pytest.raises(ImageError, match="cannot open .*missing"):
        TarIndex.open(str(tmp_path / "missing"))
    with pytest.raises(ArchiveError, match="not a regular file"):
        TarIndex.open(str(tmp_path))


#: Headers outside what GNU tar, busybox tar and Python's tarfile all read alike:
#: (case, header offset, bytes written there, part of the error).
BAD_HEADERS = [
    ("base-256 mtime", 136, b"\x80" + b"\xff" * 11, "invalid mtime field"),
    ("negative size", 124, b"-0000000001\0", "invalid size field"),
    ("size with an underscore", 124, b"00000000_30\0", "invalid size field"),
    ("base-256 size with stray bits", 124, b"\x81" + bytes(10) + b"\x18", "invalid size"),
    ("empty mode", 100, bytes(8), "invalid mode field"),
    ("mode out of range", 100, b"0017777\0", "mode 17777 of './guest.cfg' is out of range"),
    ("base-256 uid", 108, b"\x80" + bytes(6) + b"\x01", "invalid uid field"),
    ("gid with a sign", 116, b"+000000\0", "invalid gid field"),
    ("device number", 329, b"abc", "invalid device major field"),
    ("link name on a file", 157, b"./params.cfg", "'./guest.cfg' has a link name"),
    ("contiguous file", 156, b"7", "'./guest.cfg': it is a contiguous file"),
    ("pax header", 156, b"x", "it is a pax extended header"),
    ("ustar prefix", 345, b"evil", "a ustar name prefix"),
    ("no magic (V7)", 257, bytes(8), "not a ustar or GNU tar header"),
    ("file name ending in /", 0, b"./guest.cfg/", "a file name ending in '/'"),
    ("data after the name", 12, b"junk", "name field holds data after its end"),
    ("non-UTF-8 name", 0, b"./gu\xffst.cfg", "its name is not UTF-8"),
    ("control character", 0, b"./gu\nst.cfg", "its name holds the control character"),
    ("owner name", 265, b"r\x01ot", "owner name of './guest.cfg' is not printable"),
    ("empty name", 0, bytes(100), "a header without a name"),  # busybox: a zero block
]


@pytest.mark.parametrize("case, start, data, message", BAD_HEADERS,
                         ids=[c[0] for c in BAD_HEADERS])
def test_headers_tar_readers_disagree_on_are_refused(sample, case, start, data, message):
    patch_header(sample, "guest.cfg", start, data)
    with pytest.raises(ArchiveError) as err:
        TarIndex.open(sample)
    assert str(err.value).startswith(sample + ": ") and message in str(err.value)


def test_a_refused_first_header_is_not_called_garbage(sample):
    patch_header(sample, "", 100, b"0017777\0")  # the root folder, at offset 0
    with pytest.raises(ArchiveError, match="invalid header at offset 0: mode 17777 of './'"):
        TarIndex.open(sample)


def test_checksums(sample):
    with TarIndex.open(sample) as index:
        offset = index.members["guest.cfg"].header_offset
    with open(sample, "rb") as f:
        f.seek(offset)
        block = bytearray(f.read(512))
    block[0:13] = "./güest.cfg".encode() + b"\0"  # bytes >= 0x80: the signed sum differs
    block[148:156] = b" " * 8
    signed = sum(b - 256 if b > 127 else b for b in block)
    for field, accepted in ((b"%06o\0 " % sum(block), True), (b"%06o\0 " % signed, False),
                            (b"%7o\0" % sum(block), True)):  # led by spaces
        block[148:156] = field
        with open(sample, "r+b") as f:
            f.seek(offset)
            f.write(block)
        if accepted:
            TarIndex.open(sample).close()
        else:
            with pytest.raises(ArchiveError, match="checksum mismatch"):
                TarIndex.open(sample)


def lone_zero_block_image(path, tail):
    """guest.cfg, one zero block, then *tail* (as bytes written by a TarWriter)."""
    buf = io.BytesIO()
    w = TarWriter(buf, DEFAULT_MTIME)
    w.add_bytes("guest.cfg", b"signed\n")
    buf.write(bytes(512))
    buf.write(tail)
    with open(path, "wb") as f:
        f.write(buf.getvalue() + bytes(-len(buf.getvalue()) % 10240))


def test_data_after_a_lone_zero_block_is_refused(tmp_path):
    path = str(tmp_path / "lone")
    second = io.BytesIO()
    TarWriter(second, DEFAULT_MTIME).add_bytes("guest.cfg", b"unsigned\n")
    lone_zero_block_image(path, second.getvalue())
    # busybox reads on past the zero block and prints the second guest.cfg
    assert run("busybox", "tar", "-xOf", path, "./guest.cfg").stdout == b"signed\nunsigned\n"
    with pytest.raises(ArchiveError, match="data after a lone zero block at offset 1024"):
        TarIndex.open(path)
    # Zeros after the end marker are padding, anything else is refused.
    lone_zero_block_image(path, bytes(512) + bytes(3000))
    TarIndex.open(path).close()
    lone_zero_block_image(path, bytes(512) + b"junk")
    with pytest.raises(ArchiveError, match="data after the end of the archive, at offset 2048"):
        TarIndex.open(path)


# --- appending ------------------------------------------------------------------------

NEW_CFG = b"memory = 2048\nvcpus = 2\n"


def add_updates(w, tmp_path):
    kernel = tmp_path / "new-kernel"
    kernel.write_bytes(b"new kernel" * 1000)
    w.add_bytes("disk/rootfs.tar.gz", b"new rootfs")
    w.add_bytes("guest.cfg", NEW_CFG)
    w.add_file("files/kernel", str(kernel))
    w.add_dir("init.pre")
    w.add_bytes("init.pre/" + "x" * 120, b"long new name")


def test_appended_members_win_for_every_reader(sample, tmp_path):
    size_before = os.path.getsize(sample)
    with TarIndex.open(sample) as index:
        assert can_append(index, ["guest.cfg", "files/kernel"])
        append_members(sample, index, lambda w: add_updates(w, tmp_path))
    assert os.path.getsize(sample) % 10240 == 0 and os.path.getsize(sample) > size_before
    new_kernel = b"new kernel" * 1000
    assert run("tar", "-xOf", sample, "./guest.cfg").stdout == NEW_CFG
    assert run("tar", "-xOf", sample, "./files/kernel").stdout == new_kernel
    assert run("busybox", "tar", "-xOf", sample, "./guest.cfg").stdout == NEW_CFG
    for tool in [["tar"], ["busybox", "tar"]]:
        dest = tmp_path / ("out-" + tool[0])
        dest.mkdir()
        run(*tool, "-C", str(dest), "-xf", sample)
        assert (dest / "guest.cfg").read_bytes() == NEW_CFG
        assert (dest / "files" / "kernel").read_bytes() == new_kernel
        assert (dest / "init.pre" / ("x" * 120)).read_bytes() == b"long new name"
    dest = tmp_path / "no-disk"
    dest.mkdir()
    run("tar", "-C", str(dest), "--exclude=./disk", "-xf", sample)
    assert not (dest / "disk").exists() and (dest / "guest.cfg").read_bytes() == NEW_CFG
    with tarfile.open(sample) as tf:
        assert tf.extractfile("./guest.cfg").read() == NEW_CFG
    with TarIndex.open(sample) as index:
        assert index.read_bytes("guest.cfg") == NEW_CFG
        assert index.read_bytes("files/kernel") == new_kernel
        assert sorted((m.name, m.raw_name) for m in index.superseded) == [
            ("disk/rootfs.tar.gz", "././disk/rootfs.tar.gz"),
            ("files/kernel", "././files/kernel"), ("guest.cfg", "././guest.cfg")]
        dest = tmp_path / "ours"
        dest.mkdir()
        extract(index, str(dest))
        assert (dest / "guest.cfg").read_bytes() == NEW_CFG
        # A second update of the same member renames only the newest old copy.
        append_members(sample, index, lambda w: w.add_bytes("guest.cfg", b"memory = 3\n"))
    assert run("tar", "-xOf", sample, "./guest.cfg").stdout == b"memory = 3\n"
    listing = run("tar", "-tf", sample).stdout.decode().splitlines()
    assert listing.count("././guest.cfg") == 2 and listing.count("./guest.cfg") == 1


def test_append_from_another_index(sample, tmp_path):
    other = write_sample(str(tmp_path / "other"), source_tree(str(tmp_path / "src2")))
    with TarIndex.open(other) as source, TarIndex.open(sample) as index:
        append_members(sample, index,
                       lambda w: w.add_member_from("disk/copy.tar.gz", source,
                                                   "disk/rootfs.tar.gz"))
    assert run("tar", "-xOf", sample, "./disk/copy.tar.gz").stdout == ROOTFS


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_append_leaves_the_file_byte_identical(sample, tmp_path, error):
    before = sha256(sample)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(300 * 1024))  # makes the file grow past its old size

    def write(w):
        add_updates(w, tmp_path)
        w.add_file("disk/big", str(big))
        raise error("stop")

    with TarIndex.open(sample) as index:
        with pytest.raises(error):
            append_members(sample, index, write)
        with pytest.raises(XenguestError, match="cannot read"):
            append_members(sample, index, lambda w: w.add_file("x", str(tmp_path / "none")))
        append_members(sample, index, lambda w: None)
    assert sha256(sample) == before


def test_append_refused_when_data_follows_the_archive(sample):
    with open(sample, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"!")
    before = sha256(sample)
    with pytest.raises(ArchiveError, match="data after the end of the archive, at offset "
                       f"{os.path.getsize(sample) - 1} "):
        TarIndex.open(sample)
    with TarIndex.open(sample, allow_trailing=True) as index:
        assert not can_append(index)
        with pytest.raises(ArchiveError, match="data follows the end of the archive"):
            append_members(sample, index, lambda w: w.add_bytes("guest.cfg", b""))
    assert sha256(sample) == before


def test_append_refused_when_an_old_long_name_cannot_be_renamed(tmp_path):
    path = str(tmp_path / "img")
    with open(path, "wb") as f:
        w = TarWriter(f, DEFAULT_MTIME)
        w.add_bytes(LONG, b"old")
        w.close()
    before = sha256(path)
    with TarIndex.open(path) as index:
        assert can_append(index) and not can_append(index, [LONG])
        with pytest.raises(ArchiveError, match="cannot replace member .* in place"):
            append_members(path, index, lambda w: w.add_bytes(LONG, b"new"))
    assert sha256(path) == before


def test_append_refused_when_the_file_changed(sample):
    with TarIndex.open(sample) as index:
        with open(sample, "ab") as f:
            f.write(bytes(10240))
        with pytest.raises(ArchiveError, match="changed since it was read"):
            append_members(sample, index, lambda w: w.add_bytes("guest.cfg", b""))


def test_readers_see_the_old_archive_while_an_append_runs(sample, tmp_path):
    old_cfg = b"memory = 1024\nvcpus = 1\n"
    big = tmp_path / "big"
    big.write_bytes(os.urandom(200 * 1024))
    seen = []

    def write(w):
        w.add_bytes("guest.cfg", NEW_CFG)
        w.add_file("disk/big", str(big))  # written past the old end of the file
        seen.append(run("tar", "-xOf", sample, "./guest.cfg"))
        seen.append(run("busybox", "tar", "-xOf", sample, "./guest.cfg"))
        with tarfile.open(sample) as tf:
            seen.append(tf.getnames())

    listed = run("tar", "-tf", sample).stdout.decode().split()
    with TarIndex.open(sample) as index:
        append_members(sample, index, write)
    assert [(r.stdout, r.stderr) for r in seen[:2]] == [(old_cfg, b"")] * 2
    assert seen[2] == [n.rstrip("/") if n != "./" else "." for n in listed]
    assert run("busybox", "tar", "-xOf", sample, "./disk/big").stdout == big.read_bytes()


def test_busybox_reads_past_a_lone_zero_block(tmp_path):
    """Why the commit is two blocks: one zero block does not end the archive for busybox."""
    path = tmp_path / "lone"
    buf = io.BytesIO()
    w = TarWriter(buf, DEFAULT_MTIME)
    w.add_bytes("a", b"a")
    buf.write(bytes(512))
    w.add_bytes("b", b"b")
    w.close()
    path.write_bytes(buf.getvalue())
    path = str(path)
    assert run("busybox", "tar", "-tf", path).stdout.split() == [b"./a", b"./b"]
    gnu = run("tar", "-tf", path)
    assert gnu.stdout.split() == [b"./a"] and b"lone zero block" in gnu.stderr


CRASH = """
import os, sys
sys.path.insert(0, {lib!r})
from xenguest.format.archive import TarIndex
from xenguest.format.append import append_members
calls = []
real_fsync = os.fsync
def fsync(fd):
    calls.append(fd)
    if len(calls) == {crash_at}:
        os._exit(9)  # the process dies here, as in a power cut before the sync
    real_fsync(fd)
os.fsync = fsync
with TarIndex.open({path!r}) as index:
    def write(w):
        w.add_bytes("guest.cfg", b"crash\\n")
        w.add_bytes("params.cfg", b"")
    append_members({path!r}, index, write)
"""


def crash_append(path, crash_at):
    script = CRASH.format(lib=LIB, path=path, crash_at=crash_at)
    assert run(sys.executable, "-c", script, check=False).returncode == 9


def test_crash_before_the_commit_still_reads_as_the_old_archive(sample, tmp_path):
    old = open(sample, "rb").read()
    with TarIndex.open(sample) as index:
        end = index.end_offset
    crash_append(sample, crash_at=1)
    new = open(sample, "rb").read()
    assert new[:end + 1024] == old[:end + 1024] and new != old
    gnu = run("tar", "-xOf", sample, "./guest.cfg")
    assert (gnu.stdout, gnu.stderr) == (b"memory = 1024\nvcpus = 1\n", b"")
    assert run("tar", "-tf", sample).stdout.decode().split() == [
        "./" + n + ("/" if EXPECTED[n][1] is None else "") if n else "./"
        for n in [""] + list(EXPECTED)]
    busybox = run("busybox", "tar", "-xOf", sample, "./guest.cfg")
    assert (busybox.stdout, busybox.stderr) == (gnu.stdout, b"")
    with tarfile.open(sample) as tf:
        assert [m.name for m in tf].count("./guest.cfg") == 1
        assert tf.extractfile("./guest.cfg").read() == gnu.stdout
    # The debris after the end marker is invisible to every tar reader, but the image
    # is no longer exactly what they see: readers refuse it, writers rewrite it.
    with pytest.raises(ArchiveError, match=f"data after the end of the archive, at offset "
                       f"{end + 1024} .*'pack IMAGE IMAGE' writes the image again"):
        TarIndex.open(sample)
    with TarIndex.open(sample, allow_trailing=True) as index:
        assert index.read_bytes("guest.cfg") == gnu.stdout and not index.superseded
        assert not can_append(index)  # the debris after the end asks for a rewrite


def test_the_next_update_heals_an_interrupted_one(tmp_path):
    image = str(tmp_path / "guest.xenguest")
    operations.create(image, [("--xen-memory", "64")])
    crash_append(image, crash_at=1)
    with pytest.raises(ArchiveError, match="data after the end of the archive"):
        operations.check(image)
    assert operations.update(image, [("--xen-memory", "128")])
    assert [p for p in operations.check(image) if p.severity == "error"] == []
    with TarIndex.open(image) as index:
        assert index.trailing is None and b"memory = 128" in index.read_bytes("guest.cfg")
    crash_append(image, crash_at=1)
    operations.pack(image, image)
    with TarIndex.open(image) as index:
        assert index.trailing is None


def test_crash_between_commit_and_rename_is_valid_and_heals(sample, tmp_path):
    crash_append(sample, crash_at=2)
    assert run("tar", "-xOf", sample, "./guest.cfg").stdout == \
        b"memory = 1024\nvcpus = 1\ncrash\n"  # both occurrences still match ./guest.cfg
    dest = tmp_path / "out"
    dest.mkdir()
    run("tar", "-C", str(dest), "-xf", sample)
    assert (dest / "guest.cfg").read_bytes() == b"crash\n"
    with TarIndex.open(sample) as index:
        assert index.read_bytes("guest.cfg") == b"crash\n"
        append_members(sample, index, lambda w: w.add_bytes("guest.cfg", b"healed\n"))
    assert run("tar", "-xOf", sample, "./guest.cfg").stdout == b"healed\n"


# --- atomic rewrite -------------------------------------------------------------------

def leftovers(directory):
    return [n for n in os.listdir(directory) if ".xenguest-tmp-" in n]


def test_atomic_output_replaces_and_keeps_mode(tmp_path):
    path = tmp_path / "img"
    path.write_bytes(b"old")
    os.chmod(str(path), 0o600)
    with atomic_output(str(path)) as out:
        out.write(b"new")
        assert leftovers(str(tmp_path))[0].startswith(".img.xenguest-tmp-")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh"
    old_mask = os.umask(0o027)
    try:
        with atomic_output(str(fresh)) as out:
            out.write(b"x")
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
    link = tmp_path / "link"
    link.symlink_to("img")
    with atomic_output(str(link)) as out:
        out.write(b"through link")
    assert link.is_symlink() and path.read_bytes() == b"through link"
    assert leftovers(str(tmp_path)) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_output_failure_keeps_the_original(tmp_path, error):
    path = tmp_path / "img"
    path.write_bytes(b"old")
    with pytest.raises(error):
        with atomic_output(str(path)) as out:
            w = TarWriter(out, DEFAULT_MTIME)
            w.add_bytes("guest.cfg", b"half")
            raise error("stop")
    assert path.read_bytes() == b"old" and leftovers(str(tmp_path)) == []
    with pytest.raises(XenguestError, match="cannot create"):
        with atomic_output(str(tmp_path / "no" / "dir")):
            pass


# --- extraction -----------------------------------------------------------------------

def test_extract_everything_with_modes_and_mtimes(tmp_path):
    path = str(tmp_path / "img")
    with open(path, "wb") as f:
        w = TarWriter(f, 1600000000)
        w.add_dir("")
        w.add_dir("init.d", mode=0o777)
        w.add_bytes("init.d/suid", b"s", mode=0o4777)
        w.add_bytes("files/deep/implicit", b"i", mode=0o666)
        w.close()
    dest = tmp_path / "out"
    dest.mkdir()
    with TarIndex.open(path) as index:
        assert extract(index, str(dest)) == ["init.d", "init.d/suid", "files/deep/implicit"]
    assert tree(str(dest)) == {"init.d": (0o755, None), "init.d/suid": (0o755, b"s"),
                               "files": (0o755, None), "files/deep": (0o755, None),
                               "files/deep/implicit": (0o644, b"i")}
    assert os.stat(str(dest / "init.d" / "suid")).st_mtime == 1600000000
    assert os.stat(str(dest / "init.d")).st_mtime == 1600000000


def test_extract_select_and_rename(sample, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    with TarIndex.open(sample) as index:
        done = extract(index, str(dest), select=lambda n: n.startswith("disk/"),
                       rename=lambda n: "payload/" + n.split("/", 1)[1])
        assert done == ["payload/rootfs.tar.gz"]
        assert (dest / "payload" / "rootfs.tar.gz").read_bytes() == ROOTFS
        with pytest.raises(ArchiveError, match="unsafe destination path '../x'"):
            extract(index, str(dest), rename=lambda n: "../x")
        with pytest.raises(ArchiveError, match="both extract to 'same'"):
            extract(index, str(dest), select=lambda n: n.endswith(".cfg"),
                    rename=lambda n: "same")


def test_extract_refuses_existing_files_before_writing(sample, tmp_path):
    dest = tmp_path / "out"
    (dest / "init.d").mkdir(parents=True)
    (dest / "init.d" / "10-net.sh").write_bytes(b"mine")
    before = tree(str(dest))
    with TarIndex.open(sample) as index:
        with pytest.raises(ArchiveError, match=f"{dest}/init.d/10-net.sh exists already"):
            extract(index, str(dest))
    assert tree(str(dest)) == before


def test_extract_never_follows_a_planted_symlink(sample, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "files").symlink_to(str(elsewhere))
    with TarIndex.open(sample) as index:
        with pytest.raises(ArchiveError, match=f"{dest}/files is a symbolic link"):
            extract(index, str(dest))
    assert os.listdir(str(elsewhere)) == [] and os.listdir(str(dest)) == ["files"]


def test_extract_cleans_up_on_failure(sample, tmp_path):
    with TarIndex.open(sample) as index:
        # The image shrinks under our feet: the last member cannot be copied.
        os.truncate(sample, index.members["params.cfg"].data_offset)
        dest = tmp_path / "out"
        (dest / "disk").mkdir(parents=True)
        with pytest.raises(ArchiveError, match="shrank"):
            extract(index, str(dest))
    assert tree(str(dest)) == {"disk": (0o755, None)}


def test_a_file_used_as_a_directory_is_refused(tmp_path):
    path = str(tmp_path / "img")
    with open(path, "wb") as f:
        w = TarWriter(f, DEFAULT_MTIME)
        w.add_bytes("files", b"a file")
        w.add_bytes("files/kernel", b"k")
        w.close()
    with pytest.raises(ArchiveError, match="'files' is both a file and a folder"):
        TarIndex.open(path)
    # Extraction checks its destinations too: renames may make the same clash.
    with open(path, "wb") as f:
        w = TarWriter(f, DEFAULT_MTIME)
        w.add_bytes("a", b"a file")
        w.add_bytes("b", b"k")
        w.close()
    dest = tmp_path / "out"
    dest.mkdir()
    with TarIndex.open(path) as index:
        with pytest.raises(ArchiveError, match="'files' is both a file and a directory"):
            extract(index, str(dest), rename={"a": "files", "b": "files/kernel"}.get)
    assert os.listdir(str(dest)) == []


# --- properties -----------------------------------------------------------------------

segment = st.text(alphabet=st.characters(blacklist_characters="/\0",
                                         blacklist_categories=("Cs", "Cc")),
                  min_size=1, max_size=40).filter(lambda p: p not in (".", ".."))
names = st.lists(segment, min_size=1, max_size=4).map("/".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(names, st.binary(max_size=1500), min_size=1, max_size=6))
def test_written_members_read_back(tmp_path_factory, files):
    path = str(tmp_path_factory.mktemp("prop") / "img")
    files = {n: d for n, d in files.items()
             if not any(o.startswith(n + "/") for o in files)}  # a file is no directory
    with open(path, "wb") as f:
        w = TarWriter(f, DEFAULT_MTIME)
        for name in sorted(files):
            w.add_bytes(name, files[name], mode=0o600)
        w.close()
    with TarIndex.open(path) as index:
        assert {n: index.read_bytes(n) for n in index.members} == files
    with tarfile.open(path, encoding="utf-8") as tf:
        assert {m.name[2:]: tf.extractfile(m).read() for m in tf} == files


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(st.data())
def test_damaged_images_give_archive_errors_only(tmp_path, data):
    base = tmp_path / "base"
    if not base.exists():
        write_sample(str(base), source_tree(str(tmp_path / "src")))
    image = bytearray(base.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(image) - 1))
        image[pos] = data.draw(st.integers(0, 255))
    image = image[:data.draw(st.integers(0, len(image)))]
    path = tmp_path / "damaged"
    path.write_bytes(bytes(image))
    try:
        with TarIndex.open(str(path)) as index:
            for member in index.members.values():
                assert member.data_offset + member.size <= len(image)
                if not member.is_dir and member.size < 100000:
                    index.read_bytes(member.name)
    except ArchiveError as exc:
        assert str(exc).startswith(str(path) + ": ")

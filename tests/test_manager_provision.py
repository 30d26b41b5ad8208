"""Guest disks provisioned with the real tools, read back with the real tools.

``xenguest-manager create`` builds the disk of each image below (sfdisk, mke2fs,
debugfs, mkfs.vfat, mtools, mkswap) into a file, without mounting anything;
the tests read it back with ``sfdisk --json``, ``fsck``, ``dumpe2fs``,
``debugfs`` and ``mdir``/``mtype``.  No hypervisor is involved: the toolstack
is an in-process test double, never called by ``create``.
"""

import bz2
import gzip
import json
import lzma
import os
import re
import subprocess
import tarfile

import pytest
from manager_util import (
    MIB,
    ROOTFS,
    RecordingToolstack,
    make_image,
    make_tar,
    manager,
    tar_entry,
    tree,
    write,
    zstd,
)
from xenguest.disk.build import plan_disk, sfdisk_script
from xenguest.disk.compression import program_needed
from xenguest.disk.config import DiskConfig, Partition
from xenguest.errors import XenguestError
from xenguest.manager import ManagerError

TOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", LC_ALL="C")


def run(*args: str) -> str:
    proc = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=TOOLS_ENV)
    assert proc.returncode == 0, (args, proc.stderr.decode())
    return proc.stdout.decode("utf-8", "replace")


def partitions(disk: str) -> dict:
    table = json.loads(run("sfdisk", "--json", disk))["partitiontable"]
    assert table["label"] == "dos"
    return {int(re.search(r"(\d+)$", p["node"]).group(1)): p for p in table["partitions"]}


def ext_spec(disk: str, number: int) -> str:
    return f"{disk}?offset={partitions(disk)[number]['start'] * 512}"


def dq(path: str) -> str:
    """A path as one debugfs argument."""
    return '"' + path.replace('"', '""') + '"'


def ext_stat(spec: str, path: str) -> dict:
    out = run("debugfs", "-R", f"stat {dq(path)}", spec)
    head = re.search(r"Type: (.+?)\s+Mode:\s+(\d+)", out)
    result = {
        "type": head.group(1),
        "mode": int(head.group(2), 8),
        "uid": int(re.search(r"User:\s+(\d+)", out).group(1)),
        "gid": int(re.search(r"Group:\s+(\d+)", out).group(1)),
        "links": int(re.search(r"Links: (\d+)", out).group(1)),
        "mtime": int(re.search(r"mtime: 0x([0-9a-f]+)", out).group(1), 16),
        "inode": int(re.search(r"Inode: (\d+)", out).group(1)),
    }
    link = re.search(r'Fast link dest: "(.*)"', out)
    device = re.search(r"Device major/minor number: (\d+):(\d+)", out)
    result["target"] = link.group(1) if link else None
    result["device"] = (int(device.group(1)), int(device.group(2))) if device else None
    return result


def ext_cat(spec: str, path: str) -> bytes:
    proc = subprocess.run(["debugfs", "-R", f"cat {dq(path)}", spec], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, check=True)
    return proc.stdout


def fsck_clean(spec: str) -> None:
    proc = subprocess.run(["fsck.ext4", "-fn", spec], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout.decode()


def create(tmp_path, edits, name="guest"):
    image = make_image(str(tmp_path / f"{name}.xenguest"), edits)
    mgr = manager(str(tmp_path / "state"), RecordingToolstack())
    mgr.create(image)
    return mgr, str(tmp_path / "state" / "guests" / name / "disk.img")


# -- layout ---------------------------------------------------------------------------

def test_plan_keeps_numbers_orders_and_sizes():
    disk = DiskConfig(100, "", {1: Partition(1, 10, "ext4"), 3: Partition(3, 20, "swap")})
    plan = plan_disk(disk)
    assert plan.size == 100 * MIB
    assert [(p.number, p.start, p.size) for p in plan.partitions] == [
        (1, MIB, 10 * MIB), (3, 11 * MIB, 20 * MIB)]
    assert "part3 : start=22528, size=40960, type=82" in sfdisk_script(plan)


def test_plan_exact_fit_grows_by_the_table_space():
    disk = DiskConfig(4000, "", {1: Partition(1, 4000, "ext4", "rootfs.tar.gz")})
    assert plan_disk(disk).size == 4001 * MIB
    assert plan_disk(DiskConfig(0, "", {})) is None


def test_table_gaps_types_and_exact_size(tmp_path):
    img = write(str(tmp_path / "raw.img"), b"R" * 1000)
    _, disk = create(tmp_path, [
        ("--disk-size", "12M"), ("--disk-add-file", img),
        ("--disk-add-part", "1:3M:ext2:"), ("--disk-add-part", "3:4M:vfat:"),
        ("--disk-add-part", "4:5M::raw.img")])
    assert os.path.getsize(disk) == 13 * MIB
    parts = partitions(disk)
    assert sorted(parts) == [1, 3, 4]
    assert [(parts[n]["start"], parts[n]["size"], parts[n]["type"]) for n in (1, 3, 4)] == [
        (2048, 6144, "83"), (8192, 8192, "c"), (16384, 10240, "83")]
    # the file stays sparse: only metadata and content were written
    assert os.stat(disk).st_blocks * 512 < 4 * MIB


# -- ext filesystems with tar content ---------------------------------------------------------

@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz", "zst"])
def test_ext4_tar_content_owners_modes_links(tmp_path, compression):
    name = "rootfs.tar" + (f".{compression}" if compression else "")
    tar = make_tar(str(tmp_path / name), ROOTFS, compression)
    _, disk = create(tmp_path, [("--disk-size", "20M"), ("--disk-add-file", tar),
                                ("--disk-add-part", f"1:16M:ext4:{name}")])
    spec = ext_spec(disk, 1)
    fsck_clean(spec)
    assert ext_cat(spec, "/etc/hostname") == b"guest\n"
    assert ext_cat(spec, "/home/user/notes.txt") == b"hello from the disk\n"
    shadow = ext_stat(spec, "/etc/shadow")
    assert (shadow["mode"], shadow["uid"], shadow["gid"]) == (0o640, 0, 42)
    assert shadow["mtime"] == 1600000000
    home = ext_stat(spec, "/home/user")
    assert (home["type"], home["mode"], home["uid"], home["gid"]) == ("directory", 0o700,
                                                                       1000, 1000)
    assert ext_stat(spec, "/etc")["mtime"] == 1500000000
    busybox, ls = ext_stat(spec, "/bin/busybox"), ext_stat(spec, "/bin/ls")
    assert busybox["mode"] == 0o4755 and busybox["links"] == 2
    assert ls["inode"] == busybox["inode"]
    assert ext_cat(spec, "/bin/busybox") == dict((i.name, d) for i, d in ROOTFS)["./bin/busybox"]
    sh = ext_stat(spec, "/bin/sh")
    assert (sh["type"], sh["target"]) == ("symlink", "busybox")
    console = ext_stat(spec, "/dev/console")
    assert (console["type"], console["mode"], console["device"]) == (
        "character special", 0o600, (5, 1))
    assert ext_stat(spec, "/run/initctl")["type"] == "FIFO"
    assert ext_cat(spec, "/with space/it's \"quoted\".txt") == b"odd name\n"
    assert "extent" in run("dumpe2fs", "-h", spec)


@pytest.mark.parametrize("fs,journal", [("ext2", False), ("ext3", True)])
def test_ext2_ext3_formats(tmp_path, fs, journal):
    tar = make_tar(str(tmp_path / "data.tar"), [tar_entry("./a.txt", b"a")])
    _, disk = create(tmp_path, [("--disk-size", "12M"), ("--disk-add-file", tar),
                                ("--disk-add-part", f"2:8M:{fs}:data.tar")])
    spec = ext_spec(disk, 2)
    fsck_clean(spec)
    features = run("dumpe2fs", "-h", spec)
    assert ("has_journal" in features) == journal
    assert "extent" not in features
    assert ext_cat(spec, "/a.txt") == b"a"


def test_many_files_span_several_debugfs_batches(tmp_path, monkeypatch):
    from xenguest.disk import populate
    monkeypatch.setattr(populate, "BATCH_FILES", 7)
    entries = [tar_entry("./d", kind=tarfile.DIRTYPE, mode=0o750, uid=3)]
    entries += [tar_entry(f"./d/f{i}", str(i).encode(), uid=i) for i in range(30)]
    entries.append(tar_entry("./d/f3", b"replaced"))  # a later member replaces an earlier one
    tar = make_tar(str(tmp_path / "many.tar"), entries)
    _, disk = create(tmp_path, [("--disk-size", "12M"), ("--disk-add-file", tar),
                                ("--disk-add-part", "1:8M:ext4:many.tar")])
    spec = ext_spec(disk, 1)
    fsck_clean(spec)
    assert ext_cat(spec, "/d/f29") == b"29" and ext_stat(spec, "/d/f29")["uid"] == 29
    assert ext_cat(spec, "/d/f3") == b"replaced"
    assert (ext_stat(spec, "/d")["mode"], ext_stat(spec, "/d")["uid"]) == (0o750, 3)


# -- vfat, swap, raw images ---------------------------------------------------------------------

def test_vfat_tar_content_with_mtools(tmp_path):
    tar = make_tar(str(tmp_path / "boot.tar.gz"), [
        tar_entry("./EFI", kind=tarfile.DIRTYPE, mode=0o755),
        tar_entry("./EFI/BOOT/bootaa64.efi", b"MZ" + bytes(5000)),
        tar_entry("./Long File Name.txt", b"long\n"),
        tar_entry("./copy.txt", kind=tarfile.LNKTYPE, linkname="./Long File Name.txt"),
    ], "gz")
    _, disk = create(tmp_path, [("--disk-size", "40M"), ("--disk-add-file", tar),
                                ("--disk-add-part", "1:34M:vfat:boot.tar.gz")])
    spec = f"{disk}@@{MIB}"
    listing = run("mdir", "-/", "-i", spec, "::/")
    assert "bootaa64 efi" in listing and "Long File Name.txt" in listing
    assert run("mtype", "-i", spec, "::/Long File Name.txt") == "long\n"
    assert run("mtype", "-i", spec, "::/copy.txt") == "long\n"
    assert "2020-09-13" in run("mdir", "-i", spec, "::/copy.txt")
    # the filesystem is sound: fsck.vfat on a copy of the partition
    part = str(tmp_path / "part.vfat")
    with open(disk, "rb") as src, open(part, "wb") as dst:
        src.seek(MIB)
        dst.write(src.read(34 * MIB))
    assert subprocess.run(["fsck.vfat", "-n", part], stdout=subprocess.DEVNULL).returncode == 0


def test_swap_partition_has_a_swap_header(tmp_path):
    _, disk = create(tmp_path, [("--disk-size", "20M"), ("--disk-add-part", "2:16M:swap:")])
    start = partitions(disk)[2]["start"] * 512
    with open(disk, "rb") as f:
        f.seek(start)
        header = f.read(65536)
    page = os.sysconf("SC_PAGE_SIZE")
    assert header[page - 10:page] == b"SWAPSPACE2"
    last_page = int.from_bytes(header[1028:1032], "little")
    assert last_page == 16 * MIB // page - 1


@pytest.mark.parametrize("suffix,compress", [
    (".img", lambda d: d), (".img.gz", gzip.compress), (".img.bz2", bz2.compress),
    (".img.xz", lzma.compress), (".img.zst", zstd)])
def test_raw_image_content_byte_for_byte(tmp_path, suffix, compress):
    data = os.urandom(300000) + bytes(2 * MIB) + b"tail"
    src = write(str(tmp_path / f"fw{suffix}"), compress(data))
    _, disk = create(tmp_path, [("--disk-size", "8M"), ("--disk-add-file", src),
                                ("--disk-add-part", f"3:4M::fw{suffix}")])
    start = partitions(disk)[3]["start"] * 512
    with open(disk, "rb") as f:
        f.seek(start)
        assert f.read(len(data)) == data
        assert f.read(4 * MIB - len(data)) == bytes(4 * MIB - len(data))


# -- failures roll back --------------------------------------------------------------

def assert_nothing_kept(tmp_path):
    """Only the (empty) guests folder and lock files may remain."""
    left = [p for p in tree(str(tmp_path / "state")) if not p.startswith("locks")]
    assert left in ([], ["guests"])


def failing_create(tmp_path, edits, **settings) -> str:
    image = make_image(str(tmp_path / "guest.xenguest"), edits)
    mgr = manager(str(tmp_path / "state"), RecordingToolstack(), **settings)
    with pytest.raises(XenguestError) as err:
        mgr.create(image)
    assert "\n" not in str(err.value)
    assert_nothing_kept(tmp_path)
    return str(err.value)


def test_corrupt_tarball_rolls_back(tmp_path):
    good = gzip.compress(open(make_tar(str(tmp_path / "x.tar"), ROOTFS), "rb").read())
    write(str(tmp_path / "rootfs.tar.gz"), good[:len(good) // 2])
    message = failing_create(tmp_path, [
        ("--disk-size", "20M"), ("--disk-add-file", str(tmp_path / "rootfs.tar.gz")),
        ("--disk-add-part", "1:16M:ext4:rootfs.tar.gz")])
    assert message.startswith("guest guest: provision the disk: partition 1 (ext4, "
                              "rootfs.tar.gz): rootfs.tar.gz is corrupt or truncated")
    assert message.endswith("(nothing was kept)")


def test_not_an_xz_stream_rolls_back(tmp_path):
    write(str(tmp_path / "rootfs.tar.xz"), b"this is not xz data" * 100)
    message = failing_create(tmp_path, [
        ("--disk-size", "20M"), ("--disk-add-file", str(tmp_path / "rootfs.tar.xz")),
        ("--disk-add-part", "1:16M:ext4:rootfs.tar.xz")])
    assert "rootfs.tar.xz is corrupt or truncated" in message


def test_corrupt_zstd_tarball_rolls_back(tmp_path):
    good = open(make_tar(str(tmp_path / "rootfs.tar.zst"), ROOTFS, "zst"), "rb").read()
    write(str(tmp_path / "rootfs.tar.zst"), good[:len(good) // 2])
    message = failing_create(tmp_path, [
        ("--disk-size", "20M"), ("--disk-add-file", str(tmp_path / "rootfs.tar.zst")),
        ("--disk-add-part", "1:16M:ext4:rootfs.tar.zst")])
    assert message.startswith("guest guest: provision the disk: partition 1 (ext4, "
                              "rootfs.tar.zst): rootfs.tar.zst is corrupt or truncated")


def test_zstd_content_needs_the_zstd_program_where_python_has_no_zstd(tmp_path):
    tar = make_tar(str(tmp_path / "rootfs.tar.zst"), ROOTFS, "zst")
    edits = [("--disk-size", "20M"), ("--disk-add-file", tar),
             ("--disk-add-part", "1:16M:ext4:rootfs.tar.zst")]
    no_zstd = {"zstd": str(tmp_path / "no-such-zstd")}
    if program_needed("zst"):  # Python before 3.14
        message = failing_create(tmp_path, edits, commands=no_zstd)
        assert message.startswith("missing command(s): zstd (zstd)")
    else:
        image = make_image(str(tmp_path / "guest.xenguest"), edits)
        manager(str(tmp_path / "state"), RecordingToolstack(), commands=no_zstd).create(image)


def test_format_failure_rolls_back(tmp_path):
    message = failing_create(tmp_path, [("--disk-size", "20M"),
                                        ("--disk-add-part", "1:16M:ext4:")],
                             commands={"mke2fs": "/bin/false"})
    assert "partition 1 (ext4): mke2fs failed (exit status 1)" in message


def test_content_larger_than_its_partition_rolls_back(tmp_path):
    big = write(str(tmp_path / "big.img.gz"), gzip.compress(bytes(3 * MIB)))
    message = failing_create(tmp_path, [("--disk-size", "4M"), ("--disk-add-file", big),
                                        ("--disk-add-part", "1:2M::big.img.gz")])
    assert "big.img.gz is larger than the partition (2 MiB)" in message
    tar = make_tar(str(tmp_path / "fat.tar"), [tar_entry("./blob", os.urandom(3 * MIB))])
    os.unlink(str(tmp_path / "guest.xenguest"))
    message = failing_create(tmp_path, [("--disk-size", "4M"), ("--disk-add-file", tar),
                                        ("--disk-add-part", "1:2M:ext4:fat.tar")])
    assert "too small for its content" in message


def test_symlink_on_vfat_is_refused_and_rolled_back(tmp_path):
    tar = make_tar(str(tmp_path / "boot.tar"), [
        tar_entry("./a", b"a"), tar_entry("./b", kind=tarfile.SYMTYPE, linkname="a")])
    message = failing_create(tmp_path, [("--disk-size", "40M"), ("--disk-add-file", tar),
                                        ("--disk-add-part", "1:34M:vfat:boot.tar")])
    assert "a vfat filesystem cannot hold a symbolic link" in message


def test_member_escaping_the_root_is_refused(tmp_path):
    tar = make_tar(str(tmp_path / "evil.tar"), [tar_entry("../../etc/passwd", b"x")])
    message = failing_create(tmp_path, [("--disk-size", "12M"), ("--disk-add-file", tar),
                                        ("--disk-add-part", "1:8M:ext4:evil.tar")])
    assert "points outside the archive root" in message


@pytest.mark.parametrize("fs", ["ext4", "vfat"])
def test_payload_time_that_is_not_a_number_is_refused(tmp_path, fs):
    entry = tar_entry("./a", b"a")
    entry[0].pax_headers = {"mtime": "nan"}  # tarfile reads it as a float NaN
    tar = make_tar(str(tmp_path / "odd.tar"), [entry])
    message = failing_create(tmp_path, [("--disk-size", "40M"), ("--disk-add-file", tar),
                                        ("--disk-add-part", f"1:34M:{fs}:odd.tar")])
    assert "archive member './a': its modification time is not a number" in message


def test_missing_tool_is_refused_before_anything_is_made(tmp_path):
    message = failing_create(tmp_path, [("--disk-size", "20M"),
                                        ("--disk-add-part", "1:16M:vfat:")],
                             commands={"mkfs.vfat": str(tmp_path / "no-such-mkfs")})
    assert message.startswith("missing command(s): mkfs.vfat (dosfstools)")


def test_interrupted_create_leftovers_are_cleaned(tmp_path):
    image = make_image(str(tmp_path / "guest.xenguest"))
    state = tmp_path / "state"
    write(str(state / "guests" / ".guest.partial" / "disk.img"), b"half")
    mgr = manager(str(state), RecordingToolstack())
    assert mgr.create(image) == "guest"
    assert not os.path.exists(str(state / "guests" / ".guest.partial"))
    with pytest.raises(ManagerError, match="exists already"):
        mgr.create(image)

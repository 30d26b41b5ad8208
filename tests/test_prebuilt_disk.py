"""Prebuilt disks: the whole guest disk in the image, zstd-compressed, written by the host.

An image may carry its disk already built (``render-disk DISK.img.zst``, then
``--disk-add-prebuilt``, or the BitBake class): a plain regular member that every tar
reader extracts alike, covered by the manifest, described in disk.cfg by two keys older
tools ignore.  ``check`` holds it to the described disk's size and to the description and
content it was built from; xenguest-manager streams it onto the disk, skipping zero
blocks, after checking its partition table — no sfdisk, mke2fs, debugfs or mtools needed.
"""

import os
import subprocess

import pytest
from manager_util import MIB, ROOTFS, RecordingToolstack, make_image, make_tar, manager, write
from mkimage_util import mkimage, ok
from test_render_disk import guest_image, read, render
from xenguest.disk.build import Provisioner, plan_disk
from xenguest.disk.config import DiskConfig, Partition
from xenguest.errors import XenguestError
from xenguest.operations import check, create, extract_disk_file, open_image
from xenguest.operations.editor import GuestEditor
from xenguest.problems import ERROR, WARNING
from xenguest.programs import Host


def zstd_stdin(data: bytes) -> bytes:
    """zstd reading a pipe: its header cannot record the size."""
    return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def with_prebuilt(tmp_path, image=None):
    """The guest image with its disk rendered and added as its prebuilt disk."""
    image = image or guest_image(tmp_path)
    packed = render(image, str(tmp_path / "disk.img.zst"))
    ok("update", image, f"--disk-add-prebuilt={packed}")
    return image


def errors(image):
    return [(p.location, p.message) for p in check(image) if p.severity == ERROR]


def test_an_added_prebuilt_disk_is_described_and_valid(tmp_path):
    image = with_prebuilt(tmp_path)
    assert errors(image) == []
    with open_image(image) as opened:
        disk = GuestEditor(opened).disk
        assert disk.prebuilt == "disk.img.zst"
        assert disk.prebuilt_from.startswith("sha256:")
        text = opened.read_text("disk.cfg")
        assert 'DISK_PREBUILT="disk.img.zst"\n' in text
        assert opened.read_bytes("disk/disk.img.zst") == read(str(tmp_path / "disk.img.zst"))
    assert "valid (0 error(s), " in ok("check", "--verify", image).out
    info = ok("info", image).out
    assert "partition 1" in info


def test_the_manager_writes_it_sparse_without_the_disk_tools(tmp_path):
    image = with_prebuilt(tmp_path)
    raw = render(image, str(tmp_path / "rendered.img"), "--ignore-prebuilt")
    missing = str(tmp_path / "none")
    mgr = manager(str(tmp_path / "state"), RecordingToolstack(),
                  commands={name: missing for name in
                            ("sfdisk", "mke2fs", "debugfs", "mkfs.vfat", "mcopy", "mmd",
                             "mkswap")})
    mgr.create(image, "web")
    disk = str(tmp_path / "state" / "guests" / "web" / "disk.img")
    assert read(disk) == read(raw)
    assert os.stat(disk).st_blocks * 512 < 8 * MIB


def test_render_disk_writes_the_prebuilt_disk_as_it_is(tmp_path):
    image = guest_image(tmp_path)
    (tmp_path / "other").mkdir()
    stale = render(image, str(tmp_path / "other" / "disk.img.zst"),
                   env={"SOURCE_DATE_EPOCH": "1234567890"})
    ok("update", image, f"--disk-add-prebuilt={stale}")
    built = render(image, str(tmp_path / "built.img"), "--ignore-prebuilt")
    copied = render(image, str(tmp_path / "copied.img"))
    assert read(copied) != read(built)
    assert read(copied) == subprocess.run(["zstd", "-q", "-d", "-c", stale],
                                          stdout=subprocess.PIPE, check=True).stdout


def test_check_holds_it_to_the_described_size(tmp_path):
    image = guest_image(tmp_path)
    small = make_image(str(tmp_path / "small.xenguest"), [("--disk-size", "12M"),
                                                         ("--disk-add-part", "1:8M:ext4:")])
    other = render(small, str(tmp_path / "small.img.zst"))
    result = mkimage("update", image, f"--disk-add-prebuilt={other}")
    assert result.rc == 1
    assert result.err.strip() == (
        "xenguest-mkimage update: disk.cfg: DISK_PREBUILT: small.img.zst holds a disk of "
        f"{12 * MIB} bytes, the description one of {80 * MIB}")
    raw = write(str(tmp_path / "raw.img"), bytes(MIB))
    result = mkimage("update", image, f"--disk-add-prebuilt={raw}")
    assert "raw.img holds a disk of 1048576 bytes" in result.err
    unsized = write(str(tmp_path / "unsized.img.zst"), zstd_stdin(bytes(80 * MIB)))
    ok_with_warning = mkimage("update", image, f"--disk-add-prebuilt={unsized}")
    assert ok_with_warning.rc == 0
    assert [(p.severity, p.message) for p in check(image) if p.location.endswith("PREBUILT")] == [
        (WARNING, "unsized.img.zst: its zstd header does not record its size: it is checked "
                  "only when the disk is written")]
    not_zstd = write(str(tmp_path / "fake.img.zst"), b"plain bytes")
    result = mkimage("update", image, f"--disk-add-prebuilt={not_zstd}")
    assert "fake.img.zst: not zstd data (no zstd frame at its start)" in result.err
    result = mkimage("update", image, f"--disk-add-prebuilt={tmp_path / 'rootfs.tar.zst'}")
    assert "the name must end in .img (raw) or .img.zst" in result.err


def test_a_stale_prebuilt_disk_is_refused_until_built_again_or_removed(tmp_path):
    image = with_prebuilt(tmp_path)
    newer = make_tar(str(tmp_path / "newer.tar.zst"), ROOTFS[:4], "zst")
    result = mkimage("update", image, f"--disk-add-file={newer}:rootfs.tar.zst")
    assert result.rc == 1 and "disk.img.zst was built from another description or content " \
        "than the image holds" in result.err
    result = mkimage("update", image, "--disk-add-part=3:1M::")
    assert result.rc == 1 and "was built from another description" in result.err
    ok("update", image, f"--disk-add-file={newer}:rootfs.tar.zst", "--disk-rm-prebuilt")
    with open_image(image) as opened:
        assert "DISK_PREBUILT" not in opened.read_text("disk.cfg")
        assert not opened.exists("disk/disk.img.zst")
    assert errors(image) == []
    result = mkimage("update", image, "--disk-rm-prebuilt")
    assert result.err.strip() == ("xenguest-mkimage update: --disk-rm-prebuilt: disk.cfg "
                                  "names no prebuilt disk")


def test_only_one_of_the_two_keys_is_an_error(tmp_path):
    image = str(tmp_path / "g")
    os.mkdir(image)
    ok("create", image, "--disk-size=12M")
    with open(os.path.join(image, "disk.cfg"), "a") as f:
        f.write('DISK_PREBUILT="disk.img.zst"\n')
    assert errors(image) == [("disk.cfg", "DISK_PREBUILT is set but DISK_PREBUILT_FROM is "
                                          "not: a prebuilt disk needs both")]


def test_every_tar_reader_extracts_it_alike(tmp_path):
    image = with_prebuilt(tmp_path)
    packed = read(str(tmp_path / "disk.img.zst"))
    for tool in (["tar"], ["busybox", "tar"]):
        dest = tmp_path / ("x-" + tool[0])
        dest.mkdir()
        subprocess.run(tool + ["-C", str(dest), "-xf", image], check=True)
        assert read(str(dest / "disk" / "disk.img.zst")) == packed
    out = str(tmp_path / "extracted")
    os.mkdir(out)
    ok("extract", image, out)
    assert read(os.path.join(out, "disk", "disk.img.zst")) == packed


def failing_create(tmp_path, image):
    mgr = manager(str(tmp_path / "state"), RecordingToolstack())
    with pytest.raises(XenguestError) as err:
        mgr.create(image, "web")
    assert os.listdir(str(tmp_path / "state" / "guests")) == []
    return str(err.value)


def test_a_prebuilt_disk_with_another_table_is_refused_before_anything_is_written(tmp_path):
    image = guest_image(tmp_path)
    other = guest_image(tmp_path, "other.xenguest", extra=[
        ("--disk-rm-part", "4"), ("--disk-add-part", "3:8M:swap:")])
    packed = render(other, str(tmp_path / "other.img.zst"))
    # Recorded as this image's own: only the table tells them apart.
    forged = str(tmp_path / "forged")
    os.mkdir(forged)
    ok("extract", image, forged)
    ok("update", forged, f"--disk-add-prebuilt={packed}")
    message = failing_create(tmp_path, forged)
    assert message == (
        "guest web: provision the disk: the prebuilt disk other.img.zst: other.img.zst is not "
        "the disk disk.cfg describes: it has a partition 3, which the description does not "
        "(nothing was kept)")


def test_a_prebuilt_disk_of_the_wrong_size_is_refused_when_written(tmp_path):
    image = guest_image(tmp_path)
    rendered = read(render(image, str(tmp_path / "disk.img")))
    for name, data, detail in (
            ("long.img.zst", rendered + bytes(MIB), "long.img.zst is larger than the disk "
                                                    f"({80 * MIB} bytes)"),
            ("short.img.zst", rendered[:-MIB], f"short.img.zst holds {79 * MIB} bytes, the "
                                               f"disk has {80 * MIB}")):
        packed = write(str(tmp_path / name), zstd_stdin(data))
        ok("update", image, f"--disk-add-prebuilt={packed}")
        message = failing_create(tmp_path, image)
        assert message == f"guest web: provision the disk: the prebuilt disk {name}: {detail} " \
                          "(nothing was kept)"


def test_a_target_that_does_not_read_as_zeros_gets_every_byte(tmp_path):
    """An LVM volume holds what was there before: zero blocks are written too."""
    image = guest_image(tmp_path)
    raw = render(image, str(tmp_path / "disk.img"))
    packed = render(image, str(tmp_path / "disk.img.zst"))
    target = write(str(tmp_path / "volume"), b"\xa5" * (80 * MIB))
    disk = DiskConfig(80, "", {1: Partition(1, 24, "ext4", "rootfs.tar.zst"),
                               2: Partition(2, 34, "vfat", "boot.tar.gz"),
                               4: Partition(4, 8, "swap")}, "disk.img.zst", "sha256:" + "0" * 64)

    def opener(name):
        assert name == "disk.img.zst"
        return open(packed, "rb")

    Provisioner(Host(), opener, str(tmp_path), zeroed=False).provision(plan_disk(disk), target)
    assert read(target) == read(raw)


def test_create_with_a_prebuilt_disk_stores_what_render_disk_builds(tmp_path):
    """create with a prebuilt disk (what the BitBake class calls) renders the image's disk
    before the image exists: the stored disk is the one render-disk builds from the
    committed image's partitions, byte for byte."""
    rootfs = make_tar(str(tmp_path / "rootfs.tar.gz"), ROOTFS, "gz")
    image = str(tmp_path / "built.xenguest")
    create(image, [("--disk-size", "40M"), ("--disk-add-file", rootfs),
                   ("--disk-add-part", "1:30M:ext4:rootfs.tar.gz")], prebuilt_disk=True)
    assert errors(image) == []
    assert sorted(os.listdir(str(tmp_path))) == ["built.xenguest", "rootfs.tar.gz"]
    stored = str(tmp_path / "stored.img.zst")
    fd = os.open(stored, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        extract_disk_file(image, "disk.img.zst", fd)
    finally:
        os.close(fd)
    rebuilt = render(image, str(tmp_path / "rebuilt.img"), "--ignore-prebuilt")
    assert subprocess.run(["zstd", "-q", "-d", "-c", stored], stdout=subprocess.PIPE,
                          check=True).stdout == read(rebuilt)

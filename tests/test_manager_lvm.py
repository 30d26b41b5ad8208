"""The lvm disk backend, against stand-ins of the lvm2 commands.

(Interrupted creates, with both backends: test_manager_interrupted.py.)

A test machine has no device mapper, so vgs/lvs/lvcreate/lvremove (the system
boundary) are replaced by a small program whose "logical volumes" are regular
files filled with non-zero bytes, like a reused volume.  Partitioning,
formatting and filling run the real tools on them.
"""

import os
import subprocess

import pytest

from manager_util import (MIB, ROOTFS, RecordingToolstack, install_fake_lvm, make_image,
                          make_tar, manager, tree, write)
from xenguest.errors import XenguestError


@pytest.fixture
def lvm(tmp_path):
    commands = install_fake_lvm(str(tmp_path), ["vg0", "vg-xen-sdb"])
    return str(tmp_path / "lvm"), commands


def calls(root):
    with open(os.path.join(root, "calls.log")) as f:
        return [line.split() for line in f.read().splitlines()]


def lvm_manager(tmp_path, commands, toolstack=None):
    return manager(str(tmp_path / "state"), toolstack or RecordingToolstack(),
                   disk_backend="lvm", volume_group="vg0", commands=commands)


def test_volume_is_created_filled_attached_and_removed(tmp_path, lvm):
    root, commands = lvm
    tar = make_tar(str(tmp_path / "rootfs.tar.bz2"), ROOTFS, "bz2")
    raw = write(str(tmp_path / "fw.img"), b"\x01" + bytes(MIB) + b"\x02")
    image = make_image(str(tmp_path / "db.xenguest"), [
        ("--disk-size", "14M"), ("--disk-add-file", tar), ("--disk-add-file", raw),
        ("--disk-add-part", "1:10M:ext4:rootfs.tar.bz2"), ("--disk-add-part", "2:3M::fw.img")])
    toolstack = RecordingToolstack()
    mgr = lvm_manager(tmp_path, commands, toolstack)
    mgr.create(image)
    volume = os.path.join(root, "vg0", "xenguest-db")
    [status] = mgr.status()
    tag = status.disk["tag"]
    assert tag.startswith("xenguest-") and len(tag) == 41
    assert ["lvcreate", "--yes", "--wipesignatures", "y", "--zero", "y", "--addtag", tag,
            "-L", "14m", "-n", "xenguest-db", "vg0"] in calls(root)
    assert os.path.getsize(volume) == 16 * MIB  # rounded up to whole extents
    assert status.disk == {"backend": "lvm", "vg": "vg0", "lv": "xenguest-db",
                           "path": volume, "size": 14 * MIB, "tag": tag}
    fsck = subprocess.run(["fsck.ext4", "-fn", f"{volume}?offset={MIB}"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert fsck.returncode == 0, fsck.stdout.decode()
    with open(volume, "rb") as f:  # raw content written whole over old data
        f.seek(11 * MIB)
        assert f.read(MIB + 2) == b"\x01" + bytes(MIB) + b"\x02"
        assert f.read(1) == b"\xaa"

    mgr.start("db")
    assert f'target={volume}"]' in toolstack.configs[0]
    mgr.remove("db")
    assert not os.path.exists(volume)
    assert ["lvremove", "-f", "vg0/xenguest-db"] in calls(root)
    assert tree(str(tmp_path / "state" / "guests")) == []


def test_disk_device_selects_its_volume_group(tmp_path, lvm):
    root, commands = lvm
    image = make_image(str(tmp_path / "web.xenguest"), [
        ("--disk-size", "4M"), ("--disk-device", "/dev/sdb"), ("--disk-add-part", "1:2M::")])
    mgr = lvm_manager(tmp_path, commands)
    mgr.create(image)
    assert os.path.isfile(os.path.join(root, "vg-xen-sdb", "xenguest-web"))
    os.unlink(str(tmp_path / "web.xenguest"))
    image = make_image(str(tmp_path / "web.xenguest"), [
        ("--disk-size", "4M"), ("--disk-device", "/dev/sdc"), ("--disk-add-part", "1:2M::")])
    with pytest.raises(XenguestError, match=r"volume group vg-xen-sdc does not exist \(create "
                                            r"it on /dev/sdc with pvcreate and vgcreate\)"):
        mgr.create(image, "other")


def test_existing_volume_is_never_reused_but_replace_works(tmp_path, lvm):
    root, commands = lvm
    write(os.path.join(root, "vg0", "xenguest-web"), b"someone else's data")
    image = make_image(str(tmp_path / "web.xenguest"), [("--disk-size", "4M"),
                                                        ("--disk-add-part", "1:2M::")])
    mgr = lvm_manager(tmp_path, commands)
    with pytest.raises(XenguestError, match="logical volume vg0/xenguest-web exists already"):
        mgr.create(image)
    os.unlink(os.path.join(root, "vg0", "xenguest-web"))
    mgr.create(image)
    mgr.create(image, replace=True)
    assert [c[0] for c in calls(root)].count("lvremove") == 1
    assert os.path.isfile(os.path.join(root, "vg0", "xenguest-web"))


def test_failure_frees_the_volume(tmp_path, lvm):
    root, commands = lvm
    write(str(tmp_path / "rootfs.tar.gz"), b"\x1f\x8b broken")
    image = make_image(str(tmp_path / "web.xenguest"), [
        ("--disk-size", "8M"), ("--disk-add-file", str(tmp_path / "rootfs.tar.gz")),
        ("--disk-add-part", "1:6M:ext4:rootfs.tar.gz")])
    with pytest.raises(XenguestError, match=r"rootfs.tar.gz is corrupt .*\(nothing was kept\)"):
        lvm_manager(tmp_path, commands).create(image)
    assert os.listdir(os.path.join(root, "vg0")) == []
    assert ["lvremove", "-f", "vg0/xenguest-web"] in calls(root)


def test_a_volume_without_its_tag_is_left_alone(tmp_path, lvm):
    """remove frees only the volume it made: one replaced behind its back stays."""
    root, commands = lvm
    image = make_image(str(tmp_path / "web.xenguest"), [("--disk-size", "4M"),
                                                        ("--disk-add-part", "1:2M::")])
    mgr = lvm_manager(tmp_path, commands)
    mgr.create(image)
    volume = os.path.join(root, "vg0", "xenguest-web")
    os.unlink(os.path.join(root, ".tags", "vg0", "xenguest-web"))
    write(volume, b"another volume of that name")
    mgr.remove("web")
    assert open(volume, "rb").read() == b"another volume of that name"
    assert mgr.status() == []

"""render-disk: the guest disk written with the real tools, read back with the real tools.

``xenguest-mkimage render-disk`` builds the disk an image describes into a sparse raw file
with sfdisk, mke2fs, debugfs, mkfs.vfat, mtools and mkswap — the code xenguest-manager
provisions guests with — and the same image gives the same bytes: in another folder, at
another time, in another time zone; the manager's disk is those bytes too.
"""

import json
import os
import subprocess
import tarfile
import time

from manager_util import (
    MIB,
    ROOTFS,
    RecordingToolstack,
    make_image,
    make_tar,
    manager,
    tar_entry,
    write,
)
from mkimage_util import mkimage, ok, run_process
from test_manager_provision import ext_cat, ext_spec, ext_stat, fsck_clean, partitions, run
from xenguest.disk.identity import DiskIdentity
from xenguest.operations import open_image
from xenguest.operations.diskdesc import image_description
from xenguest.operations.editor import GuestEditor

EPOCH = "1700000000"


def guest_image(tmp_path, name="guest.xenguest", extra=()):
    """An image whose disk has an ext4 root (zstd tarball), a vfat boot partition and swap."""
    rootfs = make_tar(str(tmp_path / "rootfs.tar.zst"), ROOTFS, "zst")
    boot = make_tar(str(tmp_path / "boot.tar.gz"), [
        tar_entry("./EFI", kind=tarfile.DIRTYPE),
        tar_entry("./EFI/BOOT/bootaa64.efi", b"MZ" + bytes(5000)),
        tar_entry("./Long File Name.txt", b"long\n"),
    ], "gz")
    return make_image(str(tmp_path / name), [
        ("--disk-size", "80M"), ("--disk-add-file", rootfs), ("--disk-add-file", boot),
        ("--disk-add-part", "1:24M:ext4:rootfs.tar.zst"),
        ("--disk-add-part", "2:34M:vfat:boot.tar.gz"), ("--disk-add-part", "4:8M:swap:"),
        *extra])


def render(image, output, *options, env=None):
    ok("render-disk", image, output, *options, env=env)
    return output


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_the_disk_reads_back_with_the_real_tools(tmp_path):
    disk = render(guest_image(tmp_path), str(tmp_path / "disk.img"))
    assert os.path.getsize(disk) == 80 * MIB
    assert os.stat(disk).st_blocks * 512 < 8 * MIB  # sparse: metadata and content only
    parts = partitions(disk)
    assert [(n, parts[n]["start"], parts[n]["size"], parts[n]["type"]) for n in sorted(parts)] == [
        (1, 2048, 24 * 2048, "83"), (2, 25 * 2048, 34 * 2048, "c"), (4, 59 * 2048, 8 * 2048, "82")]
    spec = ext_spec(disk, 1)
    fsck_clean(spec)
    assert ext_cat(spec, "/etc/hostname") == b"guest\n"
    shadow = ext_stat(spec, "/etc/shadow")
    assert (shadow["mode"], shadow["gid"], shadow["mtime"]) == (0o640, 42, 1600000000)
    assert ext_stat(spec, "/bin/sh")["target"] == "busybox"
    vfat = f"{disk}@@{25 * MIB}"
    assert run("mtype", "-i", vfat, "::/Long File Name.txt") == "long\n"
    assert "bootaa64 efi" in run("mdir", "-/", "-i", vfat, "::/")
    part = str(tmp_path / "boot.vfat")
    with open(disk, "rb") as src, open(part, "wb") as dst:
        src.seek(25 * MIB)
        dst.write(src.read(34 * MIB))
    assert subprocess.run(["fsck.vfat", "-n", part], stdout=subprocess.DEVNULL).returncode == 0
    assert probe(disk, 59 * MIB, "TYPE") == "swap"


def probe(disk, offset, field):
    """A field blkid reads from the filesystem at *offset* of *disk*."""
    return run("blkid", "-p", "-s", field, "-o", "value", "-O", str(offset), disk).strip()


def identifiers(disk):
    """What the tools would otherwise pick at random: disk ID, ext4 UUID and hash seed,
    FAT volume ID, swap UUID."""
    table = json.loads(run("sfdisk", "--json", disk))["partitiontable"]
    ext = run("dumpe2fs", "-h", ext_spec(disk, 1))
    fields = {k.strip(): v.strip() for k, _, v in
              (line.partition(":") for line in ext.splitlines()) if v}
    vfat = run("mdir", "-i", f"{disk}@@{25 * MIB}", "::/")
    swap = probe(disk, 59 * MIB, "UUID")
    return {"disk": table["id"], "uuid": fields["Filesystem UUID"],
            "hash_seed": fields["Directory Hash Seed"],
            "created": fields["Filesystem created"],
            "volume": vfat.split("Volume Serial Number is ")[1].split()[0], "swap": swap}


def test_same_image_same_bytes_elsewhere_later_and_in_another_time_zone(tmp_path):
    image = guest_image(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = render(image, str(tmp_path / "a" / "disk.img"), env={"SOURCE_DATE_EPOCH": EPOCH})
    time.sleep(1.1)  # another wall-clock second for every tool
    other = run_process("render-disk", image, str(tmp_path / "b" / "disk.img"),
                        env={"SOURCE_DATE_EPOCH": EPOCH, "TZ": "America/New_York"})
    assert other.rc == 0 and other.err == "", other
    assert read(first) == read(str(tmp_path / "b" / "disk.img"))
    # The identifiers are derived from the description and content, the time is the epoch.
    with open_image(image) as opened:
        identity = DiskIdentity.derive(image_description(opened, GuestEditor(opened).disk),
                                       int(EPOCH))
    found = identifiers(first)
    assert found["disk"] == identity.disk_id()
    assert found["uuid"] == identity.uuid("uuid", 1)
    assert found["hash_seed"] == identity.uuid("hash_seed", 1)
    assert found["swap"] == identity.uuid("uuid", 4)
    assert found["volume"].replace("-", "").lower() == identity.volume_id(2)
    assert found["created"] == "Tue Nov 14 22:13:20 2023"
    # Another time is another disk; without SOURCE_DATE_EPOCH it is 1980-01-01.
    later = render(image, str(tmp_path / "later.img"), env={"SOURCE_DATE_EPOCH": "1700000001"})
    assert read(later) != read(first) and identifiers(later)["uuid"] != found["uuid"]
    default = render(image, str(tmp_path / "default.img"))
    assert identifiers(default)["created"] == "Tue Jan  1 00:00:00 1980"


def test_other_content_gets_other_identifiers(tmp_path):
    one = render(guest_image(tmp_path), str(tmp_path / "one.img"))
    motd = make_tar(str(tmp_path / "motd.tar.zst"), ROOTFS + [tar_entry("./etc/motd", b"hi\n")],
                    "zst")
    other_image = guest_image(tmp_path, "other.xenguest",
                              extra=[("--disk-add-file", f"{motd}:rootfs.tar.zst")])
    other = render(other_image, str(tmp_path / "other.img"))
    assert identifiers(one)["uuid"] != identifiers(other)["uuid"]
    assert ext_cat(ext_spec(other, 1), "/etc/motd") == b"hi\n"


def test_the_manager_writes_the_same_bytes(tmp_path):
    image = guest_image(tmp_path)
    rendered = render(image, str(tmp_path / "disk.img"))
    mgr = manager(str(tmp_path / "state"), RecordingToolstack())
    mgr.create(image, "web")
    provisioned = str(tmp_path / "state" / "guests" / "web" / "disk.img")
    assert read(provisioned) == read(rendered)


def test_a_zst_output_is_compressed_with_its_size_recorded(tmp_path):
    image = guest_image(tmp_path)
    raw = render(image, str(tmp_path / "disk.img"))
    packed = render(image, str(tmp_path / "disk.img.zst"))
    listing = run("zstd", "-l", "-v", packed)
    assert f"Decompressed Size: 80.0 MiB ({80 * MIB} B)" in listing
    assert subprocess.run(["zstd", "-q", "-d", "-c", packed], stdout=subprocess.PIPE,
                          check=True).stdout == read(raw)
    assert sorted(os.listdir(str(tmp_path))) == [
        "boot.tar.gz", "disk.img", "disk.img.zst", "guest.xenguest", "rootfs.tar.zst"]


def failing_render(*args):
    result = mkimage("render-disk", *args)
    assert result.rc == 1 and result.out == "", result
    assert result.err.count("\n") == 1, result.err
    return result.err.strip()


def test_errors_are_one_line_and_leave_the_output_as_it_was(tmp_path):
    no_disk = make_image(str(tmp_path / "nodisk.xenguest"))
    old = write(str(tmp_path / "disk.img"), b"old")
    assert failing_render(no_disk, old) == (
        f"xenguest-mkimage render-disk: {no_disk}: the image describes no disk (DISK_SIZE is 0)")
    image = guest_image(tmp_path)
    assert failing_render(image, str(tmp_path)).endswith("exists and is not a regular file")
    assert failing_render(image, str(tmp_path / "no" / "disk.img")).endswith(
        f"folder {tmp_path / 'no'} does not exist")
    result = mkimage("render-disk", image, old, env={"PATH": str(tmp_path / "empty")})
    assert result.rc == 1 and "missing command(s): debugfs (e2fsprogs (debugfs))" in result.err
    broken = make_image(str(tmp_path / "broken.xenguest"), [
        ("--disk-size", "40M"), ("--disk-add-file", write(str(tmp_path / "rootfs.tar.gz"),
                                                          b"not gzip")),
        ("--disk-add-part", "1:30M:ext4:rootfs.tar.gz")])
    assert "rootfs.tar.gz is corrupt or truncated" in failing_render(broken, old)
    assert read(old) == b"old"
    assert sorted(os.listdir(str(tmp_path))) == [
        "boot.tar.gz", "broken.xenguest", "disk.img", "guest.xenguest", "nodisk.xenguest",
        "rootfs.tar.gz", "rootfs.tar.zst"]

"""import: a xenguest image made of an existing xl configuration and the files it names.

The guests come from elsewhere: a meta-virtualization-style guest (an ext4 file made by the
real mke2fs -d as the whole disk, root=/dev/xvda) and a whole disk with a partition table
(written by render-disk).  The imported image is valid, its configuration what was written,
and xenguest-manager writes the very disk the guest had.
"""

import os
import subprocess

import pytest
from manager_util import MIB, RecordingToolstack, manager, write
from mkimage_util import mkimage, ok
from test_manager_provision import ext_cat, fsck_clean
from test_render_disk import guest_image, read, render
from xenguest.operations import check, open_image
from xenguest.operations.editor import GuestEditor
from xenguest.operations.importer import parse_disk_spec
from xenguest.problems import ERROR
from xenguest.xl import config as xlcfg


def ext4_file(tmp_path, size="20M"):
    """A guest root filesystem as meta-virtualization ships one: an ext4 file."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("vendor\n")
    path = str(tmp_path / "vendor.ext4")
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(root), path, size],
                   check=True, env=dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000"))
    return path


def vendor_config(tmp_path, disk_line):
    write(str(tmp_path / "Image"), b"vendor kernel")
    write(str(tmp_path / "initrd"), b"vendor initrd")
    return write(str(tmp_path / "vendor.cfg"), (
        "# A guest from a vendor\n"
        'name = "vendor"\n'
        "memory = 256\n"
        "vcpus = 2\n"
        f"disk = [{disk_line}]\n"
        "vif = ['bridge=xenbr0']\n"
        'kernel = "Image"\n'
        f'ramdisk = "{tmp_path / "initrd"}"\n'
        'extra = "root=/dev/xvda ro console=hvc0"\n').encode())


def test_a_meta_virtualization_guest(tmp_path):
    fs = ext4_file(tmp_path, "20000k")  # not a whole MiB: padded
    config = vendor_config(tmp_path, f"'file:{fs},xvda,rw'")
    image = str(tmp_path / "vendor.xenguest")
    result = ok("import", config, image, "--set-param=GUEST_AUTOBOOT=0")
    assert result.out == ""
    assert [p for p in check(image) if p.severity == ERROR] == []
    with open_image(image) as opened:
        editor = GuestEditor(opened)
        text = opened.read_text("guest.cfg")
        assert text.startswith("# A guest from a vendor\nname = \"vendor\"\nmemory = 256\n")
        assert "disk" not in xlcfg.merge(editor.xl_documents())
        merged = editor.xl_merged()
        assert (merged["kernel"], merged["ramdisk"]) == ("files/kernel", "files/ramdisk.img")
        assert merged["extra"] == "root=/dev/xvda ro console=hvc0"
        assert merged["vif"] == ["bridge=xenbr0"]
        assert opened.read_bytes("files/kernel") == b"vendor kernel"
        assert editor.params.get("GUEST_AUTOBOOT") == "0"
        disk = editor.disk
        assert (disk.size_mib, disk.partitions, disk.prebuilt) == (20, {}, "disk.img.zst")
    mgr = manager(str(tmp_path / "state"), RecordingToolstack())
    mgr.create(image, "vendor")
    written = str(tmp_path / "state" / "guests" / "vendor" / "disk.img")
    original = read(fs)
    assert read(written) == original + bytes(20 * MIB - len(original))
    fsck_clean(written)
    assert ext_cat(written, "/etc/hostname") == b"vendor\n"


def test_a_whole_disk_with_a_partition_table(tmp_path):
    source = render(guest_image(tmp_path), str(tmp_path / "whole.img"))
    config = write(str(tmp_path / "g.cfg"),
                   f"name = 'g'\ndisk = ['format=raw, vdev=xvdb, access=rw, target={source}']\n"
                   .encode())
    image = str(tmp_path / "g.xenguest")
    assert ok("import", config, image).out == (
        f"{image}: the disk was xvdb; the host attaches it as xvda\n")
    with open_image(image) as opened:
        disk = GuestEditor(opened).disk
        assert [(p.number, p.size_mib, p.fs, p.content) for p in disk.partitions.values()] == [
            (1, 24, "ext4", ""), (2, 34, "vfat", ""), (4, 8, "swap", "")]
        assert disk.size_mib == 80
    rendered = render(image, str(tmp_path / "again.img"))
    assert read(rendered) == read(source)


def test_a_table_disk_cfg_cannot_describe_is_stored_undescribed(tmp_path):
    source = write(str(tmp_path / "odd.img"), bytes(8 * MIB))
    subprocess.run(["sfdisk", "-q", source], input=b"start=4096, size=4096, type=83\n",
                   check=True)
    config = write(str(tmp_path / "odd.cfg"), f"disk = ['{source},raw,xvda,rw']\n".encode())
    image = str(tmp_path / "odd.xenguest")
    out = ok("import", config, image).out
    assert "its partition table is not one disk.cfg can describe" in out
    with open_image(image) as opened:
        disk = GuestEditor(opened).disk
        assert (disk.size_mib, disk.partitions) == (8, {})
    assert read(render(image, str(tmp_path / "out.img"))) == read(source)


@pytest.mark.parametrize("spec, target, access", [
    ("format=raw, vdev=xvda, access=rw, target=/a,b.img", "/a,b.img", "rw"),
    ("file:/a.img,xvda,w", "/a.img", "w"),
    ("/a.img,raw,xvda,rw", "/a.img", "rw"),
    ("tap:aio:/a.img,xvda,w", "/a.img", "w"),
])
def test_disk_specifications_in_every_form(spec, target, access):
    assert parse_disk_spec(spec) == {"target": target, "format": "raw", "vdev": "xvda",
                                     "access": access}


@pytest.mark.parametrize("disk, message", [
    ("'/x.img,raw,xvda,rw', '/y.img,raw,xvdb,rw'",
     "disk: 2 disks, but a xenguest image holds one"),
    ("'phy:/dev/vg/guest,xvda,w'", "a host device: copy it into a file first"),
    ("'format=qcow2, vdev=xvda, target=/x.qcow2'", "format qcow2: convert it to a raw image "
                                                   "first (qemu-img convert -O raw)"),
    ("'/x.iso,raw,hdc,r,devtype=cdrom'", "a CD-ROM cannot be the guest's disk"),
    ("'missing.img,raw,xvda,rw'", "disk: 'missing.img' is not a file (relative to"),
])
def test_what_cannot_be_imported_is_one_clear_line(tmp_path, disk, message):
    config = write(str(tmp_path / "bad.cfg"), f"name = 'b'\ndisk = [{disk}]\n".encode())
    image = str(tmp_path / "bad.xenguest")
    result = mkimage("import", config, image)
    assert result.rc == 1 and result.err.count("\n") == 1, result
    assert message in result.err
    assert not os.path.exists(image)
    assert sorted(os.listdir(str(tmp_path))) == ["bad.cfg"]


def test_a_missing_kernel_is_named(tmp_path):
    config = write(str(tmp_path / "k.cfg"), b"kernel = 'nowhere/Image'\n")
    result = mkimage("import", config, str(tmp_path / "k.xenguest"))
    assert result.err.strip().endswith("kernel: 'nowhere/Image' is not a file (relative to "
                                       f"{tmp_path})")


def test_an_image_without_disk_imports_its_configuration_only(tmp_path):
    config = write(str(tmp_path / "nodisk.cfg"), b"name = 'n'\nmemory = 64\ntype = 'pvh'\n"
                                                b"kernel = '/dev/null'\n")
    image = str(tmp_path / "n.xenguest")
    result = mkimage("import", config, image)
    assert result.rc == 1 and "kernel: '/dev/null' is not a file" in result.err
    write(str(tmp_path / "Image"), b"k")
    config = write(str(tmp_path / "nodisk.cfg"), b"name = 'n'\nmemory = 64\nkernel = 'Image'\n")
    ok("import", config, image)
    with open_image(image) as opened:
        assert GuestEditor(opened).disk.size_mib == 0
        assert opened.read_text("guest.cfg") == \
            "name = 'n'\nmemory = 64\nkernel = \"files/kernel\"\n"

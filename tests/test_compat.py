"""Compatibility with the earlier tool's images, and with standard tar tools.

The fixtures are laid out from the facts in shared/notes/ancestor.md: keys in
guest.d/<key>.cfg, DISK_SIZE="4000M" with a partition of "4", disk content in
disk/ (or disk-files/ in directory images), members in readdir order with the
build host's owners and time stamps, no format member.
"""

import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from mkimage_util import fails, ok, real_xl_confirms, sha256, tar_member, tar_names, tree, write

ANCESTOR_GUEST_CFG = """\
memory = 1024
vcpus = 1
extra = "earlyprintk=xenboot console=hvc0 rw"
#name = "guest"
#root = "/dev/xvda1"
#disk = ['phy:/dev/vg/guest,xvda,w']
"""


def _rootfs_tgz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("etc/motd")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"hi\n"))
    return buf.getvalue()


def ancestor_tree(root: str, disk_folder: str = "disk") -> str:
    """A directory laid out like the earlier tool's images."""
    os.makedirs(root)
    write(os.path.join(root, "params.cfg"),
          '# Xenguest image parameters\nGUEST_AUTOBOOT="1"\nXENGUEST_NETWORK_TYPE="bridge"\n')
    write(os.path.join(root, "guest.cfg"), ANCESTOR_GUEST_CFG)
    write(os.path.join(root, "guest.d", "kernel.cfg"), 'kernel = "files/kernel"\n')
    write(os.path.join(root, "guest.d", "device_tree.cfg"), 'device_tree = "files/guest.dtb"\n')
    write(os.path.join(root, "disk.cfg"),
          'DISK_SIZE="4000M"\nDISK_DEVICE=""\nDISK_PART1="4:ext4:rootfs.tar.gz"\n')
    write(os.path.join(root, "files", "kernel"), b"OLDKERNEL")
    write(os.path.join(root, "files", "guest.dtb"), b"OLDDTB")
    write(os.path.join(root, disk_folder, "rootfs.tar.gz"), _rootfs_tgz())
    write(os.path.join(root, "init.d", "10-net"), "#!/bin/sh\necho net\n", 0o775)
    for folder in ("init.pre", "init.post"):
        os.makedirs(os.path.join(root, folder))
    return root


@pytest.fixture
def ancestor_image(tmp_path):
    """A file image as the earlier tool made it: GNU tar of the tree, host owners."""
    root = ancestor_tree(str(tmp_path / "tree"))
    image = str(tmp_path / "old.xenguest")
    subprocess.run(["tar", "--owner=1000", "--group=1000", "-C", root, "-cf", image, "."],
                   check=True)
    return image


def xl(image):
    """The merged xl configuration; the real xl parser must agree with it."""
    config = json.loads(ok("dump-xenconfig", image, "--json").out)["config"]
    real_xl_confirms(image, config)
    return config


def test_ancestor_image_reads_checks_and_dumps(ancestor_image):
    assert "./guest.d/kernel.cfg" in tar_names(ancestor_image)
    result = ok("check", ancestor_image)
    assert "valid" in result.out
    config = xl(ancestor_image)
    assert config["kernel"] == "files/kernel"
    assert config["device_tree"] == "files/guest.dtb"
    disk = json.loads(ok("dump-diskconfig", ancestor_image, "--json").out)
    assert disk["size_mib"] == 4000 and disk["partitions"][0]["size_mib"] == 4000
    assert ok("dump-diskconfig", ancestor_image).out == \
        'DISK_SIZE="4000M"\nDISK_DEVICE=""\nDISK_PART1="4:ext4:rootfs.tar.gz"\n'
    text = ok("dump-xenconfig", ancestor_image).out
    assert text.startswith(ANCESTOR_GUEST_CFG) and 'kernel = "files/kernel"' in text
    info = json.loads(ok("info", ancestor_image, "--json").out)
    assert info["format_version"] == 1 and info["kernel"]["size"] == 9
    assert json.loads(ok("dump-paramsconfig", ancestor_image, "--json").out) == \
        {"GUEST_AUTOBOOT": "1", "XENGUEST_NETWORK_TYPE": "bridge"}


def test_ancestor_image_update_moves_key_out_of_guest_d(tmp_path, ancestor_image):
    kernel = write(str(tmp_path / "Image"), b"NEWKERNEL")
    ok("update", ancestor_image, f"--xen-kernel={kernel}", "--xen-memory=256")
    config = xl(ancestor_image)
    assert config["kernel"] == "files/kernel" and config["memory"] == 256
    assert tar_member(ancestor_image, "./files/kernel") == b"NEWKERNEL"
    guest_cfg = tar_member(ancestor_image, "./guest.cfg").decode()
    assert 'kernel = "files/kernel"' in guest_cfg
    # guest.d/kernel.cfg only held the key: it is gone, the dtb fragment stays
    packed = str(tmp_path / "packed.xenguest")
    ok("pack", ancestor_image, packed)
    names = tar_names(packed)
    assert "./guest.d/kernel.cfg" not in names and "./guest.d/device_tree.cfg" in names
    ok("check", packed)


def test_ancestor_image_extracts(tmp_path, ancestor_image):
    dest = tmp_path / "out"
    dest.mkdir()
    ok("extract", ancestor_image, str(dest))
    assert tree(str(dest)) == tree(str(tmp_path / "tree"))
    config = tmp_path / "config"
    config.mkdir()
    ok("extract-config", ancestor_image, str(config))
    assert not (config / "disk" / "rootfs.tar.gz").exists()
    assert (config / "guest.d" / "kernel.cfg").exists()


def test_legacy_disk_files_folder(tmp_path):
    root = ancestor_tree(str(tmp_path / "img"), disk_folder="disk-files")
    ok("check", root)
    disk = json.loads(ok("dump-diskconfig", root, "--json").out)
    assert [f["name"] for f in disk["files"]] == ["rootfs.tar.gz"]
    packed = str(tmp_path / "packed.xenguest")
    ok("pack", root, packed)
    assert "./disk/rootfs.tar.gz" in tar_names(packed)
    assert not [n for n in tar_names(packed) if n.startswith("./disk-files")]
    out = subprocess.run(
        ["python3", os.path.join(os.path.dirname(__file__), "..", "meta-xenguest", "scripts",
                                 "xenguest-mkimage"), "extract-disk-file", root, "rootfs.tar.gz"],
        stdout=subprocess.PIPE, check=True).stdout
    with open(os.path.join(root, "disk-files", "rootfs.tar.gz"), "rb") as f:
        assert out == f.read()


def test_consumers_commands_on_our_images(tmp_path):
    """What consumers of the earlier format ran keeps working on our images."""
    kernel = write(str(tmp_path / "k"), b"K")
    rootfs = write(str(tmp_path / "rootfs.tar.gz"), _rootfs_tgz())
    image = str(tmp_path / "new.xenguest")
    ok("create", image, f"--xen-kernel={kernel}", "--disk-size=1",
       "--disk-add-part=1:1:ext4:rootfs.tar.gz", f"--disk-add-file={rootfs}")
    assert b"memory = 1024" in tar_member(image, "./guest.cfg")
    dest = tmp_path / "cfg"
    dest.mkdir()
    subprocess.run(["tar", "-C", str(dest), "--exclude=./disk", "-xf", image], check=True)
    assert (dest / "guest.cfg").exists() and not (dest / "disk").exists()


@pytest.mark.parametrize("tool", [["tar", "-xf"], ["busybox", "tar", "-xf"]])
def test_standard_tars_extract_our_images_like_we_do(tmp_path, tool):
    if shutil.which(tool[0]) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool[0]} is missing: run tools/setup-test-env")
        pytest.skip(f"{tool[0]} is missing: run tools/setup-test-env")
    kernel = write(str(tmp_path / "k"), os.urandom(100000))
    script = write(str(tmp_path / "10-x"), "#!/bin/sh\n")
    image = str(tmp_path / "g.xenguest")
    ok("create", image, f"--xen-kernel={kernel}", f"--init-script={script}",
       f"--xen-add-file={kernel}:deep/er/blob-with-a-rather-long-name-" + "x" * 90)
    ok("update", image, "--xen-memory=64", f"--xen-add-file={script}:late")  # appended
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    ok("extract", image, str(ours))
    subprocess.run(tool + [image], cwd=str(theirs), check=True)
    assert tree(str(theirs)) == tree(str(ours))
    assert b"memory = 64" in (theirs / "guest.cfg").read_bytes()
    assert os.stat(theirs / "init.d" / "10-x").st_mode & 0o777 == 0o755


def test_hostile_archives_are_refused(tmp_path):
    """Traversal, links and devices in a file image: refused, nothing written."""
    def hostile(name, **kw):
        path = str(tmp_path / f"{name}.xenguest")
        with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
            for member in ("params.cfg", "guest.cfg", "disk.cfg"):
                info = tarfile.TarInfo("./" + member)
                tf.addfile(info, io.BytesIO(b""))
            info = tarfile.TarInfo(kw.pop("member"))
            for k, v in kw.items():
                setattr(info, k, v)
            tf.addfile(info, io.BytesIO(b"") if info.isfile() else None)
        return path

    cases = {
        "dotdot": dict(member="./files/../../evil"),
        "absolute": dict(member="/etc/evil"),
        "symlink": dict(member="./files/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
        "hardlink": dict(member="./files/hard", type=tarfile.LNKTYPE, linkname="./guest.cfg"),
        "device": dict(member="./files/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
    }
    for name, kw in cases.items():
        image = hostile(name, **kw)
        dest = tmp_path / f"out-{name}"
        dest.mkdir()
        line = fails("extract", image, str(dest))
        assert image in line or "unsafe" in line or "refus" in line, line
        assert os.listdir(dest) == []
        before = sha256(image)
        fails("update", image, "--xen-memory=1")
        assert sha256(image) == before


def test_identity_and_kept_partitions_stay_readable_by_earlier_consumers(tmp_path):
    """The image identity and the kept-partition flag live where earlier readers do
    not stumble on them: params.cfg entries, and a disk.cfg variable of its own (the
    earlier manager read DISK_PART<N> as exactly three fields, SIZE:FS:CONTENT, and
    this project's earlier versions refuse a fourth).  Both files still source in
    a shell as the earlier manager did."""
    image = str(tmp_path / "id.xenguest")
    ok("create", image, "--guest-compatible=acme/gateway", "--guest-version=2.1~rc1",
       "--disk-size=20M", "--disk-add-part=1:10M:ext4:", "--disk-add-part=2:8M:ext4::keep")
    dest = tmp_path / "cfg"
    dest.mkdir()
    subprocess.run(["tar", "-C", str(dest), "--exclude=./disk", "-xf", image], check=True)
    shown = subprocess.run(
        ["bash", "-euc", 'source ./params.cfg; source ./disk.cfg; '
         'printf "%s\\n" "$GUEST_COMPATIBLE" "$GUEST_VERSION" "$DISK_PART1" "$DISK_PART2" '
         '"$DISK_KEEP"'], cwd=str(dest), stdout=subprocess.PIPE, universal_newlines=True,
        check=True).stdout.splitlines()
    assert shown == ["acme/gateway", "2.1~rc1", "10M:ext4:", "8M:ext4:", "2"]
    assert all(part.count(":") == 2 for part in shown[2:4])

"""Member layouts through the real command: every member visible to list, check and
verify; no path both a file and a folder; the format's and the host's names reserved."""

import os
import subprocess

import pytest
from mkimage_util import fails, mkimage, ok, sha256, write
from signing_util import sign_args
from xenguest.format.append import append_members
from xenguest.format.archive import TarIndex


def append(image: str, members: dict) -> None:
    """Append files {logical name: bytes} to file image *image*, as a hand-made
    archive would hold them (the manifest is not touched)."""
    with TarIndex.open(image) as index:
        def write_members(writer):
            for name, data in members.items():
                writer.add_bytes(name, data)
        append_members(image, index, write_members)


def error_of(*args: str) -> str:
    """The one-line error of a failing xenguest-mkimage, without its prefix."""
    return fails(*args).split(": ", 1)[1]


@pytest.fixture
def image(tmp_path):
    rootfs = write(str(tmp_path / "rootfs.tar"), b"the signed content")
    path = str(tmp_path / "guest.xenguest")
    ok("create", path, f"--disk-add-file={rootfs}", "--disk-size=1",
       "--disk-add-part=1:100M:ext4:rootfs.tar")
    return path


# -- the earlier tool's disk-files/ -------------------------------------------------

def test_a_legacy_member_beside_its_new_name_is_refused(image, pki, tmp_path):
    ok("sign", image, *sign_args(pki))
    append(image, {"disk-files/rootfs.tar": b"unsigned content"})
    # Other tar readers extract both; ours used to show (and verify) one only.
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", "-C", str(out), "-xf", image], check=True)
    assert (out / "disk-files" / "rootfs.tar").read_bytes() == b"unsigned content"
    message = (f"{image}: it holds both disk/rootfs.tar and disk-files/rootfs.tar (the "
               "earlier tool's name of disk/): which one is the content is ambiguous")
    for args in (["list", image], ["check", image], ["check", "--verify", image],
                 ["verify", image, "--keyring", pki.cert("root")]):
        assert error_of(*args) == message, args


def test_legacy_members_alone_are_listed_and_verified(image, pki):
    append(image, {"disk-files/extra.img": b"not in the manifest"})
    assert "disk/extra.img" in ok("list", image).out
    result = mkimage("check", "--verify", image)
    assert result.rc == 1
    assert "error: disk/extra.img: extra: not listed in the manifest" in result.out


def test_disk_and_disk_files_folders_extract_as_one(image, tmp_path):
    with TarIndex.open(image) as index:
        append_members(image, index, lambda w: w.add_dir("disk-files"))
    ok("check", image)
    out = tmp_path / "out"
    out.mkdir()
    ok("extract", image, str(out))
    assert sorted(os.listdir(str(out / "disk"))) == ["rootfs.tar"]


def test_legacy_collision_in_a_directory_image(tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    ok("create", str(folder))
    write(str(folder / "disk" / "a.img"), b"a")
    write(str(folder / "disk-files" / "a.img"), b"b")
    assert "holds both disk/a.img and disk-files/a.img" in error_of("check", str(folder))


@pytest.mark.parametrize("name, problem", [
    (b"files/a\nb", "its name holds the control character '\\n'"),
    (b"files/gu\xffst", "its name is not UTF-8")])
def test_directory_images_follow_the_member_name_rules(tmp_path, name, problem):
    folder = tmp_path / "dir"
    folder.mkdir()
    ok("create", str(folder))
    with open(os.path.join(os.fsencode(str(folder)), name), "wb") as f:
        f.write(b"x")
    for args in (["check", str(folder)], ["list", str(folder)],
                 ["pack", str(folder), str(tmp_path / "packed")]):
        assert problem in error_of(*args), args
    assert not os.path.exists(str(tmp_path / "packed"))


def test_check_sees_unknown_folders_too(tmp_path):
    image = str(tmp_path / "guest.xenguest")
    ok("create", image)
    with TarIndex.open(image) as index:
        append_members(image, index, lambda w: w.add_dir("evil"))
    assert "warning: evil: not part of the xenguest image format" in ok("check", image).out


# -- a path is a file or a folder, never both ------------------------------------------

def test_update_refuses_a_file_where_a_folder_is(tmp_path):
    image = str(tmp_path / "guest.xenguest")
    ok("create", image, "--xen-add-file=/etc/hostname:sub/x")
    before = sha256(image)
    assert error_of("update", image, "--xen-add-file=/etc/hostname:sub") == (
        f"--xen-add-file=/etc/hostname:sub: {image}: files/sub is a folder in the image: "
        "it cannot also be a file")
    assert error_of("update", image, "--xen-add-file=/etc/hostname:sub/x/y") == (
        f"--xen-add-file=/etc/hostname:sub/x/y: {image}: files/sub/x is a file in the "
        "image: it cannot also be a folder")
    assert sha256(image) == before
    # Removing the file first frees its name for a folder (and the other way round).
    ok("update", image, "--xen-rm-file=sub/x", "--xen-add-file=/etc/hostname:sub/x/y")
    assert "files/sub/x/y" in ok("list", image).out
    ok("check", image)


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_check_catches_a_file_that_is_also_a_folder(tmp_path, kind):
    if kind == "file":
        path = str(tmp_path / "guest.xenguest")
        ok("create", path)
        append(path, {"disk-files/x": b"a file", "disk/x/y": b"below a file"})
    else:
        path = str(tmp_path / "dir")
        os.mkdir(path)
        ok("create", path)
        write(os.path.join(path, "disk-files", "x"), b"a file")
        write(os.path.join(path, "disk", "x", "y"), b"below a file")
    message = f"{path}: disk/x is both a file and a folder"
    out = tmp_path / "out"
    out.mkdir()
    for args in (["check", path], ["extract", path, str(out)], ["pack", path, str(out / "p")]):
        assert error_of(*args) == message, args
    assert os.listdir(str(out)) == []


# -- names the format and the host reserve, whatever their type ------------------------

@pytest.mark.parametrize("name, kind, message", [
    ("xl.cfg", "folder", "reserved: xenguest-manager writes it in the guest's folder"),
    ("xenguest-manager.json", "file", "reserved: xenguest-manager writes it in the guest's "
                                      "folder"),
    ("disk.img", "folder", "reserved: xenguest-manager writes it in the guest's folder"),
    ("xenguest.format", "folder", "a folder: the image format needs a file of this name"),
    ("init.d", "file", "a file: the image format needs a folder of this name"),
    ("signatures", "file", "a file: the image format needs a folder of this name"),
])
def test_reserved_names_whatever_their_type(tmp_path, name, kind, message):
    folder = tmp_path / "dir"
    folder.mkdir()
    ok("create", str(folder))
    target = folder / name
    if target.is_dir():
        target.rmdir()
    if kind == "folder":
        os.remove(str(target)) if target.exists() else None
        write(str(target / "inside"), b"x")
    else:
        write(str(target), b"x")
    result = mkimage("check", str(folder))
    assert result.rc == 1 and f"error: {name}: {message}" in result.out
    image = str(tmp_path / "guest.xenguest")
    assert error_of("pack", str(folder), image) == f"{name}: {message}"
    assert not os.path.exists(image)

"""The digest manifest: written while the members are copied, kept right by every
change, read back by check --verify (and by a shell)."""

import hashlib
import json
import os
import subprocess
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mkimage_util import mkimage
from signing_util import flip_byte, manifest_lines
from xenguest.errors import ImageError
from xenguest.format import manifest, manifest_check
from xenguest.format.archive import TarIndex
from xenguest.format.image import Image


def ok(*args: str) -> str:
    result = mkimage(*args)
    assert result.rc == 0, result.err
    return result.out


def members(path: str) -> dict:
    """Last occurrence of every regular file of a tar, read with Python's tarfile."""
    found = {}
    with tarfile.open(path) as tf:
        for info in tf.getmembers():
            if info.isreg():
                name = info.name[2:] if info.name.startswith("./") else info.name
                if name.startswith("./"):
                    name = name[2:]
                found[name] = (tf.extractfile(info).read(), info.mode)
    return found


@pytest.fixture
def image(tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(os.urandom(200000))
    kernel = tmp_path / "Image"
    kernel.write_bytes(b"k" * 5000)
    path = str(tmp_path / "guest.xenguest")
    ok("create", path, f"--xen-kernel={kernel}", f"--disk-add-file={rootfs}:rootfs.tar",
       "--disk-size=1", "--disk-add-part=1:100M:ext4:rootfs.tar")
    return path


def test_manifest_lists_every_member_with_its_digest(image):
    files = members(image)
    lines = manifest_lines(files["xenguest.manifest"][0].decode())
    expected = {name: ("sha256:" + hashlib.sha256(data).hexdigest(), len(data), f"{mode:04o}")
                for name, (data, mode) in files.items() if name != "xenguest.manifest"}
    assert lines == expected
    # Canonical order: the manifest right after the format member, lines in member order.
    with TarIndex.open(image) as index:
        order = [m.name for m in sorted(index.members.values(), key=lambda m: m.header_offset)
                 if not m.is_dir]
    assert order[:2] == ["xenguest.format", "xenguest.manifest"]
    assert list(lines) == [n for n in order if n != "xenguest.manifest"]


def test_a_shell_can_check_the_manifest(image, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-C", str(out), "-xf", image], check=True)
    script = ("tail -n +2 xenguest.manifest | while read -r digest size mode name; do "
              'echo "${digest#sha256:}  $name"; done | sha256sum -c --quiet')
    proc = subprocess.run(["sh", "-c", script], cwd=str(out), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout


def test_check_verify_passes_and_names_each_difference(image):
    ok("check", "--verify", image)
    flip_byte(image, "disk/rootfs.tar", 1000)
    result = mkimage("check", "--verify", image, "--json")
    assert result.rc == 1
    errors = [p for p in json.loads(result.out)["problems"] if p["severity"] == "error"]
    assert errors == [{"severity": "error", "location": "disk/rootfs.tar",
                       "message": "different: content differs from the manifest "
                                  "(SHA-256 mismatch)"}]


def test_missing_and_extra_members(tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    ok("create", str(folder), "--xen-memory=64")
    ok("check", "--verify", str(folder))
    (folder / "files" / "new.bin").write_bytes(b"new")
    os.unlink(folder / "disk.cfg")
    with Image.open(str(folder)) as img:
        findings = manifest_check.verify(img, manifest_check.read(img))
    assert [(f.kind, f.name) for f in findings] == [("extra", "files/new.bin"),
                                                    ("missing", "disk.cfg")]
    result = mkimage("check", "--verify", str(folder))
    assert "error: files/new.bin: extra: not listed in the manifest" in result.out
    assert "error: disk.cfg: missing: listed in the manifest but not in the image" in result.out
    # Plain check compares names and sizes only, as warnings.
    plain = mkimage("check", str(folder)).out
    assert "warning: files/new.bin: extra: not listed in the manifest" in plain


def test_update_keeps_the_manifest_right_without_rehashing(image):
    with TarIndex.open(image) as index:
        payload_end = index.end_offset
    flip_byte(image, "disk/rootfs.tar", 10)  # damage the update must not launder
    ok("update", image, "--xen-memory=333")
    with TarIndex.open(image) as index:
        appended = sorted(m.name for m in index.members.values()
                          if m.header_offset >= payload_end)
    assert appended == ["guest.cfg", "xenguest.manifest"]
    result = mkimage("check", "--verify", image)
    assert result.rc == 1
    assert [l for l in result.out.splitlines() if l.startswith("error")] == [
        "error: disk/rootfs.tar: different: content differs from the manifest "
        "(SHA-256 mismatch)"]
    lines = manifest_lines(members(image)["xenguest.manifest"][0].decode())
    assert lines["guest.cfg"][0] == \
        "sha256:" + hashlib.sha256(members(image)["guest.cfg"][0]).hexdigest()


def test_every_change_keeps_the_manifest_right(image, tmp_path):
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\n")
    ok("update", image, f"--init-script={hook}", "--set-param=A=1")
    ok("check", "--verify", image)
    ok("update", image, "--xen-kernel=")  # a removal: the image is rewritten
    ok("check", "--verify", image)
    ok("pack", image, str(tmp_path / "packed.xenguest"))
    ok("check", "--verify", str(tmp_path / "packed.xenguest"))
    folder = tmp_path / "dir"
    folder.mkdir()
    ok("create", str(folder))
    ok("update", str(folder), f"--init-script={hook}", "--xen-memory=99")
    ok("check", "--verify", str(folder))


def test_image_without_manifest_is_unverifiable(image, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    subprocess.run(["tar", "-C", str(old), "-xf", image], check=True)
    os.unlink(old / "xenguest.manifest")
    os.unlink(old / "xenguest.format")
    result = mkimage("check", str(old))
    assert result.rc == 0 and "is unverifiable" in result.out
    result = mkimage("check", "--verify", str(old))
    assert result.rc == 0
    assert f"warning: {old}: no xenguest.manifest: the content cannot be verified" in result.out
    ok("update", str(old), "--xen-memory=70")  # still readable and updatable
    assert not (old / "xenguest.manifest").exists()


@pytest.mark.parametrize("text, message", [
    (b"xenguest-manifest 2\n", "not a manifest this tool reads"),
    (b"xenguest-manifest 1\nsha256:00 1 0644 a\n", ":2: damaged manifest line"),
    (b"xenguest-manifest 1", "does not end with a newline"),
    (b"xenguest-manifest 1\nsha256:" + b"0" * 64 + b" 1 0644 signatures/a.cms\n",
     "may not be listed here"),
])
def test_damaged_manifest(text, message):
    with pytest.raises(ImageError) as failure:
        manifest.parse(text, "m")
    assert message in failure.value.message


names = st.text(alphabet=st.characters(blacklist_characters="\n\r/",
                                       blacklist_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(names, st.tuples(st.binary(max_size=64), st.sampled_from([0o644, 0o755])),
                       max_size=8))
def test_render_parse_round_trip(entries):
    entries.pop(manifest.layout.MANIFEST_MEMBER, None)
    lines = [manifest.Line(hashlib.sha256(data).hexdigest(), len(data), mode, f"files/{name}")
             for name, (data, mode) in entries.items()]
    data = manifest.render(lines)
    assert len(data) == manifest.rendered_size((l.name, l.size) for l in lines)
    assert manifest.parse(data, "m") == {l.name: l for l in lines}

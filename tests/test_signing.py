"""Signed images with the real openssl: sign, verify, chains, rotation, tampering."""

import json
import os
import shutil

import pytest
from mkimage_util import mkimage
from signing_util import flip_byte, sign_args
from xenguest.format import signing
from xenguest.format.append import append_members
from xenguest.format.archive import TarIndex
from xenguest.format.image import Image


def ok(*args: str) -> str:
    result = mkimage(*args)
    assert result.rc == 0, result.err
    return result.out


def fails(*args: str) -> str:
    result = mkimage(*args)
    assert result.rc == 1, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


@pytest.fixture
def image(tmp_path):
    kernel = tmp_path / "Image"
    kernel.write_bytes(b"kernel" * 1000)
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(os.urandom(300000))
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\necho hello\n")
    path = str(tmp_path / "guest.xenguest")
    ok("create", path, f"--xen-kernel={kernel}", f"--disk-add-file={rootfs}:rootfs.tar",
       "--disk-size=1", "--disk-add-part=1:100M:ext4:rootfs.tar", f"--init-script={hook}")
    return path


@pytest.fixture
def signed(image, pki):
    ok("sign", image, *sign_args(pki))
    return image


def verify(image: str, keyring: str) -> str:
    return fails("verify", image, "--keyring", keyring)


def test_sign_and_verify_with_a_chain(signed, pki):
    out = ok("verify", signed, "--keyring", pki.cert("root"))
    assert "verified: signed by CN=Image Signer" in out
    data = json.loads(ok("verify", signed, "--keyring", pki.cert("root"), "--json"))
    fingerprint = signing.certificate(pki.cert("signer")).fingerprint
    assert data == {"image": signed, "valid": True, "subject": "CN=Image Signer",
                    "fingerprint": fingerprint,
                    "signature": f"signatures/{fingerprint[:16]}.cms"}
    # The signature is a detached CMS (DER) that openssl verifies on its own.
    with Image.open(signed) as img:
        assert img.read_bytes(data["signature"])[:1] == b"\x30"
    # Signing appended two members; nothing else changed.
    with TarIndex.open(signed) as index:
        assert [m.name for m in index.superseded] == []
    ok("check", "--verify", signed)


def test_intermediate_is_needed_in_the_signature_or_the_keyring(image, pki):
    ok("sign", image, "--key", pki.key("signer"), "--cert", pki.cert("signer"))
    assert verify(image, pki.cert("root")).startswith(
        f"xenguest-mkimage verify: {image}: unknown signer: signatures/")
    keyring = os.path.join(pki.folder, "both.pem")
    with open(keyring, "w") as out:
        for who in ("root", "intermediate"):
            with open(pki.cert(who)) as f:
                out.write(f.read())
    ok("verify", image, "--keyring", keyring)


def test_unsigned_image(image, pki):
    assert verify(image, pki.cert("root")) == \
        f"xenguest-mkimage verify: {image}: no signature: the image is not signed"
    data = json.loads(mkimage("verify", image, "--keyring", pki.cert("root"), "--json").out)
    assert data["valid"] is False and data["kind"] == "no signature"


def test_wrong_ca(signed, pki):
    message = verify(signed, pki.cert("other"))
    assert ": unknown signer: " in message and "does not trust" in message


@pytest.mark.parametrize("who, kind", [("expired", "expired certificate"),
                                       ("future", "certificate not yet valid")])
def test_certificate_outside_its_validity(image, pki, who, kind):
    ok("sign", image, *sign_args(pki, who))
    assert f"{image}: {kind}: signatures/" in verify(image, pki.cert("root"))


@pytest.mark.parametrize("member, at", [("disk/rootfs.tar", 150000), ("guest.cfg", 3),
                                        ("init.d/hook.sh", 12), ("files/kernel", 0)])
def test_tampered_member_is_named(signed, pki, member, at):
    flip_byte(signed, member, at)
    message = verify(signed, pki.cert("root"))
    assert message.startswith(f"xenguest-mkimage verify: {signed}: digest mismatch: "
                              f"{member}: different: content differs")
    result = mkimage("check", "--verify", signed, "--json")
    assert result.rc == 1
    problems = json.loads(result.out)["problems"]
    assert [p["location"] for p in problems if p["severity"] == "error"] == [member]


def test_tampered_manifest(signed, pki):
    flip_byte(signed, "xenguest.manifest", 30)
    message = verify(signed, pki.cert("root"))
    assert f"{signed}: manifest tampered: signatures/" in message
    assert "does not match xenguest.manifest" in message


def test_tampered_signature(signed, pki):
    with Image.open(signed) as img:
        name = signing.signature_members(img)[0]
        size = img.entry(name).size
    flip_byte(signed, name, size - 20)
    message = verify(signed, pki.cert("root"))
    assert f"{signed}: " in message
    assert any(f": {kind}: " in message for kind in
               ("manifest tampered", "invalid signature", "unknown signer"))
    assert mkimage("check", "--verify", signed).rc == 1


def test_truncated_image(signed, pki):
    size = os.path.getsize(signed)
    with open(signed, "r+b") as f:
        f.truncate(size // 2)
    message = verify(signed, pki.cert("root"))
    assert "truncated image" in message or "damaged archive" in message


def test_updated_image_is_invalid_until_signed_again(signed, pki):
    ok("update", signed, "--xen-memory=300")
    message = verify(signed, pki.cert("root"))
    assert ": manifest tampered: " in message and "sign it again" in message
    result = mkimage("check", "--verify", signed)
    assert result.rc == 1 and "manifest tampered" in result.out
    ok("sign", signed, *sign_args(pki))
    ok("verify", signed, "--keyring", pki.cert("root"))
    with Image.open(signed) as img:
        assert len(signing.signature_members(img)) == 1
    # Compacting keeps the manifest byte for byte, so the signature stays valid.
    ok("pack", signed, signed)
    ok("verify", signed, "--keyring", pki.cert("root"))


def test_key_rotation_keeps_several_signatures(signed, pki):
    ok("sign", signed, *sign_args(pki, "rotated"))
    with Image.open(signed) as img:
        assert len(signing.signature_members(img)) == 2
    only_new = json.loads(ok("verify", signed, "--keyring", pki.cert("root"), "--json"))
    assert only_new["valid"]
    assert "CN=Image Signer" in ok("verify", signed, "--keyring", pki.cert("root"))
    ok("sign", signed, *sign_args(pki, "stranger"))
    assert "CN=Stranger" in ok("verify", signed, "--keyring", pki.cert("other"))


def append(image: str, members: dict) -> None:
    """Append files {name: bytes} to *image* after it was signed, as an attacker would."""
    with TarIndex.open(image) as index:
        append_members(image, index, lambda w: [w.add_bytes(n, d, 0o755)
                                                for n, d in members.items()])


@pytest.mark.parametrize("name, first", [
    ("signatures/evil.sh", "signatures/evil.sh"),
    ("signatures/0123456789ABCDEF.cms", "signatures/0123456789ABCDEF.cms"),
    ("signatures/sub/0123456789abcdef.cms", "signatures/sub")])
def test_only_signatures_may_be_added_after_signing(signed, pki, name, first):
    append(signed, {name: b"#!/bin/sh\nrm -rf /\n"})
    message = f"{signed}: not a signature: {first}: signatures/ holds only signatures"
    assert verify(signed, pki.cert("root")).startswith(f"xenguest-mkimage verify: {message}")
    for args in (["check", signed], ["check", "--verify", signed]):
        result = mkimage(*args)
        assert result.rc == 1 and f"error: {name}: not a signature: " in result.out


def test_every_signature_must_be_sound(signed, pki, tmp_path):
    other = str(tmp_path / "other.xenguest")
    ok("create", other, "--xen-memory=64")
    member, _ = signing.sign(other, pki.key("rotated"), pki.cert("rotated"))
    with Image.open(other) as img:
        foreign = img.read_bytes(member)
    append(signed, {member: foreign})  # a signature, but of another image's manifest
    assert f": manifest tampered: {member} does not match" in verify(signed, pki.cert("root"))
    # A signer this keyring does not trust is fine, a damaged signature is not.
    ok("sign", signed, *sign_args(pki, "stranger"))
    append(signed, {"signatures/0123456789abcdef.cms": b"0 not DER"})
    assert ": invalid signature: signatures/0123456789abcdef.cms" in \
        verify(signed, pki.cert("root"))


def test_signing_again_removes_signatures_of_older_manifests(signed, pki):
    ok("sign", signed, *sign_args(pki, "rotated"))
    ok("update", signed, "--xen-memory=300")
    ok("sign", signed, *sign_args(pki, "rotated"))  # the old key's signature is stale
    ok("verify", signed, "--keyring", pki.cert("root"))
    with Image.open(signed) as img:
        assert signing.signature_members(img) == [
            signing.signature_member(signing.certificate(pki.cert("rotated")))]
    append(signed, {"signatures/evil.sh": b"#!/bin/sh\n"})
    assert fails("sign", signed, *sign_args(pki)).startswith(
        f"xenguest-mkimage sign: {signed}: not a signature: signatures/evil.sh: ")


def test_directory_image(tmp_path, pki):
    folder = tmp_path / "dir"
    folder.mkdir()
    ok("create", str(folder), "--xen-memory=64")
    ok("sign", str(folder), *sign_args(pki))
    ok("verify", str(folder), "--keyring", pki.cert("root"))
    (folder / "guest.cfg").write_text("memory = 65\n")
    assert ": digest mismatch: guest.cfg: different: " in verify(str(folder), pki.cert("root"))


def test_signing_errors(image, pki, tmp_path):
    assert fails("sign", image, "--key", str(tmp_path / "none.key"), "--cert",
                 pki.cert("signer")).endswith("none.key: no such key file")
    message = fails("sign", image, "--key", pki.key("rotated"), "--cert", pki.cert("signer"))
    assert "openssl cannot sign with" in message
    assert "PRIVATE KEY" not in message


def test_openssl_is_required(signed, pki, tmp_path):
    python_only = tmp_path / "bin"
    python_only.mkdir()
    result = mkimage("verify", signed, "--keyring", pki.cert("root"),
                     env={"PATH": str(python_only)})
    assert result.rc == 1 and "the openssl command is not on PATH" in result.err
    # check --verify still checks every digest; the signatures only get a warning.
    result = mkimage("check", "--verify", signed, env={"PATH": str(python_only)})
    assert result.rc == 0
    assert "warning: signatures/" in result.out and "openssl command is not on PATH" in result.out


def test_a_signature_without_a_manifest_is_an_error(tmp_path, pki):
    folder = tmp_path / "dir"
    folder.mkdir()
    ok("create", str(folder))
    ok("sign", str(folder), *sign_args(pki))
    os.unlink(folder / "xenguest.manifest")
    result = mkimage("check", "--verify", str(folder))
    assert result.rc == 1
    assert "error: signatures/" in result.out
    assert ": a signature, but the image has no xenguest.manifest" in result.out
    assert ": no manifest: " in verify(str(folder), pki.cert("root"))


def test_no_manifest_is_unverifiable(tmp_path, pki):
    folder = tmp_path / "old"
    folder.mkdir()
    ok("create", str(folder))
    os.unlink(folder / "xenguest.manifest")
    assert verify(str(folder), pki.cert("root")).endswith(
        "no manifest: the image is unverifiable (made by an earlier tool: write a new one "
        "with 'pack')")
    assert fails("sign", str(folder), *sign_args(pki)).endswith("write a new one with 'pack')")
    shutil.rmtree(folder)


def test_the_manifest_verified_is_the_manifest_checked_against(tmp_path, pki):
    """An updated directory image (its own, consistent manifest) keeps its old signature;
    another process puts the signed manifest back right after verify read the manifest:
    the signature must be checked over the manifest the digests are checked against."""
    from interrupt_util import run_interrupted, steps

    image = tmp_path / "img"
    image.mkdir()
    ok("create", str(image), "--xen-memory=64")
    ok("sign", str(image), *sign_args(pki))
    reference = shutil.copytree(str(image), str(tmp_path / "reference"))
    trace = steps("mkimage", ["verify", reference, "--keyring", pki.cert("root")],
                  str(tmp_path), str(tmp_path) + ".trace")
    signed_manifest = shutil.copy(str(image / "xenguest.manifest"), str(tmp_path / "m"))
    ok("update", str(image), "--xen-memory=4096")
    assert "manifest tampered" in fails("verify", str(image), "--keyring", pki.cert("root"))
    first_read = trace.index(f"open-read {reference}/xenguest.manifest") + 1
    nth = first_read + 1  # whatever comes after the manifest was read
    rc, err = run_interrupted("mkimage", ["verify", str(image), "--keyring",
                                          pki.cert("root")], str(tmp_path), nth,
                              ["rename", str(image / "xenguest.manifest"), signed_manifest])
    assert rc == 1 and "manifest tampered" in err, err

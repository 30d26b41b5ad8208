"""The manager's signature policy, with the real openssl and real signed images."""

import json
import os
import subprocess

import pytest
from interrupt_util import run_interrupted, steps
from manager_util import (
    FakeXl,
    RecordingToolstack,
    config_file,
    make_image,
    make_tar,
    manager,
    script,
    tar_entry,
    tree,
    write,
)
from signing_util import flip_byte
from xenguest.cli.manager import main
from xenguest.format import signing
from xenguest.format.append import append_members
from xenguest.format.archive import TarIndex
from xenguest.format.image import Image
from xenguest.manager import ManagerError
from xenguest.manager.config import parse_config


def signed_image(path: str, pki, who: str = "signer") -> str:
    make_image(path, [("--disk-size", "1"), ("--disk-add-part", "1:16M:ext4:"),
                      ("--xen-memory", "64")])
    chain = pki.cert("intermediate") if who == "signer" else None
    signing.sign(path, pki.key(who), pki.cert(who), chain)
    return path


def make(tmp_path, policy: str, pki):
    state = str(tmp_path / "state")
    toolstack = RecordingToolstack()
    return manager(state, toolstack, verify=policy, keyring=pki.cert("root")), state, toolstack


def refused(mgr, image: str) -> str:
    with pytest.raises(ManagerError) as failure:
        mgr.create(image, "web")
    return failure.value.message


def test_require_accepts_a_verified_image_and_records_the_signer(tmp_path, pki):
    mgr, _, _ = make(tmp_path, "require", pki)
    image = signed_image(str(tmp_path / "web.xenguest"), pki)
    assert mgr.create(image) == "web"
    status = mgr.status("web")[0].as_dict()
    assert status["signer"] == signing.certificate(pki.cert("signer")).as_dict()
    assert status["signer"]["subject"] == "CN=Image Signer"


@pytest.mark.parametrize("damage, reason", [
    (None, "no signature: the image is not signed"),
    ("disk.cfg", "digest mismatch: disk.cfg: different"),
    ("guest.cfg", "digest mismatch: guest.cfg: different"),
    ("xenguest.manifest", "manifest tampered: signatures/"),
])
def test_require_refuses_before_touching_anything(tmp_path, pki, damage, reason):
    mgr, state, toolstack = make(tmp_path, "require", pki)
    image = str(tmp_path / "web.xenguest")
    if damage is None:
        make_image(image, [("--disk-size", "1"), ("--disk-add-part", "1:16M:ext4:")])
    else:
        signed_image(image, pki)
        flip_byte(image, damage, 5)
    message = refused(mgr, image)
    assert message.startswith(f"{image}: refused (verify = require): {reason}")
    # Nothing extracted, no disk, not even the state folder.
    assert not os.path.exists(state)
    assert toolstack.calls == []


def test_if_signed(tmp_path, pki):
    mgr, state, _ = make(tmp_path, "if-signed", pki)
    unsigned = make_image(str(tmp_path / "plain.xenguest"), [("--xen-memory", "64")])
    assert mgr.create(unsigned) == "plain"
    assert mgr.status("plain")[0].signer is None
    stranger = signed_image(str(tmp_path / "web.xenguest"), pki, "stranger")
    assert ": unknown signer: " in refused(mgr, stranger)
    assert os.listdir(os.path.join(state, "guests")) == ["plain"]


def test_off_does_not_look(tmp_path, pki):
    mgr, _, _ = make(tmp_path, "off", pki)
    image = signed_image(str(tmp_path / "web.xenguest"), pki, "stranger")
    flip_byte(image, "params.cfg", 2)
    assert mgr.create(image) == "web"
    assert mgr.status("web")[0].signer is None


def test_autostart_applies_the_policy(tmp_path, pki):
    folder = tmp_path / "guests"
    folder.mkdir()
    signed_image(str(folder / "good.xenguest"), pki)
    bad = signed_image(str(folder / "bad.xenguest"), pki)
    flip_byte(bad, "params.cfg", 0)
    mgr, _, _ = make(tmp_path, "require", pki)
    mgr.config.guest_folders = [str(folder)]
    report = mgr.autostart()
    assert report.done == ["good"]
    assert [name for name, _ in report.failed] == ["bad"]
    assert "refused (verify = require): digest mismatch: params.cfg" in report.failed[0][1]


@pytest.mark.parametrize("policy", ["require", "if-signed", "off"])
def test_a_member_that_is_not_a_signature_is_refused(tmp_path, pki, policy):
    mgr, state, toolstack = make(tmp_path, policy, pki)
    image = str(tmp_path / "web.xenguest")
    if policy == "require":
        signed_image(image, pki)
    else:
        make_image(image)
    with TarIndex.open(image) as index:
        append_members(image, index,
                       lambda w: w.add_bytes("signatures/evil.sh", b"#!/bin/sh\n", 0o755))
    message = refused(mgr, image)
    reason = {"require": "refused (verify = require): not a signature: signatures/evil.sh: "}
    assert reason.get(policy, "invalid image: signatures/evil.sh: not a signature: ") in message
    assert message.endswith("signatures/ holds only signatures (<fingerprint>.cms): nothing "
                            "vouches for this member")
    assert not os.path.exists(os.path.join(state, "guests", "web"))
    assert toolstack.calls == []


def test_settings():
    config = parse_config("[security]\nverify = Require\nkeyring = /etc/k.pem\n", "m.conf")
    assert (config.verify, config.keyring) == ("require", "/etc/k.pem")
    assert parse_config("", "m.conf").verify == "if-signed"
    with pytest.raises(ManagerError) as failure:
        parse_config("[security]\nverify = sometimes\n", "m.conf")
    assert failure.value.message == ("m.conf: [security] verify: 'sometimes' is not one of "
                                     "require, if-signed, off")
    with pytest.raises(ManagerError):
        parse_config("[security]\nkeyring = keys.pem\n", "m.conf")


def test_command_line_status_shows_the_signer(tmp_path, pki, monkeypatch, capsys):
    xl = FakeXl(str(tmp_path))
    state = str(tmp_path / "state")
    config = config_file(str(tmp_path), state, xl=xl.path, extra=(
        f"[security]\nverify = require\nkeyring = {pki.cert('root')}\n"))
    monkeypatch.setenv("XENGUEST_MANAGER_CONFIG", config)
    image = signed_image(str(tmp_path / "web.xenguest"), pki)
    assert main(["create", image]) == 0
    capsys.readouterr()
    assert main(["status", "web", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["signer"]["subject"] == "CN=Image Signer"
    assert main(["status", "web"]) == 0
    fingerprint = signing.certificate(pki.cert("signer")).fingerprint
    assert (f"  signed by: CN=Image Signer (SHA-256 fingerprint {fingerprint})\n"
            in capsys.readouterr().out)
    unsigned = make_image(str(tmp_path / "db.xenguest"))
    assert main(["create", unsigned]) == 1
    assert capsys.readouterr().err.strip().endswith(
        f"{unsigned}: refused (verify = require): no signature: the image is not signed")


# -- signed means every installed byte was verified -----------------------------------

TAMPERED = ["params.cfg", "init.d/10-run", "files/kernel", "disk/rootfs.tar"]


def tamper_test_image(tmp_path, pki, kind):
    """A signed image (file or directory) with a script, a kernel and disk content."""
    src = tmp_path / "src"
    src.mkdir()
    rootfs = make_tar(str(src / "rootfs.tar"), [tar_entry("./etc/motd", b"signed motd\n")])
    edits = [("--disk-size", "12M"), ("--disk-add-file", rootfs),
             ("--disk-add-part", "1:10M:ext4:rootfs.tar"), ("--set-param", "WHO=signed"),
             ("--xen-kernel", write(str(src / "Image"), b"signed kernel" * 1000)),
             ("--init-script", script(str(src / "10-run"), "echo signed\n"))]
    image = str(tmp_path / "web.xenguest")
    if kind == "directory":
        os.mkdir(image)
    make_image(image, edits)
    signing.sign(image, pki.key("signer"), pki.cert("signer"), pki.cert("intermediate"))
    return image


def evil(data: bytes) -> bytes:
    """Other bytes of the same length."""
    return bytes(b ^ 0x20 for b in data)


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_bytes_changed_after_verification_are_never_installed(tmp_path, pki, monkeypatch,
                                                               capsys, kind):
    """Another process changes a member after the verification (a directory image's file
    renamed over, a file image overwritten in place): the guest gets the verified bytes,
    or is not made at all."""
    xl = FakeXl(str(tmp_path))
    state = str(tmp_path / "state")
    monkeypatch.setenv("XENGUEST_MANAGER_CONFIG", config_file(
        str(tmp_path), state, xl=xl.path,
        extra=f"[security]\nverify = require\nkeyring = {pki.cert('root')}\n"))
    image = tamper_test_image(tmp_path, pki, kind)
    trace = steps("manager", ["create", image], str(tmp_path), str(tmp_path) + ".trace")
    assert main(["remove", "web"]) == 0
    openssl = max(i for i, step in enumerate(trace, 1) if step.startswith("run openssl "))
    moments = [openssl + 1,  # the digests are being computed
               trace.index(f"os.mkdir {state}/guests/.web.partial") + 1,  # verified, checked
               [s.split()[:2] for s in trace].index(["run", "sfdisk"]) + 1]  # config installed
    outcomes = set()
    for member in TAMPERED:
        with Image.open(image) as opened:
            original = opened.read_bytes(member) if opened.entry(member).size < 1 << 20 \
                else None
        for nth in moments:
            if kind == "directory":
                path = os.path.join(image, *member.split("/"))
                swap = write(str(tmp_path / "swap"), evil(open(path, "rb").read()),
                             os.stat(path).st_mode & 0o777)
                how = ["rename", path, swap]
                restore = open(path, "rb").read()
            else:
                with TarIndex.open(image) as index:
                    at = index.file_member(member).data_offset
                with open(image, "rb") as f:
                    f.seek(at)
                    restore = f.read(4096)
                how = ["pwrite", image, at, evil(restore).hex()]
            rc, err = run_interrupted("manager", ["create", image], str(tmp_path), nth, how)
            where = (member, trace[nth - 1], err)
            outcomes.add(rc)
            if rc == 0:  # changed after it was read for good: the verified bytes are in
                guest = os.path.join(state, "guests", "web")
                if member.startswith("disk/"):
                    motd = subprocess.run(["debugfs", "-R", "cat /etc/motd",
                                           f"{guest}/disk.img?offset={1 << 20}"],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                    assert motd.stdout == b"signed motd\n", where
                else:
                    with open(os.path.join(guest, *member.split("/")), "rb") as f:
                        assert f.read() == original, where
                assert main(["remove", "web"]) == 0
            else:
                assert rc == 1 and "verif" in err.splitlines()[-1], where
                assert tree(os.path.join(state, "guests")) == [], where
            if kind == "directory":
                write(path, restore, os.stat(path).st_mode & 0o777)
            else:
                with open(image, "r+b") as f:
                    f.seek(at)
                    f.write(restore)
            capsys.readouterr()
    assert outcomes == {0, 1}  # some changes came after their member was read for good

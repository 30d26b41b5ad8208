"""The manager's signature policy, with the real openssl and real signed images."""

import json
import os

import pytest

from manager_util import FakeXl, RecordingToolstack, config_file, make_image, manager
from signing_util import flip_byte
from xenguest import signing
from xenguest.archive import TarIndex
from xenguest.archive_append import append_members
from xenguest.cli.manager import main
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

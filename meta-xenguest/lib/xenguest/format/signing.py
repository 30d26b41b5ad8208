"""Signatures of images: detached CMS signatures over the manifest, with ``openssl``.

A signature is the DER output of ``openssl cms -sign -binary -nosmimecap
-md sha256`` over the bytes of ``xenguest.manifest`` (detached: the content
is not embedded; the signed attributes hold its SHA-256), the format RAUC
bundles use.  It is stored as the member ``signatures/<F>.cms``, F being the
first 16 hex digits of the SHA-256 fingerprint of the signer's certificate:
signatures of several signers coexist (key rotation) and signing again with
the same certificate replaces its signature.  Signatures are not listed in
the manifest, so signing appends two small members and nothing else.

Verification (:func:`verify_signed`) runs ``openssl cms -verify -binary
-inform DER -content MANIFEST -CAfile KEYRING -purpose any``: the signer's
chain (intermediates may travel in the signature, ``--chain``) must lead to a
certificate of the keyring and be valid now; key usage purposes are not
restricted (the keyring alone decides who may sign).  Then every digest is
checked.  One valid signature suffices; each failure is one line naming its
kind.  The library stays standard-library-only: the ``openssl`` command is
found on PATH.  The key is only ever passed to ``openssl`` by path.
"""

import os
import re
import shutil
import tempfile
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import ImageError, XenguestError
from ..fsutil import require_path
from . import layout, manifest, manifest_check
from .image import Image

if TYPE_CHECKING:  # pragma: no cover
    import subprocess

SUFFIX = ".cms"
FINGERPRINT_DIGITS = 16
#: Why a member of ``signatures/`` not named like a signature is refused.
STRAY = (f"{layout.SIGNATURES}/ holds only signatures (<fingerprint>{SUFFIX}): nothing "
         "vouches for this member")
_SIGNATURE_NAME = re.compile(
    rf"{layout.SIGNATURES}/[0-9a-f]{{{FINGERPRINT_DIGITS}}}{re.escape(SUFFIX)}\Z")


class SignatureError(ImageError):
    """An image fails verification; *kind* says how (see :data:`KINDS`)."""

    def __init__(self, message: str, kind: str = "invalid signature",
                 detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        #: The message without the image's path.
        self.detail = detail or message

    def prefixed(self, prefix: str) -> "SignatureError":
        return SignatureError(f"{prefix}: {self.message}", self.kind, self.detail)


#: The kinds of failure, in the order a report prefers them.
KINDS = ("no manifest", "no signature", "not a signature", "manifest tampered",
         "expired certificate", "certificate not yet valid", "unknown signer",
         "invalid signature", "digest mismatch")
#: The kinds that say whom the keyring trusts, not whether a signature is sound.
TRUST_KINDS = ("expired certificate", "certificate not yet valid", "unknown signer")


class Signer(NamedTuple):
    """A signing certificate: its subject (RFC 2253) and SHA-256 fingerprint (hex)."""

    subject: str
    fingerprint: str

    def as_dict(self) -> Dict[str, str]:
        return {"subject": self.subject, "fingerprint": self.fingerprint}


class Verified(NamedTuple):
    """The outcome of a successful :func:`verify_signed`."""

    signer: Signer
    signature: str


def openssl() -> str:
    """The ``openssl`` command found on PATH; XenguestError if there is none."""
    found = shutil.which("openssl")
    if not found:
        raise XenguestError("the openssl command is not on PATH: it is needed to sign and "
                            "verify images (install openssl)")
    return found


def _run(args: Sequence[str], data: Optional[bytes] = None) -> "subprocess.CompletedProcess[bytes]":
    import subprocess  # loaded only by the operations that run openssl

    return subprocess.run([openssl(), *args], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)


def _reason(stderr: bytes) -> str:
    """The most telling line of openssl's error output."""
    text = stderr.decode("utf-8", "replace")
    verify = re.findall(r"Verify error: ?(.+)", text)
    if verify:
        return verify[-1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # CODE:error:HEX:LIBRARY:FUNCTION:REASON:FILE:LINE:
    errors = [line.split(":")[5] for line in lines
              if ":error:" in line and line.count(":") >= 7]
    return (errors[-1] if errors else lines[-1] if lines else "unknown error").strip()


def certificate(path: str) -> Signer:
    """Subject and fingerprint of the PEM certificate *path*."""
    result = _run(["x509", "-in", path, "-noout", "-nameopt", "RFC2253", "-subject",
                   "-fingerprint", "-sha256"])
    if result.returncode != 0:
        raise XenguestError(f"{path}: not a readable PEM certificate ({_reason(result.stderr)})")
    text = result.stdout.decode("utf-8", "replace")
    subject = re.search(r"^subject=\s*(.*)$", text, re.M)
    fingerprint = re.search(r"Fingerprint=([0-9A-Fa-f:]+)", text)
    if not subject or not fingerprint:
        raise XenguestError(f"{path}: openssl printed no subject or fingerprint")
    return Signer(subject[1].strip(), fingerprint[1].replace(":", "").lower())


def signature_member(signer: Signer) -> str:
    """The member name of *signer*'s signature."""
    return f"{layout.SIGNATURES}/{signer.fingerprint[:FINGERPRINT_DIGITS]}{SUFFIX}"


def signature_members(image: Image) -> List[str]:
    """The signature members of *image*, sorted."""
    return [n for n in image.files_in(layout.SIGNATURES) if _SIGNATURE_NAME.match(n)]


def stray_members(image: Image) -> List[str]:
    """Files and folders below ``signatures/`` not named like a signature, sorted:
    nothing vouches for them (the manifest does not list ``signatures/``)."""
    stray = [n for n in image.files_in(layout.SIGNATURES) if not _SIGNATURE_NAME.match(n)]
    stray += [f for f in image.folders() if f.startswith(layout.SIGNATURES + "/")]
    return sorted(stray)


def _failure(image: Image, kind: str, detail: str) -> SignatureError:
    return SignatureError(f"{image.path}: {kind}: {detail}", kind, f"{kind}: {detail}")


def _manifest_bytes(image: Image) -> bytes:
    if not image.exists(layout.MANIFEST_MEMBER):
        raise _failure(image, "no manifest", "the image is unverifiable (made by an earlier "
                                             "tool: write a new one with 'pack')")
    return image.read_bytes(layout.MANIFEST_MEMBER)


def sign(path: str, key: str, cert: str, chain: Optional[str] = None) -> Tuple[str, Signer]:
    """Sign the image at *path*; return the signature member and the signer.

    The manifest must agree with the members' names and sizes (no content is
    read: signing appends to a file image, O(metadata)).  Signatures of other
    signers stay if they are over the current manifest; those over an older
    one (left by an update) are removed, which rewrites a file image.
    """
    for what, value in (("key", key), ("certificate", cert), ("chain", chain)):
        if value is not None and not os.path.isfile(require_path(value, what)):
            raise XenguestError(f"{value}: no such {what} file")
    signer = certificate(cert)
    with Image.open(path, write=True) as image:
        lines = manifest_check.read(image)
        data = _manifest_bytes(image)
        assert lines is not None
        stray = stray_failure(image)
        if stray is not None:
            raise stray
        findings = manifest_check.compare_metadata(image, lines)
        if findings:
            raise ImageError(f"{path}: {findings[0].name}: {findings[0].kind}: "
                             f"{findings[0].detail}: refusing to sign a manifest that does "
                             "not describe the image")
        args = ["cms", "-sign", "-binary", "-nosmimecap", "-md", "sha256", "-outform", "DER",
                "-signer", cert, "-inkey", key]
        if chain:
            args += ["-certfile", chain]
        result = _run(args, data)
        if result.returncode != 0 or not result.stdout:
            raise XenguestError(f"{path}: openssl cannot sign with {cert} and its key: "
                                f"{_reason(result.stderr)}")
        member = signature_member(signer)
        for other in signature_members(image):
            try:
                if other != member:
                    check_matches(image, other)
            except SignatureError:
                image.remove(other)
        image.write_bytes(member, result.stdout)
        image.commit(complete=False)
    return member, signer


def _classify(reason: str) -> str:
    lowered = reason.lower()
    if "has expired" in lowered:
        return "expired certificate"
    if "not yet valid" in lowered:
        return "certificate not yet valid"
    if "issuer certificate" in lowered or "self-signed certificate" in lowered \
            or "self signed certificate" in lowered or "unable to verify" in lowered:
        return "unknown signer"
    if "content verify error" in lowered or "verification failure" in lowered \
            or "digest failure" in lowered:
        return "manifest tampered"
    return "invalid signature"


_MESSAGES = {
    "manifest tampered": "{sig} does not match {manifest}: the manifest changed after it "
                         "was signed (tampered, or updated: sign it again)",
    "expired certificate": "{sig}: the signer's certificate has expired ({reason})",
    "certificate not yet valid": "{sig}: the signer's certificate is not yet valid ({reason})",
    "unknown signer": "{sig}: signed by a certificate the keyring does not trust ({reason})",
    "invalid signature": "{sig}: damaged or invalid signature ({reason})",
}


def _cms_verify(image: Image, name: str, keyring: Optional[str]) -> Optional[Signer]:
    """Run ``openssl cms -verify`` on signature *name*; the signer, or SignatureError."""
    data = _manifest_bytes(image)
    with tempfile.TemporaryDirectory(prefix="xenguest-verify-") as tmp:
        content = os.path.join(tmp, "manifest")
        signature = os.path.join(tmp, "signature.der")
        signers = os.path.join(tmp, "signer.pem")
        with open(content, "wb") as f:
            f.write(data)
        with open(signature, "wb") as f:
            f.write(image.read_bytes(name))
        args = ["cms", "-verify", "-binary", "-inform", "DER", "-in", signature,
                "-content", content, "-out", os.devnull, "-signer", signers]
        args += ["-CAfile", keyring, "-purpose", "any"] if keyring else ["-noverify"]
        result = _run(args)
        if result.returncode != 0:
            reason = _reason(result.stderr)
            kind = _classify(reason)
            raise _failure(image, kind, _MESSAGES[kind].format(
                sig=name, manifest=layout.MANIFEST_MEMBER, reason=reason))
        return certificate(signers) if keyring else None


def check_matches(image: Image, name: str) -> None:
    """SignatureError unless signature *name* is a well-formed signature over the
    current manifest (the signer is not checked against any keyring)."""
    _cms_verify(image, name, None)


def stray_failure(image: Image) -> Optional[SignatureError]:
    """The failure of an image holding something in ``signatures/`` that is not a
    signature (see :func:`stray_members`), or None."""
    stray = stray_members(image)
    if not stray:
        return None
    return _failure(image, "not a signature", f"{stray[0]}: {STRAY}")


def verify_signed(image: Image, keyring: str) -> Verified:
    """Check *image*'s signatures against *keyring*, then every digest.

    One signature must verify; every other one must still be a well-formed
    signature of the current manifest (its signer may be one this keyring does
    not trust), and ``signatures/`` must hold nothing else.  Returns the first
    signature that verifies; else raises SignatureError for the most telling
    failure (one line, its kind first).  The image is pinned first: whatever is
    read from it afterwards is what was verified, or an error (see :mod:`.pinned`).
    """
    if not os.path.isfile(require_path(keyring, "keyring")):
        raise XenguestError(f"{keyring}: no such keyring file (PEM CA certificates)")
    image.pin()
    data = _manifest_bytes(image)
    stray = stray_failure(image)
    if stray is not None:
        raise stray
    names = signature_members(image)
    if not names:
        raise _failure(image, "no signature", "the image is not signed")
    untrusted: List[SignatureError] = []
    unsound: List[SignatureError] = []
    verified: Optional[Verified] = None
    for name in names:
        try:
            signer = _cms_verify(image, name, keyring)
            assert signer is not None
            verified = verified or Verified(signer, name)
        except SignatureError as e:
            if e.kind not in TRUST_KINDS:
                unsound.append(e)
                continue
            try:
                check_matches(image, name)
                untrusted.append(e)
            except SignatureError as bad:
                unsound.append(bad)
    failures = unsound or ([] if verified else untrusted)
    if failures:
        failures.sort(key=lambda e: KINDS.index(e.kind))
        raise failures[0]
    assert verified is not None
    lines = manifest.parse(data, f"{image.path}: {layout.MANIFEST_MEMBER}")
    findings = manifest_check.verify(image, lines)
    if findings:
        first = findings[0]
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise _failure(image, "digest mismatch", f"{first.name}: {first.kind}: "
                                                 f"{first.detail}{more}")
    return verified

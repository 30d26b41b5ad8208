"""A test PKI made with the real openssl: root CA, intermediate CA, signers.

EC P-256 keys (fast).  Certificates with validity periods in the past or the
future are issued with ``openssl ca -startdate/-enddate`` (openssl 3.0's
``x509`` cannot set them).
"""

import os
import subprocess
from dataclasses import dataclass
from typing import Dict, Optional

from xenguest.format.archive import TarIndex


def openssl(*args: str, cwd: str) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    assert proc.returncode == 0, (args, proc.stderr.decode())


@dataclass
class Pki:
    """Paths of the test PKI's files."""

    folder: str

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def key(self, who: str) -> str:
        return self.path(f"{who}.key")

    def cert(self, who: str) -> str:
        return self.path(f"{who}.pem")


CA_CONFIG = """\
[ca]
default_ca = ca_section
[ca_section]
database = {db}/index.txt
serial = {db}/serial
new_certs_dir = {db}
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none
x509_extensions = {extensions}
[any_name]
commonName = supplied
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
[intermediate]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
"""


def _root(pki: Pki, who: str, subject: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", pki.key(who), "-out", pki.cert(who), "-days", "3650",
            "-subj", f"/CN={subject}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=pki.folder)


def _issue(pki: Pki, who: str, subject: str, ca: str, extensions: str = "leaf",
           start: Optional[str] = None, end: Optional[str] = None) -> None:
    """Key and certificate *who*, issued by *ca* with ``openssl ca``."""
    db = pki.path(f"db-{ca}")
    if not os.path.isdir(db):
        os.mkdir(db)
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write("1000\n")
    config = pki.path(f"{who}.cnf")
    with open(config, "w") as f:
        f.write(CA_CONFIG.format(db=db, extensions=extensions))
    csr = pki.path(f"{who}.csr")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", pki.key(who), "-out", csr, "-subj", f"/CN={subject}", cwd=pki.folder)
    dates = ["-startdate", start or "20200101000000Z", "-enddate", end or "20991231000000Z"]
    openssl("ca", "-batch", "-notext", "-config", config, "-cert", pki.cert(ca),
            "-keyfile", pki.key(ca), "-in", csr, "-out", pki.cert(who), *dates, cwd=pki.folder)


def make_pki(folder: str) -> Pki:
    """root CA -> intermediate CA -> signer; a second signer under the root; an
    expired and a not-yet-valid signer; an unrelated CA with its own signer."""
    pki = Pki(folder)
    _root(pki, "root", "Test Root CA")
    _issue(pki, "intermediate", "Test Intermediate CA", "root", "intermediate")
    _issue(pki, "signer", "Image Signer", "intermediate")
    _issue(pki, "rotated", "Image Signer 2027", "root")
    _issue(pki, "expired", "Expired Signer", "root", start="20200101000000Z",
           end="20200201000000Z")
    _issue(pki, "future", "Future Signer", "root", start="20900101000000Z",
           end="20910101000000Z")
    _root(pki, "other", "Other CA")
    _issue(pki, "stranger", "Stranger", "other")
    return pki


def flip_byte(image: str, member: str, at: int = 0) -> None:
    """Invert one byte of *member*'s data in file image *image*, in place."""
    with TarIndex.open(image) as index:
        offset = index.file_member(member).data_offset + at
    with open(image, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def manifest_lines(text: str) -> Dict[str, tuple]:
    """The manifest read the way a shell would: ``read -r digest size mode name``."""
    rows = text.splitlines()
    assert rows[0] == "xenguest-manifest 1"
    result = {}
    for row in rows[1:]:
        digest, size, mode, name = row.split(" ", 3)
        result[name] = (digest, int(size), mode)
    return result


def sign_args(pki: Pki, who: str = "signer") -> list:
    args = ["--key", pki.key(who), "--cert", pki.cert(who)]
    if who == "signer":
        args += ["--chain", pki.cert("intermediate")]
    return args


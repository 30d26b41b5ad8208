"""BitBake glue of build-time signing (xenguest-image with XENGUEST_IMAGE_SIGN_*).

The key's path never enters the task signature (vardepsexclude) and is never
logged; the certificate's and chain's contents are task inputs (file-checksums).
"""

import os
from typing import Any, List, Optional, Tuple

from ..errors import XenguestError
from ..format import signing

#: Signing at build time: the key's path stays out of the task signature.
SIGN_KEY = "XENGUEST_IMAGE_SIGN_KEY"
SIGN_CERT = "XENGUEST_IMAGE_SIGN_CERT"
SIGN_CHAIN = "XENGUEST_IMAGE_SIGN_CHAIN"


class SignSettingError(XenguestError):
    """A signing variable has a wrong value; the message names it and the value."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        super().__init__(f'{variable} = "{value}": {reason}')


def _get(d: Any, name: str) -> str:
    return (d.getVar(name) or "").strip()


def signing_files(d: Any) -> Optional[Tuple[str, str, Optional[str]]]:
    """(key, certificate, chain or None) when the image is to be signed, else None.

    XenguestError if only one of key and certificate is set or a path is not
    absolute; the certificate and chain must exist at parse time (their content
    is part of the task signature), the key only when the task runs.
    """
    key, cert, chain = _get(d, SIGN_KEY), _get(d, SIGN_CERT), _get(d, SIGN_CHAIN)
    if not key and not cert:
        if chain:
            raise SignSettingError(SIGN_CHAIN, chain, f"set only with {SIGN_KEY} and {SIGN_CERT}")
        return None
    if not key or not cert:
        missing, given = (SIGN_KEY, SIGN_CERT) if not key else (SIGN_CERT, SIGN_KEY)
        raise XenguestError(f"{given} is set but {missing} is not: signing needs both")
    for variable, value in ((SIGN_KEY, key), (SIGN_CERT, cert), (SIGN_CHAIN, chain)):
        if value and not os.path.isabs(value):
            raise XenguestError(f"{variable}: must be an absolute path")
    for variable, value in ((SIGN_CERT, cert), (SIGN_CHAIN, chain)):
        if value and not os.path.isfile(value):
            raise SignSettingError(variable, value, "no such file")
    return key, cert, chain or None


def setup_signing(d: Any, task: str) -> List[str]:
    """Parse time: when signing, depend on openssl-native and keep the key's path
    out of *task*'s signature; return the file-checksums entries to add."""
    d.appendVarFlag(task, "vardepsexclude", f" {SIGN_KEY}")
    sign = signing_files(d)
    if sign is None:
        return []
    d.appendVar("DEPENDS", " openssl-native")
    d.appendVarFlag(task, "depends", " openssl-native:do_populate_sysroot")
    return [f"{path}:True" for path in sign[1:] if path]


def sign_output(d: Any, output: str) -> str:
    """Task time: sign the image *output* if signing is set; what was done ("" if not)."""
    sign = signing_files(d)
    if sign is None:
        return ""
    key, cert, chain = sign
    if not os.path.isfile(key):
        raise XenguestError(f"{SIGN_KEY}: the key file does not exist")
    member, signer = signing.sign(output, key, cert, chain)
    return f"signed by {signer.subject} ({member})"

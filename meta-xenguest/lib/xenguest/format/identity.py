"""The identity of an image: which product it is for, and which version it is.

Two parameters of ``params.cfg`` hold it, so that the manifest and the
signatures cover it and every reader of params.cfg reads it (older tools keep
them as any other parameter; init scripts get them in their environment):

* ``GUEST_COMPATIBLE`` — the product the image is for.  ``xenguest-manager
  update`` refuses an image whose compatible string is not the guest's (an
  image without one has the empty string) unless forced;
* ``GUEST_VERSION`` — the version of the image, shown by ``info`` and by the
  manager's ``status``; never compared (any version may replace any other).

Both are 1 to 128 characters: ASCII letters and digits, then also ``.``,
``_``, ``+``, ``-``, ``~``, ``:`` and ``/`` (``acme/gateway``,
``5.0.3+snapshot-1a2b``, ``2:1.4~rc1``).  The image checks, the editing
options, the build class and the manager all read them through this module.
"""

import re
from dataclasses import dataclass
from typing import Dict, Optional

from ..errors import XenguestError
from ..shellvars import ShellVarFile

COMPATIBLE_PARAM = "GUEST_COMPATIBLE"
VERSION_PARAM = "GUEST_VERSION"
PARAMS = (COMPATIBLE_PARAM, VERSION_PARAM)

_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~:/-]{0,127}\Z", re.ASCII)
_WHAT = {COMPATIBLE_PARAM: "compatible string", VERSION_PARAM: "version"}


def check_value(param: str, value: str) -> str:
    """Return *value* if it can be the value of identity parameter *param*, else raise
    XenguestError naming what is wrong."""
    if not _VALUE.match(value):
        raise XenguestError(
            f"invalid {_WHAT[param]} {value!r}: 1 to 128 ASCII letters, digits, '.', '_', "
            "'+', '-', '~', ':' or '/', starting with a letter or a digit")
    return value


@dataclass(frozen=True)
class Identity:
    """The compatible string and version of an image ("" when it has none)."""

    compatible: str = ""
    version: str = ""

    def as_dict(self) -> Dict[str, Optional[str]]:
        """JSON-ready: absent values are None."""
        return {"compatible": self.compatible or None, "version": self.version or None}

    def describe(self) -> str:
        """``version 2 of acme/gateway``, for messages."""
        version = f"version {self.version}" if self.version else "no version"
        return f"{version} of {self.compatible!r}" if self.compatible else \
            f"{version}, no compatible string"


def identity_of(params: ShellVarFile) -> Identity:
    """The identity held by *params* (params.cfg); XenguestError for a wrong value."""
    values = {}
    for param in PARAMS:
        value = params.get(param) or ""
        values[param] = check_value(param, value) if value else ""
    return Identity(values[COMPATIBLE_PARAM], values[VERSION_PARAM])

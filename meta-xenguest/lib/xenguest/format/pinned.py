"""Reading a verified image: exactly the bytes that were verified, or an error.

Verifying an image and then reading it again leaves a gap: another process
may rename a file of a directory image, or overwrite a file image in place,
in between.  Once an image is pinned (:meth:`Image.pin
<xenguest.image.Image.pin>`, which :func:`~xenguest.format.signing.verify_signed`
calls before it reads the manifest):

* the manifest, the signatures and every configuration file are read once
  and kept in memory: every later reader gets those bytes;
* every member listed in the manifest is hashed on the very read that uses
  it — kept, copied (:meth:`Image.copy_to_fd`) or streamed
  (:meth:`Image.open_member`) — and a member whose content differs from the
  manifest raises :class:`ChangedError`: what was read is then to be thrown
  away (the manager undoes the guest);
* a member the manifest does not cover is read only if it was kept (a
  signature that was checked), else refused.
"""

import hashlib
import io
from typing import Any, BinaryIO, Dict, Optional

from ..errors import ImageError
from . import layout, manifest


class ChangedError(ImageError):
    """A member of a pinned image is not what its manifest says."""


class Pin:
    """The manifest a pinned image is held to, and the members kept in memory."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.kept: Dict[str, bytes] = {}
        self._lines: Optional[Dict[str, manifest.Line]] = None

    def _line(self, name: str) -> manifest.Line:
        if self._lines is None:
            data = self.kept.get(layout.MANIFEST_MEMBER)
            if data is None:
                raise ChangedError(f"{self.where}: {name}: no manifest was read to check it "
                                   "against")
            self._lines = manifest.parse(data, f"{self.where}: {layout.MANIFEST_MEMBER}")
        line = self._lines.get(name)
        if line is None:
            raise ChangedError(f"{self.where}: {name}: not listed in the verified manifest: "
                               "refused")
        return line

    def hasher(self, name: str) -> Any:
        """A hash object for member *name*'s content, read next; ChangedError for a
        member the manifest does not cover (and that was not kept)."""
        if not manifest.covered(name):
            raise ChangedError(f"{self.where}: {name}: not covered by the manifest: refused")
        self._line(name)
        return hashlib.sha256()

    def check(self, name: str, size: int, digest: Any) -> None:
        """ChangedError unless *size* bytes hashed into *digest* are member *name*'s."""
        line = self._line(name)
        if line.size != size or line.digest != digest.hexdigest():
            raise ChangedError(f"{self.where}: {name}: changed since it was verified (it "
                               "differs from the signed manifest): refused")

    def keep(self, name: str, data: bytes) -> bytes:
        """Keep *data*, read as member *name* (checked if the manifest covers it)."""
        if manifest.covered(name):
            self.check(name, len(data), hashlib.sha256(data))
        self.kept[name] = data
        return data


class CheckedReader(io.RawIOBase):
    """Reads *stream* (member *name* of a pinned image), hashing what passes;
    :meth:`finish` reads the rest and checks the whole."""

    def __init__(self, pin: Pin, name: str, stream: BinaryIO) -> None:
        super().__init__()
        self._pin, self._name, self._stream = pin, name, stream
        self._hash = pin.hasher(name)
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        count = self._stream.readinto(buf)  # type: ignore[attr-defined]
        self._hash.update(memoryview(buf)[:count])
        self._count += count
        return count

    def finish(self) -> None:
        buf = bytearray(1 << 20)
        while self.readinto(buf):
            pass
        self._pin.check(self._name, self._count, self._hash)

"""The digest manifest of an image: ``xenguest.manifest``.

The manifest lists every regular file of the image except itself and the
signatures (``signatures/``), in the canonical member order, one line each::

    xenguest-manifest 1
    sha256:<64 lowercase hex digits> <size in bytes> <mode, 4 octal digits> <name>

The first line names the grammar version.  Fields are separated by one space;
the name is the rest of the line (it may hold spaces, never a newline) and is
the logical member name (``guest.cfg``, ``disk/rootfs.tar.gz``).  Folders are
not listed: they carry no content and their mode is fixed.  Every line ends
with a newline, so that ``tail -n +2 | while read -r digest size mode name``
reads it in a shell, and the bytes are the same for the same content: the
manifest is what signatures sign.

The writers compute the digests while they copy the content (see
:class:`Builder`); :func:`verify` recomputes them, one streaming read per member.
"""

import hashlib
import re
from typing import Dict, Iterable, List, NamedTuple, Tuple

from ..errors import ImageError
from . import layout

HEADER = "xenguest-manifest 1"
ALGORITHM = "sha256"
_LINE = re.compile(r"sha256:([0-9a-f]{64}) (0|[1-9][0-9]*) ([0-7]{4}) ([^\n]+)\Z")


class Line(NamedTuple):
    """One member as the manifest lists it."""

    digest: str
    size: int
    mode: int
    name: str

    def text(self) -> str:
        return f"{ALGORITHM}:{self.digest} {self.size} {self.mode:04o} {self.name}\n"


class Finding(NamedTuple):
    """A difference between the manifest and the image: *kind* is missing, extra
    or different."""

    kind: str
    name: str
    detail: str

    def as_dict(self) -> Dict[str, str]:
        return {"kind": self.kind, "name": self.name, "detail": self.detail}


def covered(name: str) -> bool:
    """Whether member *name* is listed in the manifest."""
    return name != layout.MANIFEST_MEMBER and layout.folder_of(name) != layout.SIGNATURES


def _check_name(name: str) -> None:
    if "\n" in name or "\r" in name:
        raise ImageError(f"member name {name!r} holds a line break: it cannot be listed "
                         "in the manifest")


def line_size(name: str, size: int) -> int:
    """Length in bytes of the line of a member (the digest's value does not matter)."""
    _check_name(name)
    return len(Line("0" * 64, size, 0, name).text().encode("utf-8", "surrogateescape"))


def render(lines: Iterable[Line]) -> bytes:
    """The manifest holding *lines*, in canonical order."""
    ordered = sorted(lines, key=lambda line: layout.order_key(line.name))
    text = HEADER + "\n" + "".join(line.text() for line in ordered)
    return text.encode("utf-8", "surrogateescape")


def rendered_size(members: Iterable[Tuple[str, int]]) -> int:
    """Size of the manifest of *members* ((name, size) pairs), known before hashing."""
    return len(HEADER) + 1 + sum(line_size(n, s) for n, s in members)


def parse(data: bytes, where: str) -> Dict[str, Line]:
    """The lines of manifest *data* by name; ImageError naming *where* and the line."""
    text = data.decode("utf-8", "surrogateescape")
    if not text.endswith("\n"):
        raise ImageError(f"{where}: damaged manifest: it does not end with a newline")
    rows = text[:-1].split("\n")
    if rows[0] != HEADER:
        raise ImageError(f"{where}:1: not a manifest this tool reads (expected {HEADER!r})")
    lines: Dict[str, Line] = {}
    for number, row in enumerate(rows[1:], 2):
        match = _LINE.match(row)
        if not match:
            raise ImageError(f"{where}:{number}: damaged manifest line {row[:80]!r}")
        line = Line(match[1], int(match[2]), int(match[3], 8), match[4])
        if line.name in lines or not covered(line.name):
            raise ImageError(f"{where}:{number}: {line.name!r} may not be listed here")
        lines[line.name] = line
    return lines


class Builder:
    """Collects the lines of a new manifest while the members are written."""

    def __init__(self) -> None:
        self._pending: Dict[str, Tuple[int, int, "hashlib._Hash"]] = {}
        self._lines: Dict[str, Line] = {}

    def hasher(self, name: str, size: int, mode: int) -> "hashlib._Hash":
        """A hash object the writer feeds member *name*'s content into."""
        _check_name(name)
        digest = hashlib.sha256()
        self._pending[name] = (size, mode, digest)
        return digest

    def keep(self, line: Line) -> None:
        """List an unchanged member with its line of the previous manifest."""
        self._lines[line.name] = line

    def lines(self) -> List[Line]:
        lines = dict(self._lines)
        for name, (size, mode, digest) in self._pending.items():
            lines[name] = Line(digest.hexdigest(), size, mode, name)
        return list(lines.values())

    def render(self) -> bytes:
        return render(self.lines())

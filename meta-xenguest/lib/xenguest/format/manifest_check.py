"""An image held against its manifest: names, sizes, modes and content digests.

The manifest's own format is :mod:`.manifest`; this reads it from an image and
compares (:mod:`.image` imports the manifest, not this).
"""

import hashlib
import os
from typing import TYPE_CHECKING, Dict, List, Optional

from . import layout, streams
from .manifest import Finding, Line, covered, parse

if TYPE_CHECKING:  # pragma: no cover
    from .image import Image


def read(image: "Image", where: str = "") -> Optional[Dict[str, Line]]:
    """The manifest of *image*, None if it has none; ImageError (naming *where*,
    by default the image and the member) if it is damaged."""
    if not image.exists(layout.MANIFEST_MEMBER):
        return None
    return parse(image.read_bytes(layout.MANIFEST_MEMBER),
                 where or f"{image.path}: {layout.MANIFEST_MEMBER}")


def compare_metadata(image: "Image", lines: Dict[str, Line]) -> List[Finding]:
    """Differences in names, sizes and modes (no content is read)."""
    findings = []
    names = [n for n in image.names() if covered(n)]
    for name in names:
        entry = image.entry(name)
        line = lines.get(name)
        if line is None:
            findings.append(Finding("extra", name, "not listed in the manifest"))
        elif line.size != entry.size:
            findings.append(Finding("different", name, f"{entry.size} bytes, the manifest "
                                                       f"says {line.size}"))
        elif line.mode != entry.mode:
            findings.append(Finding("different", name, f"mode {entry.mode:04o}, the "
                                                       f"manifest says {line.mode:04o}"))
    present = set(names)
    findings += [Finding("missing", n, "listed in the manifest but not in the image")
                 for n in sorted(lines, key=layout.order_key) if n not in present]
    return findings


def digest_of(image: "Image", name: str) -> str:
    """SHA-256 (hex) of member *name*'s content, read once, streaming."""
    entry = image.entry(name)
    digest = hashlib.sha256()
    if entry.data is not None:
        digest.update(entry.data)
    elif entry.member is not None:
        assert image.index is not None
        member = image.index.file_member(entry.member)
        streams.hash_fd(image.index.fd, member.data_offset, member.size, digest)
    else:
        fd = os.open(entry.path, os.O_RDONLY)
        try:
            streams.hash_fd(fd, 0, entry.size, digest)
        finally:
            os.close(fd)
    return digest.hexdigest()


def verify(image: "Image", lines: Dict[str, Line]) -> List[Finding]:
    """Every difference between *image* and its manifest *lines*, content included."""
    findings = compare_metadata(image, lines)
    flagged = {f.name for f in findings}
    for name in image.names():
        if covered(name) and name not in flagged and digest_of(image, name) != lines[name].digest:
            findings.append(Finding("different", name, "content differs from the manifest "
                                                        "(SHA-256 mismatch)"))
    return findings

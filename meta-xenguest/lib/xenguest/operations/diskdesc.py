"""The disk an image describes, identified: its content digests and description digest.

A prebuilt disk records the :func:`~xenguest.disk.identity.description_digest`
of the description and content it was built from (``DISK_PREBUILT_FROM``);
the disk identifiers of a built disk are derived from the same digest (see
:mod:`xenguest.disk.identity`).  The SHA-256 of a content file is its line of
the image's manifest when the file is as the manifest lists it, else computed
(one streaming read: an image without a manifest, a file added by the edit in
progress).  A computed digest is remembered for as long as the image holds the
same entry, so the checks that follow an edit do not read the content again.
"""

import weakref
from typing import Dict, Optional, Tuple

from ..disk.config import DiskConfig
from ..disk.identity import description_digest
from ..errors import XenguestError
from ..format import layout, manifest_check
from ..format.image import Entry, Image
from ..format.manifest import Line

#: Per image: member name -> (the entry hashed, whether the image was pinned, digest).
_COMPUTED: "weakref.WeakKeyDictionary[Image, Dict[str, Tuple[Entry, bool, str]]]" = \
    weakref.WeakKeyDictionary()


def _manifest(image: Image) -> Optional[Dict[str, Line]]:
    try:
        return manifest_check.read(image)
    except XenguestError:
        return None  # a damaged manifest is check's business: compute the digests


def content_digests(image: Image, disk: DiskConfig) -> Dict[str, str]:
    """SHA-256 (hex) of each partition content file of *disk*, by content name."""
    lines = None
    found: Dict[str, str] = {}
    for part in disk.partitions.values():
        if not part.content or part.content in found:
            continue
        member = f"{layout.DISK}/{part.content}"
        if lines is None:
            lines = _manifest(image) or {}
        line = lines.get(member)
        entry = image.entry(member)
        if line is not None and image.unchanged(member) and line.size == entry.size:
            found[part.content] = line.digest
        else:
            found[part.content] = _computed_digest(image, member, entry)
    return found


def _computed_digest(image: Image, member: str, entry: Entry) -> str:
    computed = _COMPUTED.setdefault(image, {})
    known = computed.get(member)
    if known is not None and known[0] is entry and known[1] == image.pinned:
        return known[2]
    digest = manifest_check.digest_of(image, member)
    computed[member] = (entry, image.pinned, digest)
    return digest


def image_description(image: Image, disk: DiskConfig) -> str:
    """The description digest of *disk* with the content *image* holds."""
    return description_digest(disk, content_digests(image, disk))

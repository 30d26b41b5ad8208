"""The disk an image describes, identified: its content digests and description digest.

A prebuilt disk records the :func:`~xenguest.disk.identity.description_digest`
of the description and content it was built from (``DISK_PREBUILT_FROM``);
the disk identifiers of a built disk are derived from the same digest (see
:mod:`xenguest.disk.identity`).  The SHA-256 of a content file is its line of
the image's manifest when the file is as the manifest lists it, else computed
(one streaming read: an image without a manifest, a file added by the edit in
progress).
"""

from typing import Dict, Optional

from ..disk.config import DiskConfig
from ..disk.identity import description_digest
from ..errors import XenguestError
from ..format import layout, manifest_check
from ..format.image import Image
from ..format.manifest import Line


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
            found[part.content] = manifest_check.digest_of(image, member)
    return found


def image_description(image: Image, disk: DiskConfig) -> str:
    """The description digest of *disk* with the content *image* holds."""
    return description_digest(disk, content_digests(image, disk))

"""What makes a built guest disk the same bytes every time: derived identifiers, one time.

The tools that build a disk pick some values at random or from the clock: the
msdos disk identifier (sfdisk), ext2/3/4 UUIDs, directory hash seeds and time
stamps (mke2fs, debugfs), FAT volume IDs (mkfs.vfat), swap UUIDs (mkswap), and
mtools writes FAT times in local time.  A :class:`DiskIdentity` gives each of
them a value derived from a seed instead, and one time for all (with TZ=UTC):
the same description, content and time give a byte-identical disk.

The seed is derived from :func:`description_digest` — the disk's size, its
partitions and the SHA-256 of each partition's content — and the time.  Two
disks made from the same image share their identifiers, as copies of one disk
image do; they are never visible to one kernel together (dom0 attaches guest
disks without scanning their partitions).
"""

import hashlib
from dataclasses import dataclass
from typing import Dict, Mapping

from .config import DiskConfig

#: The grammar of :func:`description_digest`'s text: a new one changes every digest.
DESCRIPTION_VERSION = "xenguest-disk 1"


def description_digest(disk: DiskConfig, content_digests: Mapping[str, str]) -> str:
    """``sha256:<hex>`` of the disk's layout and content.

    *content_digests* maps each partition content name to the SHA-256 (hex) of
    its bytes as stored in ``disk/``.
    """
    lines = [DESCRIPTION_VERSION, f"size {disk.size_mib}"]
    for number in sorted(disk.partitions):
        part = disk.partitions[number]
        digest = content_digests[part.content] if part.content else "-"
        lines.append(f"part {number} {part.size_mib} {part.fs or '-'} "
                     f"{part.content or '-'} {digest}")
    text = "\n".join(lines) + "\n"
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DiskIdentity:
    """Identifiers and time of one disk, derived from *seed*; *epoch* is the time
    (seconds since 1970) written wherever the tools write a time."""

    seed: bytes
    epoch: int

    @classmethod
    def derive(cls, description: str, epoch: int) -> "DiskIdentity":
        """The identity of the disk :func:`description_digest` describes, made at *epoch*."""
        seed = hashlib.sha256(f"{description}\n{epoch}\n".encode("utf-8")).digest()
        return cls(seed, epoch)

    def _bytes(self, what: str, number: int) -> bytes:
        return hashlib.sha256(self.seed + f"\n{what} {number}".encode("ascii")).digest()

    def uuid(self, what: str, number: int) -> str:
        """A random-looking (version 4) UUID for *what* of partition *number*."""
        raw = bytearray(self._bytes(what, number)[:16])
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        text = raw.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def disk_id(self) -> str:
        """The msdos disk identifier (sfdisk ``label-id``), never 0."""
        value = int.from_bytes(self._bytes("label-id", 0)[:4], "big") or 1
        return f"0x{value:08x}"

    def volume_id(self, number: int) -> str:
        """The FAT volume ID of partition *number* (``mkfs.vfat -i``), 8 hex digits."""
        return self._bytes("volume-id", number)[:4].hex()

    def environment(self) -> Dict[str, str]:
        """What the tools read the time from: e2fsprogs' fake time; UTC for mtools."""
        return {"E2FSPROGS_FAKE_TIME": str(self.epoch), "TZ": "UTC"}

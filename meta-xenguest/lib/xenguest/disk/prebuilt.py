"""Facts about a prebuilt disk read from its first bytes, without decompressing it.

* :func:`zstd_content_size` — the size a zstd frame says its content has (its
  header records it when the compressor knew the input size, as ``zstd FILE`` does);
* :func:`table_problem` — whether a disk's first sector holds the msdos
  partition table its description asks for.

No program is run and nothing is imported that runs one: ``check`` uses these.
"""

from typing import Iterable, Optional, Tuple

from ..errors import DiskConfigError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: Bytes enough for any zstd frame header (magic, descriptor, window, dictionary, size).
ZSTD_HEADER_MAX = 18
SECTOR = 512
_FCS_BYTES = (0, 2, 4, 8)
_DICT_BYTES = (0, 1, 2, 4)

#: A partition as a table holds it: number (1-4), first sector, sectors, type code.
TableEntry = Tuple[int, int, int, int]


def zstd_content_size(head: bytes) -> Optional[int]:
    """The content size recorded in the zstd frame header at the start of *head*
    (None when the frame does not record it); DiskConfigError if *head* does not
    start with a zstd frame."""
    if not head.startswith(ZSTD_MAGIC) or len(head) < 5:
        raise DiskConfigError("not zstd data (no zstd frame at its start)")
    descriptor = head[4]
    fcs_flag, single_segment, dict_flag = descriptor >> 6, descriptor >> 5 & 1, descriptor & 3
    if descriptor & 0x08:
        raise DiskConfigError("not zstd data (a reserved bit of its frame header is set)")
    fcs_size = _FCS_BYTES[fcs_flag] or (1 if single_segment else 0)
    start = 5 + (0 if single_segment else 1) + _DICT_BYTES[dict_flag]
    if not fcs_size:
        return None
    field = head[start:start + fcs_size]
    if len(field) < fcs_size:
        raise DiskConfigError("truncated zstd frame header")
    size = int.from_bytes(field, "little")
    return size + 256 if fcs_size == 2 else size


def table_entries(sector: bytes) -> Optional[Tuple[TableEntry, ...]]:
    """The used entries of the msdos partition table in *sector* (None: no table)."""
    if len(sector) < SECTOR or sector[510:512] != b"\x55\xaa":
        return None
    found = []
    for index in range(4):
        entry = sector[446 + 16 * index:462 + 16 * index]
        kind = entry[4]
        start = int.from_bytes(entry[8:12], "little")
        count = int.from_bytes(entry[12:16], "little")
        if kind or start or count:
            found.append((index + 1, start, count, kind))
    return tuple(found)


def table_problem(sector: bytes, wanted: Iterable[TableEntry]) -> Optional[str]:
    """Why the msdos table in *sector* is not exactly *wanted*, or None if it is."""
    wanted = tuple(wanted)
    found = table_entries(sector)
    if found is None:
        return "its first sector holds no msdos partition table"
    if found == wanted:
        return None
    described = {n: (s, c, k) for n, s, c, k in wanted}
    for number, start, count, kind in found:
        if number not in described:
            return f"it has a partition {number}, which the description does not"
        want_start, want_count, want_kind = described.pop(number)
        if (start, count) != (want_start, want_count):
            return (f"its partition {number} spans sectors {start}+{count}, the description "
                    f"says {want_start}+{want_count}")
        if kind != want_kind:
            return (f"its partition {number} has type {kind:x}, the description asks for "
                    f"{want_kind:x}")
    missing = min(described)
    return f"it has no partition {missing}, which the description has"

"""The tar headers a file image may hold: the subset every tar reader reads alike.

GNU tar, busybox tar and Python's tarfile read many headers differently: a
name ending in ``/`` is a folder for GNU tar and Python, a file for busybox; a
link name on a regular file makes it a hard link for busybox only; busybox
ignores pax sizes and reads the ustar prefix of GNU headers, GNU tar does not;
``-1``, ``1_0`` or a base-256 value with stray bits are numbers for some and
errors for others.  An image is run as root on hosts whose consumers use all
three, so this module accepts only headers they all read the same way, and
refuses everything else with a reason (:class:`HeaderError`):

* the magic of GNU tar (``ustar  \\0``) or POSIX ustar (``ustar\\0`` ``00``);
* a checksum equal to the unsigned sum of the header (not the signed one);
* numbers in octal digits, optionally led by spaces, ended by spaces or NULs
  (no sign, no other character); base 256 (first byte 0x80) for the size
  only; a mode of at most 07777; empty device numbers;
* types regular file (``0`` or NUL, its name not ending in ``/``), folder
  (``5``) and GNU long name (``L``, NUL-terminated UTF-8 data); no link name,
  no pax header, nothing in bytes 345-511 (ustar prefix, GNU times, sparse
  map); text fields padded with NULs; owner names in printable ASCII;
* a name in every header (busybox takes a nameless header for a zero block),
  in UTF-8 without control characters, each component at most 255 bytes,
  the whole at most 4095 (what Linux file systems hold).

Where the archive ends, and which paths it holds, is checked by
:class:`xenguest.format.archive.TarIndex`.
"""

import re
from typing import NamedTuple, Optional

BLOCK = 512
#: Longest name accepted, in bytes (Linux's PATH_MAX less its NUL), and component.
MAX_NAME = 4095
MAX_COMPONENT = 255

FILE = "file"
DIR = "dir"
LONG_NAME = "long name"

_MAGICS = (b"ustar  \0", b"ustar\x0000")
_KINDS = {b"0": FILE, b"\0": FILE, b"5": DIR, b"L": LONG_NAME}
_REFUSED = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device",
            b"4": "a block device", b"6": "a FIFO", b"7": "a contiguous file",
            b"S": "a sparse file", b"K": "a GNU long link name",
            b"x": "a pax extended header", b"g": "a pax global header",
            b"V": "a volume label", b"M": "a multi-volume continuation",
            b"D": "a GNU dump directory"}
_NUMBER = re.compile(rb" *([0-7]+)[ \0]+")
_OWNER = re.compile(rb"[\x20-\x7e]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class HeaderError(Exception):
    """A header outside the accepted subset; the message says which and why."""


class NotAHeader(HeaderError):
    """A block that is no tar header at all (no magic, a wrong checksum)."""


class Header(NamedTuple):
    """What a header says: *kind* (FILE, DIR or LONG_NAME), the name field's
    bytes, the size of the data that follows, permission bits and mtime."""

    kind: str
    name: bytes
    size: int
    mode: int
    mtime: int


def shown(name: bytes) -> str:
    """A member name for messages (undecodable bytes as escapes)."""
    return name.decode("utf-8", "backslashreplace")


def _text(block: bytes, start: int, length: int, what: str) -> bytes:
    """A text field: its bytes before the first NUL, the rest of it NULs."""
    text, _, rest = block[start:start + length].partition(b"\0")
    if rest.count(0) != len(rest):
        raise HeaderError(f"{what} field holds data after its end")
    return text


def _number(block: bytes, start: int, length: int, what: str, base256: bool = False) -> int:
    field = block[start:start + length]
    if base256 and field[0] == 0x80:
        return int.from_bytes(field[1:], "big")
    match = _NUMBER.fullmatch(field)
    if not match:
        raise HeaderError(f"invalid {what} field {bytes(field)!r}")
    return int(match.group(1), 8)


def parse(block: bytes) -> Header:
    """Read one 512-byte header block that is not all zeros; HeaderError if refused."""
    if len(block) < BLOCK:
        raise NotAHeader("truncated header")
    if block[257:265] not in _MAGICS:
        raise NotAHeader("not a ustar or GNU tar header")
    try:
        recorded = _number(block, 148, 8, "checksum")
    except HeaderError as e:
        raise NotAHeader(str(e)) from None
    if recorded != sum(block[:148]) + 8 * 32 + sum(block[156:]):
        raise NotAHeader("checksum mismatch")
    name = _text(block, 0, 100, "name")
    if not name:  # busybox takes a header without a name for a zero block
        raise HeaderError("a header without a name")
    typeflag = block[156:157]
    kind = _KINDS.get(typeflag)
    if kind is None:
        what = _REFUSED.get(typeflag, f"of unsupported type {typeflag!r}")
        raise HeaderError(f"unsafe member {shown(name)!r}: it is {what}")
    if _text(block, 157, 100, "link name"):
        raise HeaderError(f"member {shown(name)!r} has a link name: it is no plain "
                          "file or folder")
    mode = _number(block, 100, 8, "mode")
    if mode > 0o7777:
        raise HeaderError(f"mode {mode:o} of {shown(name)!r} is out of range")
    _number(block, 108, 8, "uid")
    _number(block, 116, 8, "gid")
    size = _number(block, 124, 12, "size", base256=True)
    mtime = _number(block, 136, 12, "mtime")
    for start, what in ((265, "owner name"), (297, "group name")):
        if not _OWNER.fullmatch(_text(block, start, 32, what)):
            raise HeaderError(f"{what} of {shown(name)!r} is not printable ASCII")
    for start, what in ((329, "device major"), (337, "device minor")):
        if block[start:start + 8].count(0) != 8:
            _number(block, start, 8, what)
    if block[345:BLOCK].count(0) != BLOCK - 345:
        raise HeaderError(f"member {shown(name)!r} uses header fields tar readers disagree "
                          "on (a ustar name prefix, GNU times or a sparse map)")
    if kind == DIR and size:
        raise HeaderError(f"folder {shown(name)!r} has a size ({size})")
    if kind == LONG_NAME and not 1 < size <= MAX_NAME + 1:
        raise HeaderError(f"long name of {size} bytes")
    return Header(kind, name, size, mode, mtime)


def long_name(data: bytes) -> bytes:
    """The name held by the data of a long-name member (NUL-terminated)."""
    name, nul, rest = data.partition(b"\0")
    if not nul:
        raise HeaderError("long name without its final NUL")
    if rest.count(0) != len(rest):
        whole = shown(data.rstrip(b"\0"))
        raise HeaderError(f"unsafe member {whole!r}: its name contains a NUL character")
    return name


def name_problem(name: str) -> Optional[str]:
    """Why *name* (a path in an image, as decoded with surrogateescape) cannot be a
    member name, or None: UTF-8, no control character, short enough for Linux."""
    try:
        data = name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not UTF-8"
    control = _CONTROL.search(name)
    if control:
        return f"its name holds the control character {control.group()!r}"
    if len(data) > MAX_NAME or any(len(p) > MAX_COMPONENT for p in data.split(b"/")):
        return "its name is too long for a Linux file system"
    return None

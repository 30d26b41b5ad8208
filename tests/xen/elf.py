"""Just enough ELF reading for the harness: shared-library needs and kernel module info.

Works on 64-bit and 32-bit, little- and big-endian files, so it reads arm64 binaries on an
x86_64 host (and the other way round) without binutils.
"""

import struct
from typing import Dict, List, NamedTuple, Optional, Tuple

DT_NEEDED = 1
DT_RPATH = 15
DT_RUNPATH = 29


class Section(NamedTuple):
    name: str
    type: int
    offset: int
    size: int
    link: int


class ElfFile:
    """Sections of one ELF file, read from its bytes."""

    def __init__(self, data: bytes) -> None:
        if data[:4] != b"\x7fELF":
            raise ValueError("not an ELF file")
        self.data = data
        self.is64 = data[4] == 2
        self.endian = "<" if data[5] == 1 else ">"
        self.sections = self._read_sections()

    def _unpack(self, fmt: str, offset: int) -> Tuple[int, ...]:
        return struct.unpack_from(self.endian + fmt, self.data, offset)

    def _read_sections(self) -> List[Section]:
        if self.is64:
            shoff, = self._unpack("Q", 0x28)
            shentsize, shnum, shstrndx = self._unpack("HHH", 0x3A)
            fmt = "IIQQQQIIQQ"
        else:
            shoff, = self._unpack("I", 0x20)
            shentsize, shnum, shstrndx = self._unpack("HHH", 0x2E)
            fmt = "IIIIIIIIII"
        raw = [self._unpack(fmt, shoff + i * shentsize) for i in range(shnum)]
        # (name, type, flags, addr, offset, size, link, info, align, entsize)
        names_at = raw[shstrndx][4] if shstrndx < len(raw) else 0
        sections = []
        for entry in raw:
            sections.append(Section(self._cstring(names_at + entry[0]), entry[1],
                                    entry[4], entry[5], entry[6]))
        return sections

    def _cstring(self, offset: int) -> str:
        end = self.data.find(b"\0", offset)
        return self.data[offset:end].decode("utf-8", "replace")

    def section(self, name: str) -> Optional[Section]:
        for sec in self.sections:
            if sec.name == name:
                return sec
        return None

    def section_bytes(self, sec: Section) -> bytes:
        return self.data[sec.offset:sec.offset + sec.size]

    def dynamic(self) -> Tuple[List[str], List[str]]:
        """(DT_NEEDED names, DT_RUNPATH/DT_RPATH directories) of a dynamic ELF file."""
        dyn = self.section(".dynamic")
        if dyn is None:
            return [], []
        strtab = self.sections[dyn.link]
        fmt, size = ("qQ", 16) if self.is64 else ("iI", 8)
        needed, paths = [], []
        for pos in range(dyn.offset, dyn.offset + dyn.size, size):
            tag, value = self._unpack(fmt, pos)
            if tag == 0:
                break
            if tag == DT_NEEDED:
                needed.append(self._cstring(strtab.offset + value))
            elif tag in (DT_RPATH, DT_RUNPATH):
                paths.extend(self._cstring(strtab.offset + value).split(":"))
        return needed, paths


def is_elf(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"\x7fELF"


def dynamic_info(path: str) -> Tuple[List[str], List[str], Optional[str]]:
    """(NEEDED sonames, run paths, program interpreter) of the ELF file at PATH.

    A static executable gives ([], [], None).
    """
    with open(path, "rb") as handle:
        elf = ElfFile(handle.read())
    needed, paths = elf.dynamic()
    interp = elf.section(".interp")
    program = elf.section_bytes(interp).rstrip(b"\0").decode() if interp else None
    return needed, paths, program


def module_info(path: str) -> Dict[str, List[str]]:
    """The .modinfo entries of a kernel module (.ko), e.g. {'depends': ['llc,stp']}."""
    with open(path, "rb") as handle:
        elf = ElfFile(handle.read())
    sec = elf.section(".modinfo")
    info: Dict[str, List[str]] = {}
    if sec is None:
        return info
    for item in elf.section_bytes(sec).split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return info

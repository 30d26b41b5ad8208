"""``import``: a xenguest image made of an existing xl configuration and its files.

For guests not built with this project (meta-virtualization's bundles, Xen
ImageBuilder, hand-made ones): the configuration becomes ``guest.cfg`` as it is
written (comments kept) but for

* ``kernel``, ``ramdisk`` and ``device_tree``: the files they name are stored
  as ``files/kernel``, ``files/ramdisk.img`` and ``files/guest.dtb``;
* ``disk``: at most one disk, a raw image file (a whole disk with an msdos
  partition table, or one filesystem such as an ext4 file), is stored as the
  image's prebuilt disk (zstd-compressed): DISK_SIZE is its size in MiB
  (padded with zeros to a whole MiB) and its partitions are described when
  disk.cfg can say exactly what its table holds.  The host writes it as it is,
  so ``root=`` stays right: a filesystem file stays a whole-disk filesystem.

Relative paths are relative to the configuration's folder.  Everything else —
``vif``, ``name``, ``memory``, any other key — stays as written.  The editing
options are applied afterwards, as with create.
"""

import os
import tempfile
from typing import BinaryIO, Dict, Iterable, List, Optional, Tuple

from ..disk.config import DiskConfig, Partition
from ..disk.prebuilt import SECTOR, table_entries
from ..errors import XenguestError
from ..fsutil import require_path
from ..programs import Host
from ..xl import config as xlcfg
from . import create
from .editor import PAYLOAD_KEYS, GuestEditor
from .options import Edit
from .render import PREBUILT_NAME, ZSTD_ARGS

MIB = 1 << 20
#: Legacy target prefixes of xl disk specifications and the format they mean.
_PREFIXES = (("tap:aio:", "raw"), ("tap:qcow2:", "qcow2"), ("tap:vhd:", "vhd"),
             ("aio:", "raw"), ("file:", "raw"), ("qcow2:", "qcow2"), ("phy:", "phy"))
_POSITIONAL = ("target", "format", "vdev", "access")
#: Partition types disk.cfg can describe, and the filesystem each means.
_TYPES = {0x83: "", 0x0C: "vfat", 0x82: "swap"}


def parse_disk_spec(spec: str) -> Dict[str, str]:
    """The settings of one xl disk specification (xl-disk-configuration(5)): ``KEY=VALUE``
    items (``target=`` last) and positional ones, ``target, format, vdev, access``
    (three: ``target, vdev, access``; a target prefix such as ``file:`` names the
    format)."""
    settings: Dict[str, str] = {}
    head, sep, target = spec.partition("target=")
    if sep:
        settings["target"] = target.strip()
    positional = []
    for item in (i.strip() for i in head.split(",")):
        key, eq, value = item.partition("=")
        if eq:
            settings[key.strip()] = value.strip()
        elif item == "cdrom":
            settings["devtype"] = "cdrom"
        elif item:
            positional.append(item)
    names = [n for n in _POSITIONAL if n not in settings]
    if len(positional) == 3 and len(names) == 4:
        names.remove("format")
    if len(positional) > len(names):
        raise XenguestError(f"disk {spec!r}: cannot read {positional[len(names)]!r}")
    settings.update(zip(names, positional))
    vdev, colon, devtype = settings.get("vdev", "").partition(":")
    if colon:
        settings["vdev"], settings["devtype"] = vdev, devtype
    for prefix, kind in _PREFIXES:
        if settings.get("target", "").startswith(prefix):
            settings["target"] = settings["target"][len(prefix):]
            settings.setdefault("format", kind)
    settings.setdefault("format", "raw")
    return settings


def _disk_file(config_dir: str, value: xlcfg.Value) -> Tuple[Optional[str], List[str]]:
    """The one raw disk file of the ``disk`` setting (None: none), and notes."""
    specs = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if specs is None or not all(isinstance(s, str) for s in specs):
        raise XenguestError(f"disk = {xlcfg.format_value(value)}: expected a list of disk "
                            "specifications")
    if len(specs) > 1:
        raise XenguestError(f"disk: {len(specs)} disks, but a xenguest image holds one "
                            "(write the guest's disks into one, or leave the others out)")
    notes: List[str] = []
    if not specs:
        return None, notes
    spec = specs[0]
    settings = parse_disk_spec(str(spec))
    if settings.get("devtype") == "cdrom":
        raise XenguestError(f"disk {spec!r}: a CD-ROM cannot be the guest's disk")
    if settings["format"] == "phy":
        raise XenguestError(f"disk {spec!r}: a host device: copy it into a file first "
                            "(e.g. with dd) and name the file")
    if settings["format"] != "raw":
        raise XenguestError(f"disk {spec!r}: format {settings['format']}: convert it to "
                            "a raw image first (qemu-img convert -O raw)")
    vdev = settings.get("vdev", "")
    if vdev and vdev != "xvda":
        notes.append(f"the disk was {vdev}; the host attaches it as xvda")
    return _path(config_dir, settings.get("target", ""), "disk"), notes


def _path(config_dir: str, path: str, key: str) -> str:
    full = os.path.join(config_dir, path)
    if not path or not os.path.isfile(full):
        raise XenguestError(f"{key}: {path!r} is not a file" + (
            f" (relative to {config_dir})" if path and not os.path.isabs(path) else ""))
    return full


def _fs_of(head: bytes) -> str:
    """The filesystem a partition's first bytes hold, as disk.cfg names it ("": other)."""
    if head[1080:1082] == b"\x53\xef":
        compat = int.from_bytes(head[1116:1120], "little")
        incompat = int.from_bytes(head[1120:1124], "little")
        return "ext4" if incompat & 0x40 else "ext3" if compat & 0x4 else "ext2"
    return ""


def describe_disk(path: str) -> Tuple[DiskConfig, List[str]]:
    """disk.cfg's description of the raw disk file *path*, and notes."""
    size = os.path.getsize(path)
    disk = DiskConfig(size_mib=-(-size // MIB))
    with open(path, "rb") as f:
        sector = f.read(SECTOR)
        is_fat = sector[54:59] == b"FAT12" or sector[54:59] == b"FAT16" or \
            sector[82:87] == b"FAT32"
        entries = None if is_fat else table_entries(sector)
        if not entries:
            return disk, []
        start = 1
        for number, first, count, kind in entries:
            if kind not in _TYPES or first != start * 2048 or count % 2048:
                return DiskConfig(size_mib=disk.size_mib), [
                    "its partition table is not one disk.cfg can describe (partitions "
                    "from 1 MiB on, one after the other, whole MiB, types 83, c or 82): the "
                    "disk is stored as it is, its partitions left undescribed"]
            fs = _TYPES[kind]
            if kind == 0x83:
                f.seek(first * SECTOR)
                fs = _fs_of(f.read(2048))
            disk.partitions[number] = Partition(number, count // 2048, fs)
            start += count // 2048
    return disk, []


def _compress(path: str, dest: str, size: int, host: Host) -> None:
    """*path*, padded with zeros to *size* bytes, compressed by zstd into *dest*
    (its size recorded in the header)."""

    def feed(pipe: BinaryIO) -> None:
        with open(path, "rb") as src:
            while True:
                chunk = src.read(MIB)
                if not chunk:
                    break
                pipe.write(chunk)
            left = size - src.tell()
        while left > 0:
            pipe.write(bytes(min(left, MIB)))
            left -= MIB

    host.run_feeding("zstd", ZSTD_ARGS + [f"--stream-size={size}", "-o", dest], feed)


def import_guest(config: str, image: str, edits: Iterable[Edit] = (),
                 host: Optional[Host] = None) -> List[str]:
    """Make the image *image* (a file, replaced atomically, or an empty folder) of the
    xl configuration file *config* and the files it names, then apply *edits*;
    return notes for the user."""
    require_path(config, "configuration")
    try:
        with open(config, encoding="utf-8") as f:
            document = xlcfg.XlConfig.parse(f.read(), os.path.basename(config))
    except (OSError, UnicodeDecodeError) as e:
        raise XenguestError(f"{config}: {getattr(e, 'strerror', None) or e}") from None
    config_dir = os.path.dirname(os.path.abspath(config))
    values = xlcfg.merge([document])
    payloads = {key: _path(config_dir, values[key], key) for key in PAYLOAD_KEYS
                if isinstance(values.get(key), str)}
    disk_path, notes = _disk_file(config_dir, values["disk"]) if "disk" in values else (None, [])
    document.remove("disk")
    for key in payloads:
        document.remove(key)
    host = host or Host()
    folder = os.path.dirname(os.path.abspath(image))
    with tempfile.TemporaryDirectory(prefix=".xenguest-import-", dir=folder) as work:
        disk: Optional[DiskConfig] = None
        packed = os.path.join(work, PREBUILT_NAME)
        if disk_path is not None:
            disk, more = describe_disk(disk_path)
            notes += more
            host.require({"zstd"})
            _compress(disk_path, packed, disk.size_mib * MIB, host)

        def prepare(editor: GuestEditor) -> None:
            editor.replace_guest_cfg(document)
            for key, path in payloads.items():
                editor.set_payload(key, path)
            if disk is not None:
                editor.disk.size_mib = disk.size_mib
                editor.disk.partitions = dict(disk.partitions)
                editor.add_prebuilt(packed)

        create(image, edits, prepare=prepare)
    return notes

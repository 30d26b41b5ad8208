"""Edits of a guest's definition: one method per ``xenguest-mkimage`` option.

A :class:`GuestEditor` works on an :class:`~xenguest.format.image.Image` in memory:
the configuration files are parsed once, edited through their own grammars
(xl, shell variables, disk description) and written back by :meth:`flush`.
Nothing reaches the disk before the image is committed.

Settings written by options go to ``guest.cfg``; every other assignment of
the same key in ``guest.cfg`` and ``guest.d/`` is removed so that the merged
configuration holds exactly the value given (images of the earlier tool keep
``kernel``, ``device_tree`` and ``ramdisk`` in ``guest.d/<key>.cfg``).
"""

import os
from typing import Dict, List, Optional, Tuple

from ..digits import whole_number
from ..disk.config import DiskConfig, Partition, check_device, check_prebuilt_name, parse_size
from ..errors import XenguestError
from ..format import identity, layout
from ..format.image import Image
from ..shellvars import ShellVarFile, is_reserved, valid_name
from ..xl import config as xlcfg

#: xl keys set by the file options, and where the file is stored.
PAYLOAD_KEYS: Dict[str, str] = {
    "kernel": layout.KERNEL_MEMBER,
    "device_tree": layout.DEVICE_TREE_MEMBER,
    "ramdisk": layout.RAMDISK_MEMBER,
}


def _positive_int(value: str, what: str) -> int:
    number = whole_number(value.strip(" \t"))
    if number is None or number <= 0:
        raise XenguestError(f"{what} must be a positive whole number, not {value!r}")
    return number


def split_source(value: str) -> Tuple[str, Optional[str]]:
    """Split ``SRC[:DST]`` at its last colon (a source path may not end in ``:NAME``)."""
    src, sep, dst = value.rpartition(":")
    if not sep or not src:
        return value, None
    return src, dst


class GuestEditor:
    """Applies option-level edits to an image's configuration."""

    def __init__(self, image: Image) -> None:
        self.image = image
        self._xl: Dict[str, xlcfg.XlConfig] = {}
        self._params: Optional[ShellVarFile] = None
        self._disk_vars: Optional[ShellVarFile] = None
        self._disk: Optional[DiskConfig] = None

    # -- parsed configuration, loaded on first use ------------------------

    def _xl_doc(self, name: str) -> xlcfg.XlConfig:
        if name not in self._xl:
            if self.image.exists(name):
                self._xl[name] = xlcfg.XlConfig.parse(self.image.read_text(name), name)
            else:
                self._xl[name] = xlcfg.XlConfig.empty(name)
        return self._xl[name]

    def xl_documents(self) -> List[xlcfg.XlConfig]:
        """guest.cfg then the guest.d fragments in sorted order."""
        names = [layout.GUEST_CFG] + self.image.files_in(layout.GUEST_D)
        return [self._xl_doc(n) for n in names]

    def xl_merged(self) -> Dict[str, xlcfg.Value]:
        return xlcfg.merge(self.xl_documents())

    @property
    def params(self) -> ShellVarFile:
        if self._params is None:
            if self.image.exists(layout.PARAMS):
                text = self.image.read_text(layout.PARAMS)
                self._params = ShellVarFile.parse(text, layout.PARAMS)
            else:
                self._params = ShellVarFile.parse(layout.default_params(), layout.PARAMS)
        return self._params

    @property
    def disk(self) -> DiskConfig:
        if self._disk is None:
            if self.image.exists(layout.DISK_CFG):
                text = self.image.read_text(layout.DISK_CFG)
            else:
                text = layout.default_disk_cfg()
            self._disk_vars = ShellVarFile.parse(text, layout.DISK_CFG)
            self._disk = DiskConfig.from_vars(self._disk_vars)
        return self._disk

    def flush(self) -> None:
        """Write the edited configuration files back into the image (in memory)."""
        for name, doc in self._xl.items():
            if name != layout.GUEST_CFG and doc.is_empty() and not self.image.exists(name):
                continue
            self.image.write_text(name, doc.render())
        if self._params is not None:
            self.image.write_text(layout.PARAMS, self._params.render())
        if self._disk is not None and self._disk_vars is not None:
            self._disk.to_vars(self._disk_vars)
            self.image.write_text(layout.DISK_CFG, self._disk_vars.render())

    # -- xl settings -------------------------------------------------------

    def xl_set(self, key: str, value: Optional[xlcfg.Value]) -> None:
        """Give *key* exactly *value* in the merged configuration (None removes it)."""
        if not xlcfg.valid_key(key):
            raise XenguestError(f"invalid xl key {key!r}")
        for doc in self.xl_documents()[1:]:
            if doc.remove(key) and doc.is_empty():
                # A fragment that only held this key (the earlier tool's
                # guest.d/<key>.cfg) goes away with it.
                self.image.remove(doc.source)
                del self._xl[doc.source]
        main = self._xl_doc(layout.GUEST_CFG)
        if value is None:
            main.remove(key)
        else:
            main.set(key, value)

    def set_memory(self, value: str) -> None:
        self.xl_set("memory", _positive_int(value, "memory (MB)"))

    def set_vcpus(self, value: str) -> None:
        self.xl_set("vcpus", _positive_int(value, "the number of vcpus"))

    def set_name(self, value: str) -> None:
        if value and not layout.GUEST_NAME.match(value):
            raise XenguestError(
                f"invalid guest name {value!r}: up to 64 letters, digits and . _ - "
                "starting with a letter or digit"
            )
        self.xl_set("name", value or None)

    def set_root(self, value: str) -> None:
        self.xl_set("root", value or None)

    def set_xl_disk(self, value: str) -> None:
        self.xl_set("disk", [f"phy:{value},xvda,w"] if value else None)

    def _cmdline_key(self) -> str:
        return "cmdline" if "cmdline" in self.xl_merged() else "extra"

    def add_extra(self, argument: str) -> None:
        """Append one argument to the kernel command line (``extra``)."""
        if not argument.strip():
            raise XenguestError("the kernel argument is empty")
        key = self._cmdline_key()
        current = self.xl_merged().get(key, "")
        if not isinstance(current, str):
            raise XenguestError(f"{key} is a list in the xl configuration, not a string")
        self.xl_set(key, f"{current} {argument}" if current else argument)

    def clean_extra(self) -> None:
        self.xl_set(self._cmdline_key(), None)

    def xen_set(self, assignment: str) -> None:
        """``KEY=VALUE`` with VALUE in xl syntax; a bare ``KEY`` removes it."""
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if key in PAYLOAD_KEYS:
            raise XenguestError(f"use the file option for {key} (e.g. --xen-{key.replace('_', '-')}=FILE)")
        self.xl_set(key, xlcfg.parse_value(text) if sep else None)

    def set_payload(self, key: str, source: str) -> None:
        """Store *source* as the guest's kernel/device tree/ramdisk, or remove it ('')."""
        old = self.xl_merged().get(key)
        if isinstance(old, str) and old.startswith(layout.FILES + "/") and old != PAYLOAD_KEYS[key]:
            if not self._referenced_elsewhere(old, key):
                self.image.remove(old)
        member = PAYLOAD_KEYS[key]
        if source:
            self.image.add_file(member, source)
            self.xl_set(key, member)
        else:
            self.image.remove(member)
            self.xl_set(key, None)

    def _referenced_elsewhere(self, member: str, except_key: str) -> bool:
        return any(
            member in strings_in(value)
            for key, value in self.xl_merged().items()
            if key != except_key
        )

    # -- guest.d fragments and files/ --------------------------------------

    def append_fragment(self, source: str) -> None:
        name = layout.check_file_name(os.path.basename(source), "guest.d fragment")
        member = f"{layout.GUEST_D}/{name}"
        try:
            with open(source, "r", encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise XenguestError(f"{source}: {getattr(e, 'strerror', None) or e}") from None
        self._xl[member] = xlcfg.XlConfig.parse(text, member)
        self.image.write_text(member, text)

    def _remove_member(self, member: str) -> None:
        if not self.image.remove(member):
            raise XenguestError(f"no {member} in the image")

    def remove_fragment(self, name: str) -> None:
        member = f"{layout.GUEST_D}/{layout.check_file_name(name, 'guest.d fragment')}"
        self._remove_member(member)
        self._xl.pop(member, None)

    def add_file(self, value: str) -> None:
        source, dest = split_source(value)
        dest = layout.check_relative_path(dest or os.path.basename(source), "file")
        self.image.add_file(f"{layout.FILES}/{dest}", source)

    def remove_file(self, name: str) -> None:
        self._remove_member(f"{layout.FILES}/{layout.check_relative_path(name, 'file')}")

    # -- init scripts ------------------------------------------------------

    def add_init(self, stage: str, source: str) -> None:
        name = layout.check_file_name(os.path.basename(source), "init script")
        self.image.add_file(f"{stage}/{name}", source, layout.SCRIPT_MODE)

    def remove_init(self, stage: str, name: str) -> None:
        self._remove_member(f"{stage}/{layout.check_file_name(name, 'init script')}")

    # -- params.cfg --------------------------------------------------------

    def set_param(self, assignment: str) -> None:
        """``NAME=VALUE`` sets a parameter, a bare ``NAME`` removes it."""
        key, sep, value = assignment.partition("=")
        if not valid_name(key):
            raise XenguestError(f"invalid parameter name {key!r}")
        if sep:
            if is_reserved(key):
                raise XenguestError(
                    f"parameter name {key} is reserved: the host exports parameters "
                    "to init scripts as environment variables"
                )
            self.params.set(key, value)
        elif not self.params.remove(key):
            raise XenguestError(f"no parameter {key} in {layout.PARAMS}")

    def set_identity(self, param: str, value: str) -> None:
        """Set identity parameter *param* (GUEST_COMPATIBLE, GUEST_VERSION), or remove
        it ('')."""
        if value:
            self.params.set(param, identity.check_value(param, value))
        else:
            self.params.remove(param)

    # -- resets --------------------------------------------------------------

    def reset_guest(self) -> None:
        """Back to a freshly created image: everything else is removed."""
        self.image.clear()
        self._xl.clear()
        self._params = self._disk = self._disk_vars = None
        for name, text in layout.default_members():
            self.image.write_text(name, text)

    def replace_guest_cfg(self, document: xlcfg.XlConfig) -> None:
        """guest.cfg becomes *document* (as written), guest.d/ is emptied."""
        self.image.remove_tree(layout.GUEST_D)
        self._xl = {layout.GUEST_CFG: xlcfg.XlConfig.parse(document.render(), layout.GUEST_CFG)}

    def reset_xen(self) -> None:
        """guest.cfg back to its defaults, guest.d/ emptied; files/ is kept."""
        self.image.remove_tree(layout.GUEST_D)
        self._xl = {layout.GUEST_CFG: xlcfg.XlConfig.parse(layout.default_guest_cfg())}

    def reset_disk(self) -> None:
        """disk.cfg back to its defaults (no disk); disk/ files are kept."""
        self._disk_vars = ShellVarFile.parse(layout.default_disk_cfg(), layout.DISK_CFG)
        self._disk = DiskConfig.from_vars(self._disk_vars)

    # -- disk --------------------------------------------------------------

    def set_disk_size(self, value: str) -> None:
        self.disk.size_mib = parse_size(value)

    def set_disk_device(self, value: str) -> None:
        self.disk.device = check_device(value)

    def add_partition(self, value: str) -> None:
        partition = Partition.parse_option(value)
        self.disk.partitions[partition.number] = partition

    def remove_partition(self, value: str) -> None:
        number = whole_number(value.strip(" \t"))
        if number is None:
            raise XenguestError(f"invalid partition number {value!r}")
        if self.disk.partitions.pop(number, None) is None:
            raise XenguestError(f"no partition {number} in {layout.DISK_CFG}")

    def add_disk_file(self, value: str) -> None:
        source, dest = split_source(value)
        name = layout.check_file_name(dest or os.path.basename(source), "disk file")
        self.image.add_file(f"{layout.DISK}/{name}", source)

    def remove_disk_file(self, name: str) -> None:
        self._remove_member(f"{layout.DISK}/{layout.check_file_name(name, 'disk file')}")

    def add_prebuilt(self, source: str, description: Optional[str] = None) -> None:
        """Store *source* (``SRC[:DST]``) as disk/DST, the prebuilt disk of the disk as
        described now: its *description* digest (computed if not given) is recorded."""
        from .diskdesc import image_description

        source, dest = split_source(source)
        name = check_prebuilt_name(dest or os.path.basename(source))
        self.remove_prebuilt(missing_ok=True)
        description = description or image_description(self.image, self.disk)
        self.image.add_file(f"{layout.DISK}/{name}", source)
        self.disk.prebuilt = name
        self.disk.prebuilt_from = description

    def remove_prebuilt(self, missing_ok: bool = False) -> None:
        """Remove the prebuilt disk (its file and its disk.cfg keys)."""
        if not self.disk.prebuilt:
            if missing_ok:
                return
            raise XenguestError(f"{layout.DISK_CFG} names no prebuilt disk")
        self.image.remove(f"{layout.DISK}/{self.disk.prebuilt}")
        self.disk.prebuilt = self.disk.prebuilt_from = ""


def strings_in(value: xlcfg.Value) -> List[str]:
    """Every string inside an xl value (lists flattened)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


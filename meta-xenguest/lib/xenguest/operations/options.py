"""The editing options of ``xenguest-mkimage``: one table, shared by every front end.

An *edit* is ``(option, value)`` — the option's long name and its value
(``None`` for a flag).  The command line, the BitBake class and other tools
describe changes to an image as a list of edits, applied in order by
:func:`apply_edits`, so that every front end speaks the same vocabulary.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import UsageError, XenguestError
from ..format import identity, layout
from .editor import GuestEditor

Edit = Tuple[str, Optional[str]]

REQUIRED = "required"   # --opt=VALUE
OPTIONAL = "optional"   # --opt[=VALUE]; no value or an empty one removes the setting
FLAG = "flag"           # --opt


@dataclass(frozen=True)
class OptionSpec:
    """One editing option: its names, value form, help text and effect."""

    names: Tuple[str, ...]
    value: str
    metavar: str
    help: str
    apply: Callable[[GuestEditor, str], None]
    group: str

    @property
    def name(self) -> str:
        return self.names[0]


def _spec(names: Sequence[str], value: str, metavar: str, group: str, help: str,
          apply: Callable[[GuestEditor, str], None]) -> OptionSpec:
    return OptionSpec(tuple(names), value, metavar, help, apply, group)


XEN = "Xen configuration (guest.cfg, guest.d/, files/)"
INIT = "Init scripts (run on the host around guest creation)"
PARAMS = "Parameters (params.cfg)"
DISK = "Disk (disk.cfg, disk/)"
GUEST = "Whole guest"

OPTIONS: List[OptionSpec] = [
    _spec(["--guest-reset-config", "--guest-config-reset"], FLAG, "", GUEST,
          "reset the whole image to a freshly created one (removes every file)",
          lambda e, v: e.reset_guest()),
    _spec(["--guest-compatible"], OPTIONAL, "STRING", GUEST,
          "the product the image is for (params.cfg GUEST_COMPATIBLE): xenguest-manager "
          "update refuses an image for another one (empty: remove)",
          lambda e, v: e.set_identity(identity.COMPATIBLE_PARAM, v)),
    _spec(["--guest-version"], OPTIONAL, "VERSION", GUEST,
          "the version of the image (params.cfg GUEST_VERSION), shown by info and by "
          "xenguest-manager status (empty: remove)",
          lambda e, v: e.set_identity(identity.VERSION_PARAM, v)),
    _spec(["--xen-reset-config"], FLAG, "", XEN,
          "reset guest.cfg to its defaults and empty guest.d/ (files/ is kept)",
          lambda e, v: e.reset_xen()),
    _spec(["--xen-kernel", "--kernel"], OPTIONAL, "FILE", XEN,
          "store FILE as files/kernel and boot it (empty: remove the kernel)",
          lambda e, v: e.set_payload("kernel", v)),
    _spec(["--xen-device-tree"], OPTIONAL, "FILE", XEN,
          "store FILE as files/guest.dtb, the guest's device tree (empty: remove)",
          lambda e, v: e.set_payload("device_tree", v)),
    _spec(["--xen-ramdisk"], OPTIONAL, "FILE", XEN,
          "store FILE as files/ramdisk.img, the guest's ramdisk (empty: remove)",
          lambda e, v: e.set_payload("ramdisk", v)),
    _spec(["--xen-memory"], REQUIRED, "MB", XEN,
          "guest memory size in MB", lambda e, v: e.set_memory(v)),
    _spec(["--xen-vcpus"], REQUIRED, "N", XEN,
          "number of virtual CPUs", lambda e, v: e.set_vcpus(v)),
    _spec(["--xen-name"], OPTIONAL, "NAME", XEN,
          "default guest name (empty: remove; the host may choose another)",
          lambda e, v: e.set_name(v)),
    _spec(["--xen-root"], OPTIONAL, "DEV", XEN,
          "root device on the kernel command line, e.g. /dev/xvda1 (empty: remove)",
          lambda e, v: e.set_root(v)),
    _spec(["--xen-extra"], REQUIRED, "ARG", XEN,
          "append ARG to the kernel command line (repeatable)",
          lambda e, v: e.add_extra(v)),
    _spec(["--xen-clean-extra"], FLAG, "", XEN,
          "remove the kernel command line", lambda e, v: e.clean_extra()),
    _spec(["--xen-disk"], OPTIONAL, "DEV", XEN,
          "attach host block device DEV as xvda (disk = ['phy:DEV,xvda,w']; empty: remove)",
          lambda e, v: e.set_xl_disk(v)),
    _spec(["--xen-set"], REQUIRED, "KEY[=VALUE]", XEN,
          "set any xl key to VALUE written in xl syntax, e.g. type=\"pvh\" or "
          "vif=['bridge=xenbr0'] (no VALUE: remove KEY)",
          lambda e, v: e.xen_set(v)),
    _spec(["--xen-append"], REQUIRED, "FILE", XEN,
          "add FILE (xl syntax) to guest.d/ under its base name",
          lambda e, v: e.append_fragment(v)),
    _spec(["--xen-rm-append"], REQUIRED, "NAME", XEN,
          "remove guest.d/NAME", lambda e, v: e.remove_fragment(v)),
    _spec(["--xen-add-file"], REQUIRED, "SRC[:DST]", XEN,
          "store SRC as files/DST (default DST: the base name of SRC)",
          lambda e, v: e.add_file(v)),
    _spec(["--xen-rm-file"], REQUIRED, "DST", XEN,
          "remove files/DST", lambda e, v: e.remove_file(v)),
    _spec(["--init-pre"], REQUIRED, "FILE", INIT,
          "add FILE to init.pre/ (run before the guest is created)",
          lambda e, v: e.add_init(layout.INIT_PRE, v)),
    _spec(["--init-script"], REQUIRED, "FILE", INIT,
          "add FILE to init.d/ (run when the guest is created, before it starts)",
          lambda e, v: e.add_init(layout.INIT_D, v)),
    _spec(["--init-post"], REQUIRED, "FILE", INIT,
          "add FILE to init.post/ (run after the guest has started)",
          lambda e, v: e.add_init(layout.INIT_POST, v)),
    _spec(["--init-rm-pre"], REQUIRED, "NAME", INIT,
          "remove init.pre/NAME", lambda e, v: e.remove_init(layout.INIT_PRE, v)),
    _spec(["--init-rm-script"], REQUIRED, "NAME", INIT,
          "remove init.d/NAME", lambda e, v: e.remove_init(layout.INIT_D, v)),
    _spec(["--init-rm-post"], REQUIRED, "NAME", INIT,
          "remove init.post/NAME", lambda e, v: e.remove_init(layout.INIT_POST, v)),
    _spec(["--set-param"], REQUIRED, "NAME[=VALUE]", PARAMS,
          "set parameter NAME to VALUE (no VALUE: remove NAME)",
          lambda e, v: e.set_param(v)),
    _spec(["--disk-reset-config"], FLAG, "", DISK,
          "reset disk.cfg to no disk (disk/ files are kept)",
          lambda e, v: e.reset_disk()),
    _spec(["--disk-size"], REQUIRED, "SIZE", DISK,
          "disk size: NG, NM or N (= NG); G = 1000M, M = MiB; 0 disables the disk",
          lambda e, v: e.set_disk_size(v)),
    _spec(["--disk-device"], OPTIONAL, "DEV", DISK,
          "host device or volume to use for the disk (empty: let the host choose)",
          lambda e, v: e.set_disk_device(v)),
    _spec(["--disk-add-part"], REQUIRED, "N:SIZE:FS:CONTENT[:keep]", DISK,
          "define partition N (1-4) of SIZE, formatted FS (ext2, ext3, ext4, vfat, swap "
          "or empty), filled from disk file CONTENT (.tar[.gz|.bz2|.xz|.zst] or "
          ".img[.gz|.bz2|.xz|.zst], or empty); ':keep': its data survives updates of the "
          "guest (DISK_KEEP)",
          lambda e, v: e.add_partition(v)),
    _spec(["--disk-rm-part"], REQUIRED, "N", DISK,
          "remove partition N", lambda e, v: e.remove_partition(v)),
    _spec(["--disk-add-file"], REQUIRED, "SRC[:DST]", DISK,
          "store SRC as disk/DST, partition content (default DST: the base name of SRC)",
          lambda e, v: e.add_disk_file(v)),
    _spec(["--disk-rm-file"], REQUIRED, "DST", DISK,
          "remove disk/DST", lambda e, v: e.remove_disk_file(v)),
    _spec(["--disk-add-prebuilt"], REQUIRED, "SRC[:DST]", DISK,
          "store SRC as disk/DST, the whole disk already built as disk.cfg describes it "
          "now (.img, or .img.zst as 'render-disk' writes it): hosts write it instead of "
          "building the disk",
          lambda e, v: e.add_prebuilt(v)),
    _spec(["--disk-rm-prebuilt"], FLAG, "", DISK,
          "remove the prebuilt disk", lambda e, v: e.remove_prebuilt()),
]

GROUPS: Tuple[str, ...] = (GUEST, XEN, INIT, PARAMS, DISK)

BY_NAME: Dict[str, OptionSpec] = {name: spec for spec in OPTIONS for name in spec.names}


def describe(option: str, value: Optional[str]) -> str:
    """The option as the user wrote it, for messages."""
    return option if value is None else f"{option}={value}"


def apply_edits(editor: GuestEditor, edits: Iterable[Edit]) -> None:
    """Apply *edits* in order; an error names the option and its value."""
    for option, value in edits:
        spec = BY_NAME.get(option)
        if spec is None:
            raise UsageError(f"unknown option {option}")
        if spec.value == FLAG and value is not None:
            raise UsageError(f"{option} takes no value")
        if spec.value == REQUIRED and value is None:
            raise UsageError(f"{option} needs a value ({option}={spec.metavar})")
        try:
            spec.apply(editor, value or "")
        except XenguestError as e:
            raise e.prefixed(describe(option, value)) from None

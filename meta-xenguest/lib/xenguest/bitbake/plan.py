"""What do_image_xenguest writes, worked out from the XENGUEST_IMAGE_* variables at
parse time: the edits of the image (named like the command-line options), the
files it takes from the build and the tasks that make them.
"""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..disk.build import disk_commands
from ..disk.config import DiskConfig, Partition, check_device, parse_size
from ..errors import XenguestError
from ..format import identity, layout, netparams
from ..operations.options import Edit
from ..problems import ERROR
from ..shellvars import is_reserved, valid_name
from ..xl import config as xlcfg
from .settings import SettingError, Source, checked, choice, positive, resolve_file, setting

ROOTFS_TYPES: Tuple[str, ...] = ("tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst")
#: The rootfs tarball type when IMAGE_FSTYPES builds none: Python reads it everywhere.
FALLBACK_ROOTFS_TYPE = "tar.gz"
GUEST_TYPES: Tuple[str, ...] = ("pv", "pvh", "hvm")
KERNEL_DEPLOY = "virtual/kernel:do_deploy"
#: params.cfg entries that have their own variable.
OWN_PARAMS = {"GUEST_AUTOBOOT": "XENGUEST_IMAGE_AUTOBOOT",
              netparams.TYPE_PARAM: "XENGUEST_IMAGE_NETWORK_TYPE",
              netparams.FORWARD_PARAM: "XENGUEST_IMAGE_NETWORK_PORT_FORWARD",
              identity.COMPATIBLE_PARAM: "XENGUEST_IMAGE_COMPATIBLE",
              identity.VERSION_PARAM: "XENGUEST_IMAGE_VERSION"}
#: The image identity: variable, option, parameter.
IDENTITY: Tuple[Tuple[str, str, str], ...] = (
    ("XENGUEST_IMAGE_COMPATIBLE", "--guest-compatible", identity.COMPATIBLE_PARAM),
    ("XENGUEST_IMAGE_VERSION", "--guest-version", identity.VERSION_PARAM),
)
#: Deployed payloads: variable, option.
PAYLOADS: Tuple[Tuple[str, str], ...] = (
    ("XENGUEST_IMAGE_KERNEL", "--xen-kernel"),
    ("XENGUEST_IMAGE_DTB", "--xen-device-tree"),
    ("XENGUEST_IMAGE_RAMDISK", "--xen-ramdisk"),
)
#: The -native recipe providing each program that builds a disk at build time.
NATIVE_PROVIDERS = {"sfdisk": "util-linux-native", "mkswap": "util-linux-native",
                    "mke2fs": "e2fsprogs-native", "debugfs": "e2fsprogs-native",
                    "mkfs.vfat": "dosfstools-native", "mcopy": "mtools-native",
                    "mmd": "mtools-native", "zstd": "zstd-native"}
INIT_STAGES: Tuple[Tuple[str, str], ...] = (
    ("XENGUEST_IMAGE_INIT_PRE", "--init-pre"),
    ("XENGUEST_IMAGE_INIT", "--init-script"),
    ("XENGUEST_IMAGE_INIT_POST", "--init-post"),
)
@dataclass
class ImagePlan:
    """Everything do_image_xenguest does, worked out from the variables."""

    edits: List[Tuple[str, Edit]] = field(default_factory=list)  # (variable, edit)
    sources: List[Source] = field(default_factory=list)
    depends: List[str] = field(default_factory=list)
    rootfs: Optional[str] = None  # content name of the rootfs tarball, if used
    disk: DiskConfig = field(default_factory=DiskConfig)
    prebuilt: bool = False  # the task builds the disk and stores it in the image

    def native_tools(self) -> List[str]:
        """The -native recipes whose programs build the prebuilt disk (none without one)."""
        if not self.prebuilt:
            return []
        programs = disk_commands(self.disk) | {"zstd"}
        return sorted({NATIVE_PROVIDERS[p] for p in programs})

    def add(self, variable: str, option: str, value: Optional[str]) -> None:
        self.edits.append((variable, (option, value)))


def rootfs_type(d: Any) -> str:
    """The image type of the rootfs tarball (``XENGUEST_IMAGE_ROOTFS_TYPE``)."""
    return choice(d, "XENGUEST_IMAGE_ROOTFS_TYPE", ROOTFS_TYPES)


def default_rootfs_type(d: Any) -> str:
    """The first tarball type ``IMAGE_FSTYPES`` builds anyway (no second compression
    pass over the rootfs), else :data:`FALLBACK_ROOTFS_TYPE`."""
    for fstype in setting(d, "IMAGE_FSTYPES").split():
        if fstype in ROOTFS_TYPES:
            return fstype
    return FALLBACK_ROOTFS_TYPE


def rootfs_typedep(d: Any) -> str:
    """``IMAGE_TYPEDEP:xenguest``: the rootfs tarball type when a partition uses it."""
    try:
        return rootfs_type(d) if plan_image(d, check_files=False).rootfs else ""
    except XenguestError:
        return ""  # reported by the parse-time check, with the variable named


def default_disk_size(d: Any) -> str:
    """``4`` (GB), or ``0`` (no disk) when the guest boots from an initramfs."""
    initramfs = setting(d, "INITRAMFS_IMAGE_BUNDLE") == "1" or setting(d, "XENGUEST_IMAGE_RAMDISK")
    return "0" if initramfs else "4"


def default_kernel(d: Any) -> str:
    """The deployed kernel: ``KERNEL_IMAGETYPE``, or with ``INITRAMFS_IMAGE_BUNDLE``
    the bundle's link (``<type>-initramfs-<machine>.bin``, OE-core's default name)."""
    if setting(d, "INITRAMFS_IMAGE_BUNDLE") == "1":
        return d.expand("${KERNEL_IMAGETYPE}-initramfs-${MACHINE}.bin")
    return d.getVar("KERNEL_IMAGETYPE") or "${KERNEL_IMAGETYPE}"


def default_version(d: Any) -> str:
    """``DISTRO_VERSION`` (what the guest's /etc/os-release calls its version), else
    ``PV``."""
    return setting(d, "DISTRO_VERSION") or setting(d, "PV")


def _disk_size_mib(d: Any) -> int:
    value = setting(d, "XENGUEST_IMAGE_DISK_SIZE")
    return checked("XENGUEST_IMAGE_DISK_SIZE", value, parse_size, value or "0")


def has_disk(d: Any) -> bool:
    """Whether XENGUEST_IMAGE_DISK_SIZE asks for a disk (for the defaults)."""
    try:
        return _disk_size_mib(d) > 0
    except XenguestError:
        return True  # reported by the parse-time check


def _xen_settings(d: Any, plan: ImagePlan) -> None:
    plan.add("XENGUEST_IMAGE_MEMORY_SIZE", "--xen-memory",
             positive(d, "XENGUEST_IMAGE_MEMORY_SIZE", "the guest memory in MB"))
    plan.add("XENGUEST_IMAGE_NUM_VCPUS", "--xen-vcpus",
             positive(d, "XENGUEST_IMAGE_NUM_VCPUS", "the number of virtual CPUs"))
    guest_type = choice(d, "XENGUEST_IMAGE_GUEST_TYPE", GUEST_TYPES, empty=True)
    if guest_type and guest_type != "pvh" and setting(d, "TARGET_ARCH") in ("arm", "aarch64"):
        raise SettingError("XENGUEST_IMAGE_GUEST_TYPE", guest_type,
                           "Xen on Arm runs PVH guests only (pvh, or nothing)")
    if guest_type:
        plan.add("XENGUEST_IMAGE_GUEST_TYPE", "--xen-set", f'type="{guest_type}"')
    plan.add("XENGUEST_IMAGE_CMDLINE", "--xen-clean-extra", None)
    for variable in ("XENGUEST_IMAGE_CMDLINE", "XENGUEST_IMAGE_EXTRA_CMD"):
        value = " ".join(setting(d, variable).split())
        if value:
            plan.add(variable, "--xen-extra", value)
    root = setting(d, "XENGUEST_IMAGE_ROOT")
    if root:
        if any(c.isspace() or c in "\"'" for c in root):
            raise SettingError("XENGUEST_IMAGE_ROOT", root, "a device name has no spaces or quotes")
        plan.add("XENGUEST_IMAGE_ROOT", "--xen-root", root)


def _payloads(d: Any, plan: ImagePlan) -> None:
    for variable, option in PAYLOADS:
        value = setting(d, variable)
        if not value:
            continue
        if len(value.split()) > 1:
            raise SettingError(variable, value, "expected one file")
        source = resolve_file(d, variable, value, deployed=True)
        plan.sources.append(source)
        plan.add(variable, option, source.path)
        deployed = source.produced and not os.path.isabs(value)
        if deployed and variable != "XENGUEST_IMAGE_RAMDISK" and KERNEL_DEPLOY not in plan.depends:
            plan.depends.append(KERNEL_DEPLOY)
    for dep in setting(d, "XENGUEST_IMAGE_DEPLOY_DEPENDS").split():
        if dep.count(":") != 1 or not all(dep.split(":")):
            raise SettingError("XENGUEST_IMAGE_DEPLOY_DEPENDS", dep, "expected RECIPE:TASK")
        if dep not in plan.depends:
            plan.depends.append(dep)


def _file_list(d: Any, plan: ImagePlan, variable: str, with_dest: bool = False) -> List[Source]:
    sources = [resolve_file(d, variable, e, with_dest=with_dest) for e in setting(d, variable).split()]
    plan.sources.extend(sources)
    return sources


def _plain_name(source: Source, what: str) -> str:
    name = source.dest or os.path.basename(source.path)
    return checked(source.variable, source.entry, layout.check_file_name, name, what)


def _unique(sources: List[Source], names: List[str], what: str) -> None:
    seen: Dict[str, Source] = {}
    for source, name in zip(sources, names):
        if name in seen:
            raise SettingError(source.variable, source.entry,
                               f"{what} {name} is already given by {seen[name].entry}")
        seen[name] = source


def _xl_fragments(d: Any, plan: ImagePlan, check_files: bool) -> None:
    sources = _file_list(d, plan, "XENGUEST_IMAGE_XEN_CONFIG")
    names = [_plain_name(s, "guest.d fragment") for s in sources]
    _unique(sources, names, "guest.d fragment")
    for source, name in zip(sources, names):
        if check_files and not source.produced:
            with open(source.path, "r", encoding="utf-8", errors="replace") as f:
                checked(source.variable, source.entry, xlcfg.XlConfig.parse, f.read(), name)
        plan.add(source.variable, "--xen-append", source.path)


def _extra_files(d: Any, plan: ImagePlan) -> None:
    sources = _file_list(d, plan, "XENGUEST_IMAGE_FILES", with_dest=True)
    names = [checked(s.variable, s.entry, layout.check_relative_path,
                      s.dest or os.path.basename(s.path), "file") for s in sources]
    _unique(sources, names, "file")
    for source, name in zip(sources, names):
        plan.add(source.variable, "--xen-add-file", f"{source.path}:{name}")


def _params(d: Any, plan: ImagePlan) -> None:
    for variable, option, param in IDENTITY:
        value = setting(d, variable)
        if value:
            plan.add(variable, option, checked(variable, value, identity.check_value, param,
                                               value))
    plan.add("XENGUEST_IMAGE_AUTOBOOT", "--set-param",
             "GUEST_AUTOBOOT=" + choice(d, "XENGUEST_IMAGE_AUTOBOOT", ("0", "1")))
    network = choice(d, "XENGUEST_IMAGE_NETWORK_TYPE", netparams.TYPES)
    plan.add("XENGUEST_IMAGE_NETWORK_TYPE", "--set-param", f"{netparams.TYPE_PARAM}={network}")
    value = setting(d, "XENGUEST_IMAGE_NETWORK_PORT_FORWARD")
    _, forwards = checked("XENGUEST_IMAGE_NETWORK_PORT_FORWARD", value,
                           netparams.check_network, network, value)
    if forwards:
        plan.add("XENGUEST_IMAGE_NETWORK_PORT_FORWARD", "--set-param",
                 f"{netparams.FORWARD_PARAM}={' '.join(str(f) for f in forwards)}")
    for entry in setting(d, "XENGUEST_IMAGE_PARAMS").split():
        name, sep, _ = entry.partition("=")
        if not sep or not valid_name(name):
            raise SettingError("XENGUEST_IMAGE_PARAMS", entry, "expected NAME=VALUE with "
                               "NAME made of letters, digits and _ (not starting with a digit)")
        if is_reserved(name):
            raise SettingError("XENGUEST_IMAGE_PARAMS", entry, f"parameter name {name} is reserved")
        if name in OWN_PARAMS:
            raise SettingError("XENGUEST_IMAGE_PARAMS", entry, f"set {OWN_PARAMS[name]} instead")
        plan.add("XENGUEST_IMAGE_PARAMS", "--set-param", entry)


def _init_scripts(d: Any, plan: ImagePlan) -> None:
    for variable, option in INIT_STAGES:
        sources = _file_list(d, plan, variable)
        names = [_plain_name(s, "init script") for s in sources]
        _unique(sources, names, "init script")
        for source in sources:
            plan.add(variable, option, source.path)


def _disk(d: Any, plan: ImagePlan) -> None:
    size = _disk_size_mib(d)
    plan.add("XENGUEST_IMAGE_DISK_SIZE", "--disk-size", setting(d, "XENGUEST_IMAGE_DISK_SIZE") or "0")
    device = setting(d, "XENGUEST_IMAGE_DISK_DEVICE")
    if device:
        plan.add("XENGUEST_IMAGE_DISK_DEVICE", "--disk-device",
                 checked("XENGUEST_IMAGE_DISK_DEVICE", device, check_device, device))
    sources = _file_list(d, plan, "XENGUEST_IMAGE_DISK_FILES", with_dest=True)
    names = [_plain_name(s, "disk file") for s in sources]
    rootfs_name = "rootfs." + rootfs_type(d)
    _unique(sources, names, "disk file")
    if rootfs_name in names:
        source = sources[names.index(rootfs_name)]
        raise SettingError(source.variable, source.entry,
                           f"{rootfs_name} is the name of the image's own rootfs tarball")
    variable = "XENGUEST_IMAGE_DISK_PARTITIONS"
    config = DiskConfig(size_mib=size, device=device)
    entries: Dict[int, str] = {}
    for entry in setting(d, variable).split():
        part = checked(variable, entry, Partition.parse_option, entry)
        entries[part.number] = entry
        if part.number in config.partitions:
            raise SettingError(variable, entry, f"partition {part.number} is defined twice")
        if part.content and part.content not in names + [rootfs_name]:
            raise SettingError(variable, entry, f"content {part.content} matches nothing: "
                               f"neither the rootfs ({rootfs_name}) nor a file of "
                               "XENGUEST_IMAGE_DISK_FILES")
        config.partitions[part.number] = part
    parts = setting(d, variable)
    total = sum(p.size_mib for p in config.partitions.values())
    if config.partitions and total > size:
        raise SettingError(variable, parts, f"the partitions need {total}M but "
                           f"XENGUEST_IMAGE_DISK_SIZE is {setting(d, 'XENGUEST_IMAGE_DISK_SIZE')} "
                           f"({size}M; G = 1000M)")
    used = {p.content for p in config.partitions.values()}
    errors = [p for p in config.problems(names + ([rootfs_name] if rootfs_name in used else []))
              if p.severity == ERROR]
    if errors:
        where = errors[0].location.replace("disk.cfg: DISK_PART", "partition ")
        raise SettingError(variable, parts, f"{where}: {errors[0].message}")
    if rootfs_name in used:
        plan.rootfs = rootfs_name
        path = os.path.join(d.getVar("IMGDEPLOYDIR"), f"{d.getVar('IMAGE_NAME')}.{rootfs_type(d)}")
        rootfs = Source("XENGUEST_IMAGE_ROOTFS_TYPE", rootfs_type(d), path, rootfs_name, True)
        plan.sources.append(rootfs)
        plan.add(rootfs.variable, "--disk-add-file", f"{path}:{rootfs_name}")
    for source, name in zip(sources, names):
        plan.add(source.variable, "--disk-add-file", f"{source.path}:{name}")
    for number in sorted(config.partitions):
        plan.add(variable, "--disk-add-part", entries[number])
    plan.disk = config
    plan.prebuilt = choice(d, "XENGUEST_IMAGE_DISK_PREBUILT", ("0", "1")) == "1"
    if plan.prebuilt and not size:
        raise SettingError("XENGUEST_IMAGE_DISK_PREBUILT", "1", "the guest has no disk to "
                           "build (XENGUEST_IMAGE_DISK_SIZE is 0)")


def plan_image(d: Any, check_files: bool = True) -> ImagePlan:
    """Work out the edits of the image from the XENGUEST_IMAGE_* variables.

    Raises :class:`SettingError` naming the first wrong variable.  *check_files*
    also parses the xl fragments that exist already.
    """
    plan = ImagePlan()
    _xen_settings(d, plan)
    _payloads(d, plan)
    _xl_fragments(d, plan, check_files)
    _extra_files(d, plan)
    _params(d, plan)
    _init_scripts(d, plan)
    _disk(d, plan)
    return plan

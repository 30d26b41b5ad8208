"""BitBake glue of the meta-xenguest classes and recipes.

The classes stay thin: their anonymous python and tasks call the functions here
with the datastore ``d``.  Parse-time functions check the settings and set the
task flags (a wrong setting stops the parse with a message naming the variable
and its value); task functions call the library in-process.

BitBake's ``bb`` is imported inside the functions that need it, so that this
module can be imported (and shipped with the library) without BitBake.
"""

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from . import layout, netparams, operations, xlcfg
from .bitbake_sign import SIGN_KEY, setup_signing, sign_output
from .digits import whole_number
from .disk import DiskConfig, Partition, check_device, parse_size
from .editor import split_source
from .errors import XenguestError
from .options import Edit, describe
from .problems import ERROR
from .shellvars import is_reserved, valid_name

IMAGE_TASK = "do_image_xenguest"
IMAGE_TYPE = "xenguest"
ROOTFS_TYPES: Tuple[str, ...] = ("tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst")
#: The rootfs tarball type when IMAGE_FSTYPES builds none: Python reads it everywhere.
FALLBACK_ROOTFS_TYPE = "tar.gz"
GUEST_TYPES: Tuple[str, ...] = ("pv", "pvh", "hvm")
KERNEL_DEPLOY = "virtual/kernel:do_deploy"
#: params.cfg entries that have their own variable.
OWN_PARAMS = {"GUEST_AUTOBOOT": "XENGUEST_IMAGE_AUTOBOOT",
              netparams.TYPE_PARAM: "XENGUEST_IMAGE_NETWORK_TYPE",
              netparams.FORWARD_PARAM: "XENGUEST_IMAGE_NETWORK_PORT_FORWARD"}
#: Deployed payloads: variable, option.
PAYLOADS: Tuple[Tuple[str, str], ...] = (
    ("XENGUEST_IMAGE_KERNEL", "--xen-kernel"),
    ("XENGUEST_IMAGE_DTB", "--xen-device-tree"),
    ("XENGUEST_IMAGE_RAMDISK", "--xen-ramdisk"),
)
INIT_STAGES: Tuple[Tuple[str, str], ...] = (
    ("XENGUEST_IMAGE_INIT_PRE", "--init-pre"),
    ("XENGUEST_IMAGE_INIT", "--init-script"),
    ("XENGUEST_IMAGE_INIT_POST", "--init-post"),
)
FILE_FORMS = "file://NAME (looked up in FILESPATH like a SRC_URI entry) or an absolute path"


class SettingError(XenguestError):
    """A build variable has a wrong value; the message names it and the value."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        super().__init__(f'{variable} = "{value}": {reason}')
        self.variable = variable


@dataclass
class Source:
    """A file an image or a host rootfs takes from the build."""

    variable: str
    entry: str                  # as written in the variable
    path: str                   # where the file is, or will be once produced
    dest: Optional[str] = None  # name in the image (SRC:DST entries)
    produced: bool = False      # made by another task: checked when the task runs
    checksums: List[str] = field(default_factory=list)  # file-checksums entries

    def check_exists(self) -> None:
        if not os.path.isfile(self.path):
            raise SettingError(self.variable, self.entry, f"{self.path} does not exist")


@dataclass
class ImagePlan:
    """Everything do_image_xenguest does, worked out from the variables."""

    edits: List[Tuple[str, Edit]] = field(default_factory=list)  # (variable, edit)
    sources: List[Source] = field(default_factory=list)
    depends: List[str] = field(default_factory=list)
    rootfs: Optional[str] = None  # content name of the rootfs tarball, if used

    def add(self, variable: str, option: str, value: Optional[str]) -> None:
        self.edits.append((variable, (option, value)))


def _get(d: Any, name: str) -> str:
    return (d.getVar(name) or "").strip()


def _under(path: str, folder: Optional[str]) -> bool:
    if not folder:
        return False
    folder = os.path.normpath(folder)
    return os.path.normpath(path).startswith(folder + os.sep)


def resolve_file(d: Any, variable: str, entry: str, deployed: bool = False,
                 with_dest: bool = False) -> Source:
    """Find the file an entry of *variable* names.

    ``file://NAME`` is searched in ``FILESPATH`` (as a SRC_URI entry is); an
    absolute path is taken as is (one inside ``TMPDIR`` is made by another task
    and checked when the task runs); with *deployed*, a plain name is a file in
    ``DEPLOY_DIR_IMAGE``.  *with_dest* accepts a ``:DST`` suffix.
    """
    import bb.utils

    text, dest = entry, None
    if with_dest:
        scheme = "file://" if entry.startswith("file://") else ""
        text, dest = split_source(entry[len(scheme):])
        text = scheme + text
        if dest is not None and not dest:
            raise SettingError(variable, entry, "empty name after ':'")
    if "${" in text:
        raise SettingError(variable, entry, "holds an unexpanded variable (is it set?)")
    if ";" in text:
        raise SettingError(variable, entry, f"parameters are not supported: use {FILE_FORMS}")
    if text.startswith("file://"):
        name = text[len("file://"):]
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise SettingError(variable, entry, "file:// needs a relative name")
        found, searched = bb.utils.which(d.getVar("FILESPATH"), name, history=True)
        checksums = [f"{p}:{os.path.exists(p)}" for p in searched]
        if not found or not os.path.isfile(found):
            raise SettingError(variable, entry, f"no file {name} in FILESPATH "
                               f"({', '.join(searched[:4])}{', ...' if len(searched) > 4 else ''})")
        return Source(variable, entry, found, dest, False, checksums)
    if os.path.isabs(text):
        if _under(text, d.getVar("TMPDIR")):
            return Source(variable, entry, text, dest, True)
        if not os.path.isfile(text):
            raise SettingError(variable, entry, f"{text} does not exist")
        return Source(variable, entry, text, dest, False, [f"{text}:True"])
    if deployed and text and "/" not in text and text not in (".", ".."):
        return Source(variable, entry, os.path.join(d.getVar("DEPLOY_DIR_IMAGE"), text),
                      dest, True)
    forms = "a file name in DEPLOY_DIR_IMAGE, " + FILE_FORMS if deployed else FILE_FORMS
    raise SettingError(variable, entry, f"expected {forms}")


def _checked(variable: str, value: str, check: Any, *args: Any) -> Any:
    """Call a library check; turn its error into a SettingError on *variable*."""
    try:
        return check(*args)
    except SettingError:
        raise
    except XenguestError as e:
        raise SettingError(variable, value, str(e)) from None


def _positive(d: Any, variable: str, what: str) -> str:
    value = _get(d, variable)
    number = whole_number(value)
    if number is None or number <= 0:
        raise SettingError(variable, value, f"expected {what}, a whole number above 0")
    return str(number)


def _choice(d: Any, variable: str, choices: Tuple[str, ...], empty: bool = False) -> str:
    value = _get(d, variable)
    if value not in choices and not (empty and not value):
        none = " or nothing" if empty else ""
        raise SettingError(variable, value, f"expected one of {', '.join(choices)}{none}")
    return value


def rootfs_type(d: Any) -> str:
    """The image type of the rootfs tarball (``XENGUEST_IMAGE_ROOTFS_TYPE``)."""
    return _choice(d, "XENGUEST_IMAGE_ROOTFS_TYPE", ROOTFS_TYPES)


def default_rootfs_type(d: Any) -> str:
    """The first tarball type ``IMAGE_FSTYPES`` builds anyway (no second compression
    pass over the rootfs), else :data:`FALLBACK_ROOTFS_TYPE`."""
    for fstype in _get(d, "IMAGE_FSTYPES").split():
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
    initramfs = _get(d, "INITRAMFS_IMAGE_BUNDLE") == "1" or _get(d, "XENGUEST_IMAGE_RAMDISK")
    return "0" if initramfs else "4"


def default_kernel(d: Any) -> str:
    """The deployed kernel: ``KERNEL_IMAGETYPE``, or with ``INITRAMFS_IMAGE_BUNDLE``
    the bundle's link (``<type>-initramfs-<machine>.bin``, OE-core's default name)."""
    if _get(d, "INITRAMFS_IMAGE_BUNDLE") == "1":
        return d.expand("${KERNEL_IMAGETYPE}-initramfs-${MACHINE}.bin")
    return d.getVar("KERNEL_IMAGETYPE") or "${KERNEL_IMAGETYPE}"


def _disk_size_mib(d: Any) -> int:
    value = _get(d, "XENGUEST_IMAGE_DISK_SIZE")
    return _checked("XENGUEST_IMAGE_DISK_SIZE", value, parse_size, value or "0")


def has_disk(d: Any) -> bool:
    """Whether XENGUEST_IMAGE_DISK_SIZE asks for a disk (for the defaults)."""
    try:
        return _disk_size_mib(d) > 0
    except XenguestError:
        return True  # reported by the parse-time check


def _xen_settings(d: Any, plan: ImagePlan) -> None:
    plan.add("XENGUEST_IMAGE_MEMORY_SIZE", "--xen-memory",
             _positive(d, "XENGUEST_IMAGE_MEMORY_SIZE", "the guest memory in MB"))
    plan.add("XENGUEST_IMAGE_NUM_VCPUS", "--xen-vcpus",
             _positive(d, "XENGUEST_IMAGE_NUM_VCPUS", "the number of virtual CPUs"))
    guest_type = _choice(d, "XENGUEST_IMAGE_GUEST_TYPE", GUEST_TYPES, empty=True)
    if guest_type and guest_type != "pvh" and _get(d, "TARGET_ARCH") in ("arm", "aarch64"):
        raise SettingError("XENGUEST_IMAGE_GUEST_TYPE", guest_type,
                           "Xen on Arm runs PVH guests only (pvh, or nothing)")
    if guest_type:
        plan.add("XENGUEST_IMAGE_GUEST_TYPE", "--xen-set", f'type="{guest_type}"')
    plan.add("XENGUEST_IMAGE_CMDLINE", "--xen-clean-extra", None)
    for variable in ("XENGUEST_IMAGE_CMDLINE", "XENGUEST_IMAGE_EXTRA_CMD"):
        value = " ".join(_get(d, variable).split())
        if value:
            plan.add(variable, "--xen-extra", value)
    root = _get(d, "XENGUEST_IMAGE_ROOT")
    if root:
        if any(c.isspace() or c in "\"'" for c in root):
            raise SettingError("XENGUEST_IMAGE_ROOT", root, "a device name has no spaces or quotes")
        plan.add("XENGUEST_IMAGE_ROOT", "--xen-root", root)


def _payloads(d: Any, plan: ImagePlan) -> None:
    for variable, option in PAYLOADS:
        value = _get(d, variable)
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
    for dep in _get(d, "XENGUEST_IMAGE_DEPLOY_DEPENDS").split():
        if dep.count(":") != 1 or not all(dep.split(":")):
            raise SettingError("XENGUEST_IMAGE_DEPLOY_DEPENDS", dep, "expected RECIPE:TASK")
        if dep not in plan.depends:
            plan.depends.append(dep)


def _file_list(d: Any, plan: ImagePlan, variable: str, with_dest: bool = False) -> List[Source]:
    sources = [resolve_file(d, variable, e, with_dest=with_dest) for e in _get(d, variable).split()]
    plan.sources.extend(sources)
    return sources


def _plain_name(source: Source, what: str) -> str:
    name = source.dest or os.path.basename(source.path)
    return _checked(source.variable, source.entry, layout.check_file_name, name, what)


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
                _checked(source.variable, source.entry, xlcfg.XlConfig.parse, f.read(), name)
        plan.add(source.variable, "--xen-append", source.path)


def _extra_files(d: Any, plan: ImagePlan) -> None:
    sources = _file_list(d, plan, "XENGUEST_IMAGE_FILES", with_dest=True)
    names = [_checked(s.variable, s.entry, layout.check_relative_path,
                      s.dest or os.path.basename(s.path), "file") for s in sources]
    _unique(sources, names, "file")
    for source, name in zip(sources, names):
        plan.add(source.variable, "--xen-add-file", f"{source.path}:{name}")


def _params(d: Any, plan: ImagePlan) -> None:
    plan.add("XENGUEST_IMAGE_AUTOBOOT", "--set-param",
             "GUEST_AUTOBOOT=" + _choice(d, "XENGUEST_IMAGE_AUTOBOOT", ("0", "1")))
    network = _choice(d, "XENGUEST_IMAGE_NETWORK_TYPE", netparams.TYPES)
    plan.add("XENGUEST_IMAGE_NETWORK_TYPE", "--set-param", f"{netparams.TYPE_PARAM}={network}")
    value = _get(d, "XENGUEST_IMAGE_NETWORK_PORT_FORWARD")
    _, forwards = _checked("XENGUEST_IMAGE_NETWORK_PORT_FORWARD", value,
                           netparams.check_network, network, value)
    if forwards:
        plan.add("XENGUEST_IMAGE_NETWORK_PORT_FORWARD", "--set-param",
                 f"{netparams.FORWARD_PARAM}={' '.join(str(f) for f in forwards)}")
    for entry in _get(d, "XENGUEST_IMAGE_PARAMS").split():
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
    plan.add("XENGUEST_IMAGE_DISK_SIZE", "--disk-size", _get(d, "XENGUEST_IMAGE_DISK_SIZE") or "0")
    device = _get(d, "XENGUEST_IMAGE_DISK_DEVICE")
    if device:
        plan.add("XENGUEST_IMAGE_DISK_DEVICE", "--disk-device",
                 _checked("XENGUEST_IMAGE_DISK_DEVICE", device, check_device, device))
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
    for entry in _get(d, variable).split():
        part = _checked(variable, entry, Partition.parse_option, entry)
        entries[part.number] = entry
        if part.number in config.partitions:
            raise SettingError(variable, entry, f"partition {part.number} is defined twice")
        if part.content and part.content not in names + [rootfs_name]:
            raise SettingError(variable, entry, f"content {part.content} matches nothing: "
                               f"neither the rootfs ({rootfs_name}) nor a file of "
                               "XENGUEST_IMAGE_DISK_FILES")
        config.partitions[part.number] = part
    parts = _get(d, variable)
    total = sum(p.size_mib for p in config.partitions.values())
    if config.partitions and total > size:
        raise SettingError(variable, parts, f"the partitions need {total}M but "
                           f"XENGUEST_IMAGE_DISK_SIZE is {_get(d, 'XENGUEST_IMAGE_DISK_SIZE')} "
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


def library_checksums() -> List[str]:
    """file-checksums entries for the library modules that build images (a glob:
    BitBake expands it when it computes the signature).  The subpackages (the
    command-line front ends, the host manager) play no part in it."""
    package = os.path.dirname(os.path.abspath(__file__))
    return [f"{package}/*.py:True"]


def signature_variables(d: Any) -> List[str]:
    """Every XENGUEST_IMAGE_* (and the earlier layer's XENGUEST_EXTRA_*) variable
    but the signing key's path."""
    names = {k for k in d.keys() if k.startswith(("XENGUEST_IMAGE_", "XENGUEST_EXTRA_"))}
    return sorted((names - {SIGN_KEY}) | {"IMAGE_NAME", "IMAGE_LINK_NAME"})


def setup_image_task(d: Any) -> None:
    """Anonymous python of xenguest-image: check the settings, set the task's flags."""
    import bb
    import bb.build
    import bb.data

    if not bb.data.inherits_class("image", d):
        bb.fatal("xenguest-image: inherit it from an image recipe (it adds an image type)")
    if IMAGE_TYPE not in _get(d, "IMAGE_FSTYPES").split():
        bb.build.deltask(IMAGE_TASK, d)
        return
    try:
        plan = plan_image(d)
    except XenguestError as e:
        bb.fatal(f"{d.getVar('PN')}: {e}")
    if plan.rootfs:
        bb.build.addtask(IMAGE_TASK, "do_image_complete", "do_image_tar", d)
    for dep in plan.depends:
        d.appendVarFlag(IMAGE_TASK, "depends", f" {dep}")
    checksums = [c for s in plan.sources for c in s.checksums] + library_checksums()
    try:
        checksums += setup_signing(d, IMAGE_TASK)
    except XenguestError as e:
        bb.fatal(f"{d.getVar('PN')}: {e}")
    d.appendVarFlag(IMAGE_TASK, "file-checksums", " " + " ".join(checksums))
    d.appendVarFlag(IMAGE_TASK, "vardeps", " " + " ".join(signature_variables(d)))
    if d.getVar("write_image_output_manifest", False):
        d.appendVarFlag(IMAGE_TASK, "postfuncs", " write_image_output_manifest")


@contextlib.contextmanager
def _environment(name: str, value: Optional[str]) -> Iterator[None]:
    old = os.environ.get(name)
    if value:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _blame(error: XenguestError, plan: ImagePlan) -> str:
    """Name the variable behind the edit a library error is about."""
    message = str(error)
    for variable, (option, value) in plan.edits:
        if message.startswith(describe(option, value) + ":"):
            return f"{variable}: {message}"
    return message


def build_image(d: Any) -> str:
    """do_image_xenguest: write ``${IMGDEPLOYDIR}/${IMAGE_NAME}.xenguest``; return its path."""
    import bb
    import bb.progress

    output = os.path.join(d.getVar("IMGDEPLOYDIR"), f"{d.getVar('IMAGE_NAME')}.{IMAGE_TYPE}")
    try:
        plan = plan_image(d)
        for source in plan.sources:
            source.check_exists()
    except XenguestError as e:
        bb.fatal(str(e))
    bb.note(f"xenguest: writing {output}")
    for variable, (option, value) in plan.edits:
        bb.note(f"xenguest:   {describe(option, value)}  ({variable})")
    handler = bb.progress.ProgressHandler(d)

    def progress(done: int, total: int) -> None:
        handler.update(done * 100 // total if total else 100)

    with _environment("SOURCE_DATE_EPOCH", _get(d, "SOURCE_DATE_EPOCH")):
        try:
            operations.create(output, [edit for _, edit in plan.edits], progress)
        except XenguestError as e:
            bb.fatal(f"{os.path.basename(output)}: {_blame(e, plan)}")
    bb.note(f"xenguest: wrote {output} ({os.path.getsize(output)} bytes)")
    try:
        signed = sign_output(d, output)
    except XenguestError as e:
        bb.fatal(f"{os.path.basename(output)}: {e}")
    if signed:
        bb.note(f"xenguest: {signed}")
    return output


# -- the xenguest-tools recipe ---------------------------------------------------


def tools_src_uri(d: Any) -> str:
    """SRC_URI entries for the library's sources, from the layer next to the recipe.

    The folders are marked as parse dependencies: adding or removing a module
    makes BitBake parse the recipe again.
    """
    import bb.parse

    layer = os.path.normpath(os.path.join(d.getVar("FILE_DIRNAME"), "..", ".."))
    entries = []
    for root, dirs, files in os.walk(os.path.join(layer, "lib", "xenguest")):
        dirs[:] = sorted(x for x in dirs if not x.startswith((".", "__")))
        bb.parse.mark_dependency(d, root)
        rel = os.path.relpath(root, layer)
        entries += [f"file://{rel}/{f};subdir=${{BP}}" for f in sorted(files) if f.endswith(".py")]
    return " ".join(entries)

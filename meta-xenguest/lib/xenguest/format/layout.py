"""The layout of a xenguest image: member names, default contents, canonical order.

Member names used inside the library are *logical*: relative to the image
root, without the ``./`` prefix that file images carry and without a trailing
slash (``guest.cfg``, ``guest.d/net.cfg``, ``files/kernel``).
"""

import re
from typing import Tuple

from ..errors import XenguestError

#: The format version this library writes.  It is recorded in the member
#: ``xenguest.format`` that older consumers simply ignore (they extract it or
#: skip it like any other file).  Images without it are version 1: made by the
#: earlier bash tool.
FORMAT_VERSION = 2
FORMAT_MEMBER = "xenguest.format"
#: The digest manifest: size, mode and SHA-256 of every other member
#: (see :mod:`xenguest.format.manifest`), and where signatures of it are kept.
MANIFEST_MEMBER = "xenguest.manifest"
SIGNATURES = "signatures"

PARAMS = "params.cfg"
GUEST_CFG = "guest.cfg"
DISK_CFG = "disk.cfg"
GUEST_D = "guest.d"
FILES = "files"
DISK = "disk"
#: The seed document's name for ``disk/``: read, never written.
LEGACY_DISK = "disk-files"
INIT_PRE = "init.pre"
INIT_D = "init.d"
INIT_POST = "init.post"
INIT_STAGES: Tuple[str, ...] = (INIT_PRE, INIT_D, INIT_POST)

#: Names xenguest-manager writes at the top of a guest's folder, beside the
#: image's files: an image may hold nothing of these names.
HOST_CONFIG = "xl.cfg"
HOST_RECORD = "xenguest-manager.json"
HOST_DISK = "disk.img"
HOST_NAMES: Tuple[str, ...] = (HOST_RECORD, HOST_DISK, HOST_CONFIG)

MANDATORY: Tuple[str, ...] = (PARAMS, GUEST_CFG, DISK_CFG)
FOLDERS: Tuple[str, ...] = (GUEST_D, INIT_PRE, INIT_D, INIT_POST, FILES, DISK)
CONFIG_FILES: Tuple[str, ...] = (FORMAT_MEMBER, MANIFEST_MEMBER, PARAMS, GUEST_CFG, DISK_CFG)

#: Where the options that add a guest file store it, and the xl key using it.
KERNEL_MEMBER = "files/kernel"
DEVICE_TREE_MEMBER = "files/guest.dtb"
RAMDISK_MEMBER = "files/ramdisk.img"

DEFAULT_EXTRA = "earlyprintk=xenboot console=hvc0 rw"

DIR_MODE = 0o755
FILE_MODE = 0o644
SCRIPT_MODE = 0o755

#: Guest names: what xenguest-manager accepts as a domain and folder name.
GUEST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
#: Plain file names given by users (:func:`check_file_name`).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*\Z")


def format_text() -> str:
    """Content of the format member."""
    return f"{FORMAT_VERSION}\n"


def default_params() -> str:
    return (
        "# xenguest image parameters, shell-sourceable (KEY=\"VALUE\").\n"
        "# Written and read by xenguest-mkimage; never sourced by xenguest-manager.\n"
        'GUEST_AUTOBOOT="1"\n'
    )


def default_guest_cfg() -> str:
    return (
        "# Xen guest configuration (xl.cfg syntax).  The host sets name and disk\n"
        "# when it creates the guest; guest.d/*.cfg are appended in sorted order.\n"
        "memory = 1024\n"
        "vcpus = 1\n"
        f'extra = "{DEFAULT_EXTRA}"\n'
        '# name = "guest"\n'
        '# root = "/dev/xvda1"\n'
        "# disk = ['phy:/dev/vg/guest,xvda,w']\n"
    )


def default_disk_cfg() -> str:
    return (
        "# Guest disk description: DISK_SIZE (0: no disk), DISK_DEVICE,\n"
        '# DISK_PART<1-4>="SIZE:FS:CONTENT".  Sizes: M = MiB, G = 1000M, bare number = G.\n'
        'DISK_SIZE="0"\n'
        'DISK_DEVICE=""\n'
    )


def default_members() -> Tuple[Tuple[str, str], ...]:
    """(name, text) of every file of a freshly created image."""
    return (
        (FORMAT_MEMBER, format_text()),
        (PARAMS, default_params()),
        (GUEST_CFG, default_guest_cfg()),
        (DISK_CFG, default_disk_cfg()),
    )


def folder_of(name: str) -> str:
    """The top-level folder of a member name ('' for top-level files)."""
    head, sep, _ = name.partition("/")
    return head if sep else ""


def mode_for(name: str) -> int:
    """The normalised permission bits of a file member."""
    return SCRIPT_MODE if folder_of(name) in INIT_STAGES else FILE_MODE


def order_key(name: str, is_dir: bool = False) -> Tuple[int, str]:
    """Sort key of the canonical member order: configuration first, payload last.

    Root, format member, manifest, params.cfg, guest.cfg, disk.cfg, other
    top-level files, then guest.d/, init.pre/, init.d/, init.post/, files/,
    disk/ (each folder followed by its content in name order), signatures/,
    then unknown folders.
    """
    if name == "":
        return (0, "")
    if name in CONFIG_FILES:
        return (1 + CONFIG_FILES.index(name), "")
    top = folder_of(name) or (name if is_dir else "")
    if top == "":
        return (10, name)
    if top in FOLDERS:
        return (20 + FOLDERS.index(top), name)
    if top == SIGNATURES:
        return (30, name)
    return (40, name)


def check_file_name(name: str, what: str) -> str:
    """Validate a plain file name (no folder) given by a user; return it."""
    if not _SAFE_NAME.match(name or "") or name in (".", ".."):
        raise XenguestError(
            f"invalid {what} name {name!r}: use letters, digits and . _ + - "
            "(not starting with . or -)"
        )
    return name


def check_relative_path(path: str, what: str) -> str:
    """Validate a relative path given by a user (``sub/name``); return it normalised."""
    parts = [p for p in (path or "").split("/") if p not in ("", ".")]
    if not parts or path.startswith("/"):
        raise XenguestError(f"invalid {what} name {path!r}: must be a relative file name")
    for part in parts:
        if part == "..":
            raise XenguestError(f"invalid {what} name {path!r}: '..' is not allowed")
        check_file_name(part, what)
    return "/".join(parts)

"""Writing the disk an image describes: ``render-disk``, prebuilt disks, the host.

:func:`write_disk` is the one way a guest disk is written from an image — by
``render-disk`` into a new sparse file, by the BitBake class into the image's
prebuilt disk, by xenguest-manager's ``create`` into a file or a logical
volume: the prebuilt disk when the image has one, else the disk built by
:class:`~xenguest.disk.build.Provisioner` with the identifiers derived from the
description and content (:mod:`xenguest.disk.identity`) and the time
SOURCE_DATE_EPOCH (default 1980-01-01).  So all of them write the same bytes.

This module runs programs: the operations that only read or edit images never
load it.
"""

import dataclasses
import os
import shutil
import stat
import tempfile
from functools import partial
from typing import BinaryIO, Collection, ContextManager, Optional

from ..disk.build import DiskPlan, Provisioner, plan_disk
from ..disk.config import DiskConfig
from ..disk.identity import DiskIdentity
from ..errors import ImageError
from ..format import layout
from ..format.archive import source_date_epoch
from ..format.image import Image
from ..fsutil import naming, require_path
from ..programs import Host
from .checks import check_image, open_image, refuse_errors
from .diskdesc import image_description
from .editor import GuestEditor

#: The prebuilt disk's name in disk/ when the class or create makes it.
PREBUILT_NAME = "disk.img.zst"
#: zstd for prebuilt disks: the default level, all cores (the output does not
#: depend on their number), the content size recorded in the header.
ZSTD_ARGS = ["-q", "-T0", "-f"]


def disk_identity(image: Image, disk: DiskConfig) -> DiskIdentity:
    """Identifiers and time of the disk *disk* describes, with *image*'s content."""
    return DiskIdentity.derive(image_description(image, disk), source_date_epoch())


def write_disk(image: Image, disk: DiskConfig, plan: DiskPlan, target: str, host: Host,
               scratch: str, zeroed: bool, identity: Optional[DiskIdentity] = None,
               keep: Collection[int] = ()) -> None:
    """Write the disk *plan* (of *disk*, in *image*) into *target*, which is *plan*'s
    size and reads as zeros if *zeroed*; *scratch* is a folder for staging.
    *identity* defaults to :func:`disk_identity`'s.  The partitions numbered in
    *keep* are left as *target* has them (an update)."""
    if identity is None and not plan.prebuilt:
        identity = disk_identity(image, disk)
    Provisioner(host, partial(_open_disk_file, image), scratch, zeroed, identity).provision(
        plan, target, keep)


def _open_disk_file(image: Image, name: str) -> "ContextManager[BinaryIO]":
    """The file NAME of the image's ``disk/``, as stored."""
    return image.open_member(f"{layout.DISK}/{name}")


def _without_prebuilt(disk: DiskConfig) -> DiskConfig:
    return dataclasses.replace(disk, prebuilt="", prebuilt_from="")


def render_disk(source: str, output: str, ignore_prebuilt: bool = False,
                host: Optional[Host] = None) -> int:
    """Write the disk of the image *source* as the sparse raw file *output* (zstd-
    compressed when it ends in ``.zst``), replacing it atomically; return the
    disk's size.  *ignore_prebuilt* builds it from the partitions even when the
    image has a prebuilt disk."""
    require_path(source, "image")
    _check_output(require_path(output, "output"))
    host = host or Host()
    with open_image(source) as image:
        refuse_errors(check_image(image))
        disk = GuestEditor(image).disk
        if ignore_prebuilt:
            disk = _without_prebuilt(disk)
        plan = plan_disk(disk)
        if plan is None:
            raise ImageError(f"{source}: the image describes no disk (DISK_SIZE is 0)")
        compress = output.endswith(".zst")
        host.require(plan.commands() | ({"zstd"} if compress else set()))
        work = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.render-",
                                dir=os.path.dirname(os.path.abspath(output)))
        try:
            result = _render(image, disk, plan, work, host, compress)
            with naming(output):
                os.replace(result, output)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return plan.size


def _check_output(output: str) -> None:
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ImageError(f"{output}: folder {folder} does not exist")
    if os.path.lexists(output) and not stat.S_ISREG(os.lstat(output).st_mode):
        raise ImageError(f"{output}: exists and is not a regular file")


def write_disk_file(image: Image, disk: DiskConfig, plan: DiskPlan, path: str, host: Host,
                    scratch: str, identity: Optional[DiskIdentity] = None) -> None:
    """Write the disk *plan* as the new sparse file *path* (see :func:`write_disk`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        os.ftruncate(fd, plan.size)
    finally:
        os.close(fd)
    write_disk(image, disk, plan, path, host, scratch, True, identity)


def _render(image: Image, disk: DiskConfig, plan: DiskPlan, work: str, host: Host,
            compress: bool, identity: Optional[DiskIdentity] = None) -> str:
    """Write the disk into a new file in *work* (then compressed if *compress*);
    return its path."""
    raw = os.path.join(work, "disk.img")
    write_disk_file(image, disk, plan, raw, host, work, identity)
    if not compress:
        return raw
    packed = os.path.join(work, PREBUILT_NAME)
    host.run("zstd", ZSTD_ARGS + ["-o", packed, raw])
    os.unlink(raw)
    return packed


def add_prebuilt_disk(editor: GuestEditor, work: str, host: Optional[Host] = None) -> None:
    """Build the disk the edited image of *editor* describes (uncommitted edits
    included) in the folder *work* and store it, zstd-compressed, as the image's
    prebuilt disk ``disk/disk.img.zst``; *work* must outlive the image's commit."""
    host = host or Host()
    editor.remove_prebuilt(missing_ok=True)
    disk = _without_prebuilt(editor.disk)
    plan = plan_disk(disk)
    if plan is None:
        raise ImageError("a prebuilt disk needs a disk: DISK_SIZE is 0")
    host.require(plan.commands() | {"zstd"})
    description = image_description(editor.image, disk)
    identity = DiskIdentity.derive(description, source_date_epoch())
    packed = _render(editor.image, disk, plan, work, host, True, identity)
    editor.add_prebuilt(packed, description)

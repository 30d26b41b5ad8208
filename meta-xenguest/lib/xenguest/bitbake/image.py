"""The xenguest-image class's tasks and defaults, called by name from the class.

Parse-time functions (the ``?=`` defaults, :func:`setup_image_task`) check the
settings and set the task flags; :func:`build_image` (do_image_xenguest) calls
the library in-process.  BitBake's ``bb`` is imported inside the functions.
"""

import os
from typing import Any, List

from .. import operations
from ..errors import XenguestError
from ..operations.options import describe
from .plan import (  # noqa: F401
    ImagePlan,
    default_disk_size,
    default_kernel,
    default_rootfs_type,
    default_version,
    has_disk,
    plan_image,
    rootfs_typedep,
)
from .settings import build_time, setting
from .sign import SIGN_KEY, setup_signing, sign_output

IMAGE_TASK = "do_image_xenguest"
IMAGE_TYPE = "xenguest"
#: The functions the class calls by name (xenguest_image_call).
__all__ = ["build_image", "default_disk_size", "default_kernel", "default_rootfs_type",
           "default_version", "has_disk", "rootfs_typedep", "setup_image_task"]


#: The library's folders whose modules make images ("" is the package's own);
#: the command-line front ends and the host manager play no part in it.
IMAGE_MODULES = ("", "xl", "disk", "format", "operations", "bitbake")


def library_checksums(d: Any) -> List[str]:
    """file-checksums entries for the library modules that build images.

    Each module is named, never a glob: BitBake's parse cache takes a
    "PATH:True" entry whose PATH does not exist (as a glob does not) for a
    changed file, and would parse the recipe again in every command.  The
    modules are parse dependencies too, so that a module added to the library
    (which edits one that imports it) is in the list at the next parse.
    """
    import bb.parse

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    entries = []
    for sub in IMAGE_MODULES:
        folder = os.path.join(package, sub)
        for name in sorted(f for f in os.listdir(folder) if f.endswith(".py")):
            path = os.path.join(folder, name)
            bb.parse.mark_dependency(d, path)
            entries.append(path + ":True")
    return entries


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
    if IMAGE_TYPE not in setting(d, "IMAGE_FSTYPES").split():
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
    for tool in plan.native_tools():
        d.appendVar("DEPENDS", f" {tool}")
        d.appendVarFlag(IMAGE_TASK, "depends", f" {tool}:do_populate_sysroot")
    checksums = [c for s in plan.sources for c in s.checksums] + library_checksums(d)
    try:
        checksums += setup_signing(d, IMAGE_TASK)
    except XenguestError as e:
        bb.fatal(f"{d.getVar('PN')}: {e}")
    d.appendVarFlag(IMAGE_TASK, "file-checksums", " " + " ".join(checksums))
    d.appendVarFlag(IMAGE_TASK, "vardeps", " " + " ".join(signature_variables(d)))
    if d.getVar("write_image_output_manifest", False):
        d.appendVarFlag(IMAGE_TASK, "postfuncs", " write_image_output_manifest")


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

    with build_time(d):
        try:
            operations.create(output, [edit for _, edit in plan.edits], progress,
                              prebuilt_disk=plan.prebuilt)
        except XenguestError as e:
            bb.fatal(f"{os.path.basename(output)}: {_blame(e, plan)}")
    if plan.prebuilt:
        bb.note("xenguest:   with its disk prebuilt, disk/disk.img.zst  "
                "(XENGUEST_IMAGE_DISK_PREBUILT)")
    bb.note(f"xenguest: wrote {output} ({os.path.getsize(output)} bytes)")
    try:
        signed = sign_output(d, output)
    except XenguestError as e:
        bb.fatal(f"{os.path.basename(output)}: {e}")
    if signed:
        bb.note(f"xenguest: {signed}")
    return output

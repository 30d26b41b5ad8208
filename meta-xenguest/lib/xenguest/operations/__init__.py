"""The operations on xenguest images, as library functions.

Front ends (the ``xenguest-mkimage`` command, the BitBake class, the host
manager) call these; each one validates before it writes, and writes at most
once, at its end.  Here: create, update, check, pack, extract and the dumps;
in the submodules:

* :mod:`.options` — the option table: every edit, named like its option;
* :mod:`.editor` — the edits, applied to an image model in memory;
* :mod:`.checks` — everything that makes an image valid, as problems;
* :mod:`.diskdesc` — the disk an image describes, identified by its digests;
* :mod:`.render` — writing that disk (``render-disk``, prebuilt disks, the
  host manager): it runs programs, so it is loaded only by those who write disks.

Imports: the foundations, xl, format, disk.
"""

import os
import stat
import tempfile
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Optional

from ..errors import ImageError
from ..format import identity, layout
from ..format.image import DIRECTORY, FILE, Image
from ..format.streams import Progress
from ..fsutil import require_path, rmdir_quietly
from ..problems import Problem
from ..xl import config as xlcfg
from .checks import (check_image, check_update_of, open_image, refuse_errors, require_image,
                     verify_content)
from .editor import PAYLOAD_KEYS, GuestEditor
from .options import Edit, apply_edits


def create(path: str, edits: Iterable[Edit] = (), progress: Optional[Progress] = None,
           prebuilt_disk: bool = False,
           prepare: Optional[Callable[[GuestEditor], None]] = None) -> None:
    """Create an image at *path*: a directory image in an existing empty folder,
    else a file image (an existing file is replaced, atomically).

    *prepare* edits the fresh image before *edits* are applied (``import``).
    *prebuilt_disk* also builds the disk the image describes and stores it as its
    prebuilt disk (see :func:`.render.add_prebuilt_disk`), with the host's tools.
    """
    if os.path.isdir(require_path(path, "image")):
        kind = DIRECTORY
    else:
        if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
            raise ImageError(f"{path}: exists and is not a regular file")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ImageError(f"{path}: folder {parent} does not exist")
        kind = FILE
    with Image.new(path, kind) as image:
        if kind == DIRECTORY and os.listdir(path):
            raise ImageError(
                f"{path}: folder is not empty (a directory image is created only in an empty folder)"
            )
        editor = GuestEditor(image)
        editor.reset_guest()
        if prepare is not None:
            prepare(editor)
        apply_edits(editor, edits)
        editor.flush()
        refuse_errors(check_image(image))
        if not prebuilt_disk:
            image.commit(progress)
            return
        from .render import add_prebuilt_disk

        parent = os.path.dirname(os.path.abspath(path))
        with tempfile.TemporaryDirectory(prefix=".xenguest-disk-", dir=parent) as work:
            add_prebuilt_disk(editor, work)
            editor.flush()
            refuse_errors(check_image(image))
            image.commit(progress)


def update(path: str, edits: Iterable[Edit], progress: Optional[Progress] = None,
           partial: bool = False) -> bool:
    """Apply *edits* to an existing image; return whether anything changed.

    *partial* edits a directory that need not be a complete image (it is
    created if missing) and skips the completeness checks.
    """
    made = partial and not os.path.lexists(require_path(path, "image"))
    if made:
        try:
            os.mkdir(path)
        except OSError as e:
            raise ImageError(f"{path}: cannot create folder: {e.strerror}") from None
    try:
        with Image.open(path, write=True, allow_trailing=True) as image:
            if partial and image.kind != DIRECTORY:
                raise ImageError(f"{path}: partial works on directory images only")
            if not partial:
                require_image(image)
            before = check_image(image, complete=not partial)
            editor = GuestEditor(image)
            apply_edits(editor, edits)
            editor.flush()
            refuse_errors(check_image(image, complete=not partial), before)
            return image.commit(progress, complete=not partial)
    except BaseException:
        if made:
            rmdir_quietly(path)
        raise


def check(path: str, verify: bool = False, update_of: Optional[str] = None) -> List[Problem]:
    """Every problem of the image at *path* (an unreadable image raises).

    *verify* also recomputes every digest of the manifest and checks that each
    signature is over the current manifest (see :func:`check.verify_content`).
    *update_of* (an image) also checks that xenguest-manager can update a guest
    made from that image with this one (see :func:`checks.update_refusals`).
    """
    with Image.open(path) as image:
        problems = check_image(image)
        if update_of is not None:
            with open_image(update_of) as old:
                problems += check_update_of(image, old)
        if not verify:
            return problems
        found = verify_content(image)
        same = {(p.location, p.message) for p in found}
        return [p for p in problems if (p.location, p.message) not in same] + found


def pack(source: str, dest: str, progress: Optional[Progress] = None) -> None:
    """Write the image *source* (directory or file) as a new canonical file image.

    *dest* must not exist, unless it is *source* itself (compacts an updated image).
    """
    require_path(source, "image")
    require_path(dest, "destination")
    same = os.path.lexists(dest) and os.path.exists(source) and os.path.samefile(source, dest)
    if os.path.lexists(dest) and not same:
        raise ImageError(f"{dest}: exists already: pack writes a new file")
    if os.path.isdir(dest):
        raise ImageError(f"{dest}: is a folder: pack writes a file image")
    with open_image(source, write=same, allow_trailing=True) as image:
        refuse_errors(check_image(image))
        image.write_file(dest, progress, replace=same)


def extract(source: str, dest: str, config_only: bool = False) -> List[str]:
    """Extract the image into the existing folder *dest*; return the names written.

    *config_only* leaves out the disk content (``disk/``).
    """
    if not os.path.isdir(require_path(dest, "destination")):
        raise ImageError(f"{dest}: no such folder")

    def wanted(name: str) -> bool:
        return not (config_only and layout.folder_of(name) == layout.DISK)

    with open_image(source) as image:
        from ..format.image_copy import copy_tree_out  # extract only

        return copy_tree_out(image, dest, wanted)


def extract_disk_file(source: str, name: str, fd: int, progress: Optional[Progress] = None) -> int:
    """Stream the disk file *name* (``disk/NAME``) to *fd*; return its size."""
    member = f"{layout.DISK}/{layout.check_file_name(name, 'disk file')}"
    with open_image(source) as image:
        if not image.exists(member):
            raise ImageError(f"{source}: no disk file {name}")
        return image.copy_to_fd(member, fd, progress)


# -- dumps: what each configuration says -------------------------------------


def xen_config(image: Image) -> "OrderedDict[str, Any]":
    """The xl files in merge order with their text, and the merged settings."""
    editor = GuestEditor(image)
    names = [layout.GUEST_CFG] + image.files_in(layout.GUEST_D)
    result: "OrderedDict[str, Any]" = OrderedDict()
    result["files"] = [{"name": n, "text": image.read_text(n)} for n in names]
    result["config"] = editor.xl_merged()
    return result


def disk_config(image: Image) -> Dict[str, Any]:
    editor = GuestEditor(image)
    result = editor.disk.as_dict()
    result["files"] = [
        {"name": n[len(layout.DISK) + 1:], "size": image.entry(n).size}
        for n in image.files_in(layout.DISK)
    ]
    return result


def params_config(image: Image) -> "OrderedDict[str, str]":
    return OrderedDict(GuestEditor(image).params.items())


def init_scripts(image: Image) -> "OrderedDict[str, List[Dict[str, Any]]]":
    """Per stage, the scripts in the order the host runs them, with their text."""
    result: "OrderedDict[str, List[Dict[str, Any]]]" = OrderedDict()
    for stage in layout.INIT_STAGES:
        result[stage] = [
            {
                "name": n[len(stage) + 1:],
                "mode": oct(image.entry(n).mode),
                "text": image.read_bytes(n).decode("utf-8", "replace"),
            }
            for n in image.files_in(stage)
        ]
    return result


def members(image: Image) -> List[Dict[str, Any]]:
    """Every file of the image with size and mode; older versions flagged."""
    rows = [
        {"name": n, "size": image.entry(n).size, "mode": oct(image.entry(n).mode),
         "superseded": False}
        for n in image.names()
    ]
    rows += [
        {"name": n, "size": s, "mode": "", "superseded": True} for n, s in image.superseded()
    ]
    return rows


def info(image: Image) -> "OrderedDict[str, Any]":
    """A summary of the guest an image defines."""
    editor = GuestEditor(image)
    config = editor.xl_merged()
    result: "OrderedDict[str, Any]" = OrderedDict()
    result["image"] = image.path
    result["kind"] = image.kind
    result["format_version"] = image.format_version()
    result["name"] = config.get("name")
    result.update(identity.identity_of(editor.params).as_dict())
    result["type"] = config.get("type")
    result["memory"] = config.get("memory")
    result["vcpus"] = config.get("vcpus")
    for key in PAYLOAD_KEYS:
        value = config.get(key)
        size: Optional[int] = None
        if isinstance(value, str) and image.exists(value):
            size = image.entry(value).size
        result[key] = None if value is None else {"path": value, "size": size}
    result["cmdline"] = config.get("cmdline", config.get("extra"))
    result["root"] = config.get("root")
    result["params"] = params_config(image)
    result["disk"] = disk_config(image)
    result["init"] = OrderedDict(
        (stage, [n[len(stage) + 1:] for n in image.files_in(stage)])
        for stage in layout.INIT_STAGES
    )
    result["files"] = [
        {"name": n[len(layout.FILES) + 1:], "size": image.entry(n).size}
        for n in image.files_in(layout.FILES)
    ]
    superseded = image.superseded()
    result["total_size"] = image.size()
    result["superseded"] = {"members": len(superseded), "bytes": sum(s for _, s in superseded)}
    return result


def format_xl_value(value: xlcfg.Value) -> str:
    """An xl value as xl syntax, for summaries."""
    return xlcfg.format_value(value)

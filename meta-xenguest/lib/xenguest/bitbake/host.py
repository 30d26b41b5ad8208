"""BitBake glue of the xenguest-host class: guest images inside a host rootfs.

``XENGUEST_HOST_GUESTS`` lists the guests, each ``WHAT[;param=value...]``:

- ``RECIPE``: a guest image recipe of the same configuration;
- ``mc:MULTICONFIG:RECIPE``: a guest image recipe of another multiconfig;
- ``file://NAME`` (in FILESPATH), an absolute path, or a remote URL
  (``https://...;sha256sum=...``: added to SRC_URI, so that the image's do_fetch,
  enabled again for it, downloads it into DL_DIR with BitBake's fetcher).

Parameters: ``guestname`` (the file's name in the host, default the recipe or
file name), and for recipes ``machine`` (the guest's MACHINE: required for a
multiconfig), ``deploydir`` (default ``${DEPLOY_DIR}/images/<machine>``) and
``image`` (default ``<recipe>-<machine>.rootfs.xenguest``).
"""

import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import XenguestError
from ..format.layout import GUEST_NAME
from .settings import SettingError, resolve_file

VARIABLE = "XENGUEST_HOST_GUESTS"
SUFFIX = ".xenguest"
RECIPE_PARAMS = ("guestname", "machine", "deploydir", "image")
DEPLOY_TASK = "do_image_complete"


@dataclass
class HostGuest:
    """One guest image to install into the host rootfs."""

    entry: str
    name: str
    path: str                         # the .xenguest file (once built or fetched)
    depends: Optional[str] = None     # RECIPE:do_image_complete
    mcdepends: Optional[str] = None   # mc:FROM:TO:RECIPE:do_image_complete
    url: Optional[str] = None         # remote: the SRC_URI entry do_fetch downloads
    checksums: List[str] = field(default_factory=list)


def runqueue_config(d: Any) -> str:
    """The name the runqueue gives this datastore's configuration: ``""`` for the
    default one, else the multiconfig's name (the FROM of ``mc:FROM:TO:...``).

    BitBake before 2.12 (scarthgap, styhead) sets ``BB_CURRENT_MC`` to
    ``"default"`` in the default configuration, yet its runqueue keys that
    configuration ``""`` and silently drops ``mcdepends`` written with
    ``default``.  A multiconfig really named "default" is listed in BBMULTICONFIG.
    """
    current = d.getVar("BB_CURRENT_MC") or ""
    if current == "default" and current not in (d.getVar("BBMULTICONFIG") or "").split():
        return ""
    return current


def _split(entry: str, variable: str) -> Tuple[str, Dict[str, str]]:
    what, *pairs = entry.split(";")
    params: Dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SettingError(variable, entry, f"expected ;NAME=VALUE parameters, got ;{pair}")
        params[key] = value
    return what, params


def _recipe(d: Any, entry: str, what: str, params: Dict[str, str], variable: str) -> HostGuest:
    unknown = sorted(set(params) - set(RECIPE_PARAMS))
    if unknown:
        raise SettingError(variable, entry, f"unknown parameter {unknown[0]} "
                           f"(known: {', '.join(RECIPE_PARAMS)})")
    mc, recipe = "", what
    if what.startswith("mc:"):
        parts = what.split(":")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise SettingError(variable, entry, "expected mc:MULTICONFIG:RECIPE")
        mc, recipe = parts[1], parts[2]
    if not recipe.replace("-", "").replace("+", "").replace(".", "").replace("_", "").isalnum():
        raise SettingError(variable, entry, f"{recipe} is not a recipe name")
    machine = params.get("machine") or ("" if mc else d.getVar("MACHINE") or "")
    if not machine and not ("deploydir" in params and "image" in params):
        raise SettingError(variable, entry, "say the guest multiconfig's MACHINE with "
                           ";machine=NAME (or give ;deploydir=DIR and ;image=FILE)")
    deploydir = params.get("deploydir") or os.path.join(d.getVar("DEPLOY_DIR"), "images", machine)
    suffix = d.getVar("IMAGE_NAME_SUFFIX") or ""
    image = params.get("image") or f"{recipe}-{machine}{suffix}{SUFFIX}"
    if "/" in image:
        raise SettingError(variable, entry, "image= is a file name in the deploy folder")
    guest = HostGuest(entry, params.get("guestname") or recipe, os.path.join(deploydir, image))
    if mc:
        guest.mcdepends = f"mc:{runqueue_config(d)}:{mc}:{recipe}:{DEPLOY_TASK}"
    else:
        guest.depends = f"{recipe}:{DEPLOY_TASK}"
    return guest


def _file(d: Any, entry: str, what: str, params: Dict[str, str], variable: str) -> HostGuest:
    name = params.get("guestname") or os.path.basename(what)
    if name.endswith(SUFFIX):
        name = name[:-len(SUFFIX)]
    if "://" in what and not what.startswith("file://"):
        import bb.fetch2

        url = ";".join([what] + [f"{k}={v}" for k, v in params.items() if k != "guestname"])
        try:
            path = bb.fetch2.Fetch([url], d).localpath(url)
        except bb.fetch2.BBFetchException as e:
            raise SettingError(variable, entry, str(e).splitlines()[0]) from None
        return HostGuest(entry, name, path, url=url)
    unknown = sorted(set(params) - {"guestname"})
    if unknown:
        raise SettingError(variable, entry, f"unknown parameter {unknown[0]} (known: guestname)")
    source = resolve_file(d, variable, what)
    return HostGuest(entry, name, source.path, checksums=source.checksums)


def host_guests(d: Any, variable: str = VARIABLE) -> List[HostGuest]:
    """The guests *variable* (XENGUEST_HOST_GUESTS, or a variable of the same form)
    asks for; raises SettingError on a wrong entry."""
    guests: List[HostGuest] = []
    names: Dict[str, str] = {}
    for entry in (d.getVar(variable) or "").split():
        what, params = _split(entry, variable)
        if "://" in what or what.startswith("/"):
            guest = _file(d, entry, what, params, variable)
        else:
            guest = _recipe(d, entry, what, params, variable)
        if not GUEST_NAME.match(guest.name):
            raise SettingError(variable, entry, f"invalid guest name {guest.name!r}: up to 64 "
                               "letters, digits and . _ - starting with a letter or digit "
                               "(set ;guestname=NAME)")
        if guest.name in names:
            raise SettingError(variable, entry, f"guest name {guest.name} is already used by "
                               f"{names[guest.name]} (set ;guestname=NAME)")
        names[guest.name] = entry
        guests.append(guest)
    return guests


def setup_host(d: Any) -> None:
    """Anonymous python of xenguest-host: check the list, set the tasks' flags.

    Remote guests go into SRC_URI and the image's do_fetch runs again: downloads
    belong to do_fetch (yocto-check-layer refuses network access in later tasks).
    """
    import bb

    try:
        guests = host_guests(d)
    except XenguestError as e:
        bb.fatal(f"{d.getVar('PN')}: {e}")
    depend_on_guests(d, guests, "do_rootfs")


def depend_on_guests(d: Any, guests: List[HostGuest], task: str) -> None:
    """Make *task* depend on what makes the *guests*' images, and their files part of
    its signature; remote images go into SRC_URI, fetched by do_fetch."""
    for guest in guests:
        if guest.depends:
            d.appendVarFlag(task, "depends", f" {guest.depends}")
        if guest.mcdepends:
            d.appendVarFlag(task, "mcdepends", f" {guest.mcdepends}")
        if guest.checksums:
            d.appendVarFlag(task, "file-checksums", " " + " ".join(guest.checksums))
        if guest.url:
            d.appendVar("SRC_URI", f" {guest.url}")
            d.delVarFlag("do_fetch", "noexec")


def install_guests(d: Any) -> List[str]:
    """Rootfs post-process: copy the guests into the host's guest folder; return the paths."""
    import bb

    try:
        guests = host_guests(d)
    except XenguestError as e:
        bb.fatal(str(e))
    folder = os.path.join(d.getVar("IMAGE_ROOTFS"),
                          d.getVar("XENGUEST_HOST_GUESTS_DIR").lstrip("/"))
    written = []
    if guests:
        os.makedirs(folder, mode=0o755, exist_ok=True)
    for guest in guests:
        if not os.path.isfile(guest.path):
            bb.fatal(f'{VARIABLE} = "{guest.entry}": {guest.path} does not exist')
        dest = os.path.join(folder, guest.name + SUFFIX)
        bb.note(f"xenguest-host: installing {guest.path} as {dest}")
        shutil.copyfile(guest.path, dest)
        os.chmod(dest, 0o644)
        written.append(dest)
    return written

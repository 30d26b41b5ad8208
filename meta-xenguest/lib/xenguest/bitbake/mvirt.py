"""BitBake glue of the xenguest-mvirt-bundle class: xenguest images as meta-virtualization
guest bundles.

meta-virtualization (wrynose and later) puts Xen guests into a Dom0 image from bundle
packages (its xen-guest-bundle class): the host image inherits xen-guest-cross-install
(its xen-image-minimal does), whose ROOTFS_POSTPROCESS_COMMAND
``merge_installed_xen_bundles`` reads every installed ``${datadir}/xen-guest-bundles/PN/``:

* ``manifest`` — one line per guest, ``GUEST:DISK:KERNEL:AUTOSTART`` (file names in
  ``images/``; AUTOSTART ``autostart`` or empty);
* ``images/`` — those files, copied to /var/lib/xen/images/;
* ``configs/GUEST.cfg`` — the guest's xl configuration with its final paths, copied
  to /etc/xen/ and, for autostart, linked from /etc/xen/auto/ (xendomains starts
  those at boot);

then removes the bundle folder.  For each image of ``XENGUEST_MVIRT_GUESTS`` (entries
as in XENGUEST_HOST_GUESTS, ``mc:`` included) this writes ``GUEST.img``, the disk
render-disk writes (the prebuilt disk when the image has one), ``GUEST.kernel``, and
``GUEST.cfg``: the image's xl configuration made final (:mod:`xenguest.xl.final`);
autostart is the image's GUEST_AUTOBOOT.  Other files the configuration refers to
(ramdisk, device tree) go to /var/lib/xen/images/GUEST/ directly: the merge copies
only the disk and the kernel.

Such a host runs no xenguest-manager: the images' init scripts do not run (a warning
names them), params.cfg's network types are not set up — ``bridge`` becomes a vif
on XENGUEST_MVIRT_BRIDGE, ``nat`` is refused (no NAT network, no port forwards;
``XENGUEST_MVIRT_VIF[GUEST]`` gives the guest's vif instead) — and nothing checks
the images' signatures on the host.
"""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..disk.build import plan_disk
from ..errors import XenguestError, step
from ..format import layout
from ..format.image import Image
from ..format.netparams import FORWARD_PARAM, TYPE_PARAM, check_network
from ..operations.checks import check_image, open_image, refuse_errors
from ..operations.editor import GuestEditor, strings_in
from ..operations.render import write_disk_file
from ..programs import Host
from ..xl.final import FILES_PREFIX, final_values, render_config
from .host import HostGuest, depend_on_guests, host_guests
from .image import library_checksums
from .plan import NATIVE_PROVIDERS
from .settings import build_time

VARIABLE = "XENGUEST_MVIRT_GUESTS"
VIF_FLAGS = "XENGUEST_MVIRT_VIF"
#: Where meta-virtualization's merge puts guest files (fixed in its class).
IMAGES_FOLDER = "/var/lib/xen/images"
BUNDLES_FOLDER = "xen-guest-bundles"
INSTALL_TASK = "do_install"
AUTOSTART = "autostart"
#: The programs a disk may need at build time, from these recipes.
NATIVE_TOOLS = tuple(sorted(set(NATIVE_PROVIDERS.values())))


@dataclass
class BundledGuest:
    """One guest of a bundle: its files in images/ ("" for none) and autostart."""

    name: str
    disk: str = ""
    kernel: str = ""
    autostart: bool = False
    #: What a meta-virtualization host does not do for this guest.
    notes: List[str] = field(default_factory=list)

    def manifest_line(self) -> str:
        return f"{self.name}:{self.disk}:{self.kernel}:{AUTOSTART if self.autostart else ''}\n"


def guest_vif(name: str, params: Any, bridge: str, override: Optional[str]) -> Optional[str]:
    """The guest's vif on a meta-virtualization host (None: the image's own, if any)."""
    network, _ = check_network(params.get(TYPE_PARAM), params.get(FORWARD_PARAM))
    if override:
        return override
    if network == "bridge":
        return f"bridge={bridge}"
    if network == "nat":
        raise XenguestError(f"{TYPE_PARAM} is nat: a meta-virtualization host has no NAT "
                            f"network for guests: give the guest a vif with "
                            f'{VIF_FLAGS}[{name}] = "bridge=..." (or build the image with '
                            "XENGUEST_IMAGE_NETWORK_TYPE bridge or none)")
    return None


def bundle_guest(image_path: str, name: str, bundle: str, root: str, bridge: str,
                 vif: Optional[str] = None, host: Optional[Host] = None) -> BundledGuest:
    """Write guest *name* of the image *image_path* into the bundle folder *bundle*;
    files installed as they are go below *root* (the package's root: ``${D}``)."""
    with open_image(image_path) as image:
        refuse_errors(check_image(image))
        editor = GuestEditor(image)
        guest = BundledGuest(name, autostart=editor.params.get("GUEST_AUTOBOOT") == "1")
        scripts = [n for stage in layout.INIT_STAGES for n in image.files_in(stage)]
        if scripts:
            guest.notes.append(f"its init scripts do not run ({', '.join(scripts)})")
        merged = editor.xl_merged()
        kernel = merged.get("kernel")
        if isinstance(kernel, str) and kernel.startswith(FILES_PREFIX):
            guest.kernel = f"{name}.kernel"
            _copy_member(image, kernel, os.path.join(bundle, "images", guest.kernel))
        others = sorted({s for key, value in merged.items() for s in strings_in(value)
                         if s.startswith(FILES_PREFIX) and not (key == "kernel" and
                                                                s == kernel)})

        def host_path(path: str) -> str:
            if path == kernel and guest.kernel:
                return f"{IMAGES_FOLDER}/{guest.kernel}"
            return f"{IMAGES_FOLDER}/{name}/{path[len(FILES_PREFIX):]}"

        for path in others:
            _copy_member(image, path, root + host_path(path))
        plan = plan_disk(editor.disk)
        if plan is not None:
            guest.disk = f"{name}.img"
            target = os.path.join(bundle, "images", guest.disk)
            write_disk_file(image, editor.disk, plan, target, host or Host(),
                            os.path.dirname(target))
        values = final_values(editor.xl_documents(), name, host_path,
                              f"{IMAGES_FOLDER}/{guest.disk}" if guest.disk else None,
                              guest_vif(name, editor.params, bridge, vif))
        header = (f"# Xen guest {name}, from the xenguest image {os.path.basename(image_path)}"
                  "\n# (xenguest-mvirt-bundle): started by xendomains when linked from "
                  "/etc/xen/auto.\n")
        _write(os.path.join(bundle, "configs", f"{name}.cfg"),
               render_config(values, f"{name}.cfg", header).encode("utf-8"))
    return guest


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _copy_member(image: Image, name: str, dest: str) -> None:
    if not image.exists(name):
        raise XenguestError(f"{image.path}: the xl configuration refers to {name}, which "
                            "is not in the image")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        image.copy_to_fd(name, fd)
    finally:
        os.close(fd)


def write_bundle(guests: List[HostGuest], bundle: str, root: str, bridge: str,
                 vifs: Dict[str, str]) -> List[BundledGuest]:
    """Write the bundle of *guests* into the folder *bundle* (made empty first) and
    its manifest; *vifs* gives a guest's vif by name."""
    with step(f"write the bundle {bundle}"):
        os.makedirs(os.path.join(bundle, "images"))
        os.makedirs(os.path.join(bundle, "configs"))
    written = []
    for guest in guests:
        if not os.path.isfile(guest.path):
            raise XenguestError(f'{VARIABLE} = "{guest.entry}": {guest.path} does not exist')
        with step(f'{VARIABLE} = "{guest.entry}"'):
            written.append(bundle_guest(guest.path, guest.name, bundle, root, bridge,
                                        vifs.get(guest.name)))
    with step(f"write the bundle {bundle}"):
        _write(os.path.join(bundle, "manifest"),
               "".join(g.manifest_line() for g in written).encode("utf-8"))
    return written


def _vifs(d: Any, guests: List[HostGuest]) -> Dict[str, str]:
    found = {g.name: (d.getVarFlag(VIF_FLAGS, g.name) or "").strip() for g in guests}
    return {name: vif for name, vif in found.items() if vif}


def setup_bundle(d: Any) -> None:
    """Anonymous python of xenguest-mvirt-bundle: check the list, set do_install's flags."""
    import bb

    try:
        guests = host_guests(d, VARIABLE)
    except XenguestError as e:
        bb.fatal(f"{d.getVar('PN')}: {e}")
    depend_on_guests(d, guests, INSTALL_TASK)
    for tool in NATIVE_TOOLS:
        d.appendVarFlag(INSTALL_TASK, "depends", f" {tool}:do_populate_sysroot")
    # The library writes the disks and configurations: its modules are task inputs.
    d.appendVarFlag(INSTALL_TASK, "file-checksums", " " + " ".join(library_checksums(d)))
    vifs = _vifs(d, guests)
    d.setVar("XENGUEST_MVIRT_VIFS", " ".join(f"{k}={v}" for k, v in sorted(vifs.items())))


def install_bundle(d: Any) -> List[BundledGuest]:
    """do_install: the bundle in ``${D}${datadir}/xen-guest-bundles/${PN}``, other guest
    files in ``${D}/var/lib/xen/images/GUEST/``."""
    import bb

    root = d.getVar("D")
    bundle = os.path.join(root + d.getVar("datadir"), BUNDLES_FOLDER, d.getVar("PN"))
    try:
        guests = host_guests(d, VARIABLE)
        with build_time(d):
            written = write_bundle(guests, bundle, root, d.getVar("XENGUEST_MVIRT_BRIDGE"),
                                   _vifs(d, guests))
    except XenguestError as e:
        bb.fatal(str(e))
    for guest in written:
        bb.note(f"xenguest-mvirt-bundle: {guest.manifest_line().strip()}")
        for note in guest.notes:
            bb.warn(f"{guest.name}: on a meta-virtualization host {note}")
    return written

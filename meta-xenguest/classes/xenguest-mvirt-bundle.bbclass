# xenguest-mvirt-bundle: xenguest images as a meta-virtualization Xen guest bundle.
#
# meta-virtualization (wrynose and later) installs Xen guests into a Dom0 image
# from bundle packages: a host image that inherits xen-guest-cross-install (as its
# xen-image-minimal does) merges every installed bundle at do_rootfs
# (merge_installed_xen_bundles): the guests' disk and kernel go to
# /var/lib/xen/images/, their xl configuration to /etc/xen/GUEST.cfg, linked from
# /etc/xen/auto/ when they start at boot (xendomains starts them). A recipe that
# inherits this class is such a bundle, made of xenguest images:
#
#   SUMMARY = "My guests, for a meta-virtualization host"
#   LICENSE = "MIT"
#   inherit xenguest-mvirt-bundle
#   XENGUEST_MVIRT_GUESTS = "mc:guest:my-guest-image;machine=qemuarm64"
#
# and the host image adds the package: IMAGE_INSTALL:append:pn-xen-image-minimal =
# " my-guests" (not a global IMAGE_INSTALL: a guest image would then depend on itself).
#
# XENGUEST_MVIRT_GUESTS: the images, separated by spaces, in the form of
#   XENGUEST_HOST_GUESTS (xenguest-host.bbclass): RECIPE, mc:MULTICONFIG:RECIPE
#   (;machine=NAME), file://NAME, /absolute/path or a URL, with ;guestname=NAME,
#   ;deploydir=DIR and ;image=FILE. do_install depends on what makes them.
# XENGUEST_MVIRT_BRIDGE: the host bridge of guests whose image says
#   XENGUEST_NETWORK_TYPE="bridge" (vif = ['bridge=...']), "xenbr0" as
#   meta-virtualization's own guests.
# XENGUEST_MVIRT_VIF[GUEST]: the vif of guest GUEST (xl syntax of one vif, e.g.
#   "bridge=br1,mac=00:16:3e:00:00:01"), whatever its image says.
#
# Per guest the bundle holds GUEST.img, the guest's disk as "xenguest-mkimage
# render-disk" writes it (the image's prebuilt disk when it has one, else built here
# with e2fsprogs-native, dosfstools-native, mtools-native and util-linux-native),
# GUEST.kernel, and GUEST.cfg: the image's guest.cfg and guest.d/ merged, with
# name = GUEST, its disk and kernel at their final paths, and autostart when its
# params.cfg says GUEST_AUTOBOOT="1". Other files the configuration refers to
# (ramdisk, device tree) are installed at /var/lib/xen/images/GUEST/ directly.
#
# What a meta-virtualization host does not run: xenguest-manager. So the images'
# init scripts (init.pre, init.d, init.post) do not run (the task warns), the
# network types of params.cfg are not set up (bridge becomes a vif on
# XENGUEST_MVIRT_BRIDGE, nat is refused: there is no NAT network, no DHCP server
# or port forward for guests; set XENGUEST_MVIRT_VIF[GUEST] instead), and nothing
# verifies the images' signatures on the host. xendomains starts and stops the
# guests instead. See docs/manager.md.

XENGUEST_MVIRT_GUESTS ?= ""
XENGUEST_MVIRT_BRIDGE ?= "xenbr0"

# The default names of guest images (IMAGE_NAME_SUFFIX), as image recipes have them.
inherit image-artifact-names

# The disks and kernels are the guests' machine's.
PACKAGE_ARCH = "${MACHINE_ARCH}"
# Nothing is compiled: no cross toolchain.
INHIBIT_DEFAULT_DEPS = "1"
# The buildpaths check reads every packaged file whole: a guest disk is gigabytes,
# and its file systems may name build paths that are no business of the host's.
# nooelint: oelint.vars.insaneskip
INSANE_SKIP:${PN} += "buildpaths"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# The images are read and the bundle written in one go: the disks are large.
python do_install () {
    import xenguest.bitbake.mvirt
    xenguest.bitbake.mvirt.install_bundle(d)
}
do_install[vardeps] += "XENGUEST_MVIRT_GUESTS XENGUEST_MVIRT_BRIDGE XENGUEST_MVIRT_VIFS"

FILES:${PN} += "${datadir}/xen-guest-bundles /var/lib/xen/images"

python __anonymous () {
    import xenguest.bitbake.mvirt
    xenguest.bitbake.mvirt.setup_bundle(d)
}

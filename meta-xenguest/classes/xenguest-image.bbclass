# xenguest-image: build a xenguest image (one Xen guest in one file) from an image recipe.
#
# An image recipe that says "inherit xenguest-image" (or a distro that adds the class
# to IMAGE_CLASSES) also writes ${IMAGE_NAME}.xenguest into IMGDEPLOYDIR; OE-core's
# image class deploys it with the other images, with the ${IMAGE_LINK_NAME}.xenguest
# link, into DEPLOY_DIR_IMAGE. The image type is "xenguest": the class adds it to
# IMAGE_FSTYPES (IMAGE_FSTYPES:remove = "xenguest" turns it off for one image).
#
# The task do_image_xenguest runs after do_image_tar (the rootfs tarball it puts on
# the guest disk) and before do_image_complete. It calls the xenguest library
# in-process, once: the library comes from this layer's lib/ folder (layer.conf's
# addpylib), so the task needs neither xenguest-tools-native nor a subprocess.
# The image is reproducible: every member has the mtime SOURCE_DATE_EPOCH.
# Wrong settings known at parse time stop the parse with the variable named.
#
# Files (init scripts, xl fragments, extra files, disk files) are given as
# file://NAME, looked up in FILESPATH like a SRC_URI entry (the recipe's files/
# folder, FILESEXTRAPATHS), or as absolute paths; they take part in the task
# signature (file-checksums). A path inside TMPDIR is made by another task: it is
# checked when the task runs, and the producing task goes into
# XENGUEST_IMAGE_DEPLOY_DEPENDS. Lists are separated by spaces.
#
# Variables, with their defaults:
#
# XENGUEST_IMAGE_COMPATIBLE     the product the image is for (params.cfg
#                               GUEST_COMPATIBLE): xenguest-manager update
#                               refuses to replace a guest with an image of
#                               another compatible string. Set it to a name of
#                               the product that stays the same from release to
#                               release; empty for none.                       "${PN}"
# XENGUEST_IMAGE_VERSION        the version of the image (params.cfg
#                               GUEST_VERSION), shown by xenguest-mkimage info
#                               and xenguest-manager status; empty for none.
#                               "${DISTRO_VERSION}", or "${PV}" without one
# XENGUEST_IMAGE_MEMORY_SIZE    guest memory in MB (xl "memory").              "512"
# XENGUEST_IMAGE_NUM_VCPUS      virtual CPUs (xl "vcpus").                     "1"
# XENGUEST_IMAGE_AUTOBOOT       start the guest when the host boots: 1 or 0
#                               (params.cfg GUEST_AUTOBOOT).                   "1"
# XENGUEST_IMAGE_GUEST_TYPE     xl "type": pvh, pv, hvm, or empty for none.
#                               Xen on Arm runs PVH guests only; on x86 PVH
#                               suits Linux guests without a device model.     "pvh"
# XENGUEST_IMAGE_CMDLINE        guest kernel command line (xl "extra").
#                               "earlyprintk=xenboot console=hvc0 rw"
# XENGUEST_IMAGE_EXTRA_CMD      more arguments appended to the command line.   ""
# XENGUEST_IMAGE_ROOT           root device (xl "root"); empty for none.
#                               "/dev/xvda1" with a disk, else ""
# XENGUEST_IMAGE_KERNEL         the guest kernel: a file name in
#                               DEPLOY_DIR_IMAGE (then the task depends on
#                               virtual/kernel:do_deploy), file://NAME or a
#                               path; empty for none. "${KERNEL_IMAGETYPE}", or
#                               with INITRAMFS_IMAGE_BUNDLE = "1" the bundle,
#                               "${KERNEL_IMAGETYPE}-initramfs-${MACHINE}.bin"
# XENGUEST_IMAGE_DTB            a device tree for the guest, given like the
#                               kernel (a deployed name also depends on
#                               virtual/kernel:do_deploy).                     ""
# XENGUEST_IMAGE_RAMDISK        a ramdisk/initramfs for the guest: a deployed
#                               name (add its producer to
#                               XENGUEST_IMAGE_DEPLOY_DEPENDS), file://NAME
#                               or a path.                                     ""
# XENGUEST_IMAGE_DEPLOY_DEPENDS more RECIPE:TASK producing deployed files,
#                               e.g. "my-initramfs:do_image_complete".         ""
# XENGUEST_IMAGE_XEN_CONFIG     xl fragments, stored in guest.d/ under their
#                               base names.                                    ""
# XENGUEST_IMAGE_FILES          extra files for files/, each SRC[:DST].        ""
# XENGUEST_IMAGE_PARAMS         more params.cfg entries, each NAME=VALUE
#                               (no spaces in VALUE).                          ""
# XENGUEST_IMAGE_NETWORK_TYPE   host network for the guest (params.cfg
#                               XENGUEST_NETWORK_TYPE): bridge (a vif on the
#                               host's guest bridge, as the earlier layer
#                               did), nat (the host's private NAT network: an
#                               address from its DHCP server, masquerading,
#                               port forwards; works on any host running
#                               xenguest-network, QEMU's user-mode network
#                               included) or none.                             "bridge"
# XENGUEST_IMAGE_NETWORK_PORT_FORWARD  nat only: host ports forwarded to the
#                               guest, each HOST:GUEST or HOST:GUEST/PROTO
#                               (tcp or udp; tcp by default), e.g.
#                               "2222:22 8080:80" (params.cfg
#                               XENGUEST_NETWORK_PORT_FORWARD).                ""
# XENGUEST_IMAGE_INIT_PRE       host scripts run before the guest is created
#                               (init.pre/).                                   ""
# XENGUEST_IMAGE_INIT           host scripts run when the guest is created,
#                               before it starts (init.d/).                    ""
# XENGUEST_IMAGE_INIT_POST      host scripts run after the guest started
#                               (init.post/).                                  ""
# XENGUEST_IMAGE_DISK_SIZE      guest disk size: N or NG (G = 1000 MiB) or NM
#                               (MiB); 0 for no disk. "4", or "0" when the
#                               guest boots from an initramfs
#                               (INITRAMFS_IMAGE_BUNDLE = "1" or a ramdisk).
# XENGUEST_IMAGE_DISK_DEVICE    host device or volume for the disk; empty lets
#                               the host choose.                               ""
# XENGUEST_IMAGE_ROOTFS_TYPE    type of the rootfs tarball put on the disk:
#                               tar, tar.gz, tar.bz2, tar.xz or tar.zst (the
#                               class makes sure the image type is built; a
#                               host needs the zstd program for tar.zst). The
#                               first of these in IMAGE_FSTYPES, so that the
#                               tarball the image builds anyway is used (OE-core
#                               qemu machines: tar.zst from whinlatter on,
#                               tar.bz2 before), else "tar.gz".
# XENGUEST_IMAGE_DISK_PARTITIONS  partitions, each NUM:SIZE:FS:CONTENT; FS is
#                               ext2, ext3, ext4, vfat, swap or empty; CONTENT
#                               is rootfs.${XENGUEST_IMAGE_ROOTFS_TYPE} (this
#                               image's rootfs), a XENGUEST_IMAGE_DISK_FILES
#                               name, or empty. NUM:SIZE:FS:CONTENT:keep marks
#                               a data partition: filled at the guest's
#                               creation, its data survives xenguest-manager
#                               update (it must then keep its place and size).
#                               "1:${XENGUEST_IMAGE_DISK_SIZE}:ext4:rootfs.${XENGUEST_IMAGE_ROOTFS_TYPE}"
#                               with a disk, else ""
# XENGUEST_IMAGE_DISK_FILES     partition content files for disk/, each
#                               SRC[:DST].                                     ""
# XENGUEST_IMAGE_DISK_PREBUILT  "1": the task also builds the guest disk (the
#                               table, each partition formatted and filled,
#                               with e2fsprogs-native, dosfstools-native,
#                               mtools-native, util-linux-native, added to
#                               DEPENDS as needed) and stores it, compressed
#                               by zstd-native, as disk/disk.img.zst: a host
#                               writes it as fast as it copies a file and
#                               needs none of those tools. The partition
#                               content stays in the image (hosts with an
#                               earlier xenguest-manager build the disk from
#                               it). Reproducible like the image. "0": hosts
#                               build the disk.                                "0"
#
# Signing (see docs/signing.md): when both of these are set, the task signs the
# image's manifest (a detached CMS signature in signatures/, "xenguest-mkimage
# sign") with openssl-native, which is then added to DEPENDS; unset, nothing
# changes. Paths are absolute. The key's path is excluded from the task
# signature (vardepsexclude) and never logged; the certificate's and chain's
# contents are part of it (file-checksums).
#
# XENGUEST_IMAGE_SIGN_KEY       the signing key (PEM, no passphrase), e.g. in a
#                               folder outside TMPDIR and sstate.              ""
# XENGUEST_IMAGE_SIGN_CERT      its certificate (PEM).                         ""
# XENGUEST_IMAGE_SIGN_CHAIN     intermediate CA certificates (PEM) to carry in
#                               the signature; optional.                       ""
#
# A development CA and signing key (EC P-256), valid for a year:
#   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
#       -keyout dev-ca.key -out dev-ca.pem -days 365 -subj "/CN=xenguest dev CA" \
#       -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
#   openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
#       -keyout signing.key -out signing.csr -subj "/CN=xenguest dev signer"
#   openssl x509 -req -in signing.csr -CA dev-ca.pem -CAkey dev-ca.key \
#       -CAcreateserial -days 365 -out signing.pem
# then XENGUEST_IMAGE_SIGN_KEY = "/abs/signing.key", XENGUEST_IMAGE_SIGN_CERT =
# "/abs/signing.pem", and dev-ca.pem is the host's keyring
# (xenguest-manager.conf [security] keyring). Production: an offline root CA, an
# intermediate per product line (XENGUEST_IMAGE_SIGN_CHAIN), the key on the
# build machine only: docs/signing.md.
#
# The earlier meta-arm-autonomy layer's names XENGUEST_EXTRA_DTB, _RAMDISK,
# _XENCONFIG, _INIT_PRE, _INIT, _INIT_POST, _FILES and _DISK_FILES are read as the
# defaults of the matching variables above.

# The class's python helpers live in the layer's library (lib/xenguest/bitbake/image.py).
def xenguest_image_call(name, d):
    import xenguest.bitbake.image
    return getattr(xenguest.bitbake.image, name)(d)

XENGUEST_EXTRA_DTB ??= ""
XENGUEST_EXTRA_RAMDISK ??= ""
XENGUEST_EXTRA_XENCONFIG ??= ""
XENGUEST_EXTRA_INIT_PRE ??= ""
XENGUEST_EXTRA_INIT ??= ""
XENGUEST_EXTRA_INIT_POST ??= ""
XENGUEST_EXTRA_FILES ??= ""
XENGUEST_EXTRA_DISK_FILES ??= ""

XENGUEST_IMAGE_COMPATIBLE ?= "${PN}"
XENGUEST_IMAGE_VERSION ?= "${@xenguest_image_call('default_version', d)}"
XENGUEST_IMAGE_MEMORY_SIZE ?= "512"
XENGUEST_IMAGE_NUM_VCPUS ?= "1"
XENGUEST_IMAGE_AUTOBOOT ?= "1"
XENGUEST_IMAGE_GUEST_TYPE ?= "pvh"
XENGUEST_IMAGE_CMDLINE ?= "earlyprintk=xenboot console=hvc0 rw"
XENGUEST_IMAGE_EXTRA_CMD ?= ""
XENGUEST_IMAGE_ROOT ?= "${@'/dev/xvda1' if xenguest_image_call('has_disk', d) else ''}"
XENGUEST_IMAGE_KERNEL ?= "${@xenguest_image_call('default_kernel', d)}"
XENGUEST_IMAGE_DTB ?= "${XENGUEST_EXTRA_DTB}"
XENGUEST_IMAGE_RAMDISK ?= "${XENGUEST_EXTRA_RAMDISK}"
XENGUEST_IMAGE_DEPLOY_DEPENDS ?= ""
XENGUEST_IMAGE_XEN_CONFIG ?= "${XENGUEST_EXTRA_XENCONFIG}"
XENGUEST_IMAGE_FILES ?= "${XENGUEST_EXTRA_FILES}"
XENGUEST_IMAGE_PARAMS ?= ""
XENGUEST_IMAGE_NETWORK_TYPE ?= "bridge"
XENGUEST_IMAGE_NETWORK_PORT_FORWARD ?= ""
XENGUEST_IMAGE_INIT_PRE ?= "${XENGUEST_EXTRA_INIT_PRE}"
XENGUEST_IMAGE_INIT ?= "${XENGUEST_EXTRA_INIT}"
XENGUEST_IMAGE_INIT_POST ?= "${XENGUEST_EXTRA_INIT_POST}"
XENGUEST_IMAGE_DISK_SIZE ?= "${@xenguest_image_call('default_disk_size', d)}"
XENGUEST_IMAGE_DISK_DEVICE ?= ""
XENGUEST_IMAGE_ROOTFS_TYPE ?= "${@xenguest_image_call('default_rootfs_type', d)}"
XENGUEST_IMAGE_DISK_PARTITIONS ?= "${@'1:${XENGUEST_IMAGE_DISK_SIZE}:ext4:rootfs.${XENGUEST_IMAGE_ROOTFS_TYPE}' if xenguest_image_call('has_disk', d) else ''}"
XENGUEST_IMAGE_DISK_FILES ?= "${XENGUEST_EXTRA_DISK_FILES}"
XENGUEST_IMAGE_DISK_PREBUILT ?= "0"
XENGUEST_IMAGE_SIGN_KEY ?= ""
XENGUEST_IMAGE_SIGN_CERT ?= ""
XENGUEST_IMAGE_SIGN_CHAIN ?= ""

# The image type: OE-core's image class must not generate a task for it (the
# python task below is the type's command), but builds the tarball it depends on.
IMAGE_FSTYPES:append = " xenguest"
IMAGE_TYPES_MASKED += "xenguest"
# IMAGE_TYPEDEP:<type> is OE-core's own syntax for an image type's dependencies.
# nooelint: oelint.vars.specific
IMAGE_TYPEDEP:xenguest = "${@xenguest_image_call('rootfs_typedep', d)}"

python do_image_xenguest () {
    xenguest_image_call('build_image', d)
}
do_image_xenguest[doc] = "Writes the xenguest image ${IMAGE_NAME}.xenguest into IMGDEPLOYDIR"
do_image_xenguest[dirs] = "${IMGDEPLOYDIR}"
do_image_xenguest[imagetype] = "xenguest"
do_image_xenguest[subimages] = "xenguest"
do_image_xenguest[postfuncs] += "create_symlinks"
do_image_xenguest[vardepsexclude] += "DATETIME DATE XENGUEST_IMAGE_SIGN_KEY"
addtask image_xenguest after do_image before do_image_complete

python __anonymous () {
    xenguest_image_call('setup_image_task', d)
}

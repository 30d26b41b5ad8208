SUMMARY = "xenguest-manager: create and run xenguest images on a Xen host (dom0)"
DESCRIPTION = "Turns xenguest images into Xen guests: installs their configuration, \
               provisions their disk (file or LVM backend), starts them through \
               their init scripts and stops them. At boot it creates the guests of \
               the images found in ${datadir}/xenguest/guests and \
               /etc/xenguest/guests and starts those whose GUEST_AUTOBOOT is 1; at \
               shutdown it shuts them all down."
SECTION = "admin"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=13333274a5a9a617dfd1047e21b3ce2c"

# The license and the command's launcher are the layer's own files, four folders up.
# nooelint: oelint.vars.fileextrapaths, oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${THISDIR}/../../../..:"
SRC_URI = "file://LICENSE;subdir=${BP} \
           file://scripts/xenguest-manager;subdir=${BP} \
           file://xenguest-manager.service;subdir=${BP} \
           file://xenguest-manager.init;subdir=${BP} \
           file://manager.conf;subdir=${BP} \
           "

inherit allarch systemd update-rc.d

SYSTEMD_SERVICE:${PN} = "xenguest-manager.service"
INITSCRIPT_NAME = "xenguest-manager"
# xencommons starts at 80 and stops at 20, xendomains at 83 and 17,
# xenguest-network at 75 and 25: start after them, stop before them (at
# shutdown the guests are shut down here, and xendomains finds none to save).
INITSCRIPT_PARAMS = "defaults 85 15"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${S}/scripts/xenguest-manager ${D}${bindir}/xenguest-manager
    install -d ${D}${sysconfdir}/xenguest/guests
    install -m 0644 ${S}/manager.conf ${D}${sysconfdir}/xenguest/manager.conf
    install -d ${D}${datadir}/xenguest/guests
    install -d ${D}${localstatedir}/lib/xenguest
    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${S}/xenguest-manager.service ${D}${systemd_system_unitdir}/
    fi
    if ${@bb.utils.contains('DISTRO_FEATURES', 'sysvinit', 'true', 'false', d)}; then
        install -d ${D}${sysconfdir}/init.d
        install -m 0755 ${S}/xenguest-manager.init ${D}${sysconfdir}/init.d/xenguest-manager
    fi
}

FILES:${PN} += "${datadir}/xenguest ${localstatedir}/lib/xenguest"
CONFFILES:${PN} = "${sysconfdir}/xenguest/manager.conf"

# What the manager runs: the xenguest library (xenguest-tools) and Python
# modules, xl with the Xen services and hotplug scripts (block: loop devices
# for file disks; network: vif-bridge), and the disk tools: sfdisk, mkswap,
# mke2fs, debugfs (in e2fsprogs), mkfs.vfat, mtools, and zstd for .zst
# partition content (the default rootfs tarball from whinlatter on; Python
# before 3.14 has no zstd); fallocate punches the replaced ranges of a file
# disk during an update.  lvm2 only for the lvm disk backend.  openssl
# verifies signed images.
RDEPENDS:${PN} += "dosfstools e2fsprogs e2fsprogs-mke2fs mtools openssl-bin \
                   python3-compression python3-core python3-crypt python3-datetime \
                   python3-io python3-json python3-logging \
                   util-linux-fallocate util-linux-mkswap util-linux-sfdisk \
                   xen-tools-scripts-block \
                   xen-tools-scripts-network xen-tools-xencommons xen-tools-xl \
                   xenguest-tools zstd"
# The host networks of the guests (bridge, NAT network) and vif-xenguest.
RRECOMMENDS:${PN} += "lvm2 xenguest-network"

# The manager runs on the Xen host only: no native or SDK variant.
BBCLASSEXTEND = ""

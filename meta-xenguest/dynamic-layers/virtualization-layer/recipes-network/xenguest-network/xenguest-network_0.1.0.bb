SUMMARY = "xenguest-network: the host networks of xenguest guests (bridge, NAT with DHCP)"
DESCRIPTION = "At boot, makes the networks of the [network] settings of \
               xenguest-manager (/etc/xenguest/manager.conf): the guest bridge \
               (its member interfaces, its own address by DHCP or static) and the \
               private NAT network of nat guests (a bridge with the host's address, \
               an nftables table of its own for masquerading and port forwards, \
               dnsmasq as its DHCP server); and Xen's vif hotplug script \
               vif-xenguest, which adds and removes each nat guest's DHCP \
               reservation and port forwards as its interface comes and goes."
SECTION = "admin"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=13333274a5a9a617dfd1047e21b3ce2c"

# The license and the vif script are the layer's own files, four folders up.
# nooelint: oelint.vars.fileextrapaths, oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${THISDIR}/../../../..:"
SRC_URI = "file://LICENSE;subdir=${BP} \
           file://scripts/vif-xenguest;subdir=${BP} \
           file://xenguest-network.service;subdir=${BP} \
           file://xenguest-network.init;subdir=${BP} \
           "

inherit allarch systemd update-rc.d

SYSTEMD_SERVICE:${PN} = "xenguest-network.service"
INITSCRIPT_NAME = "xenguest-network"
# Up before xencommons (80), xendomains (83) and xenguest-manager (85) start;
# down after they stop (20, 17, 15).
INITSCRIPT_PARAMS = "defaults 75 25"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${sysconfdir}/xen/scripts
    install -m 0755 ${S}/scripts/vif-xenguest ${D}${sysconfdir}/xen/scripts/vif-xenguest
    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${S}/xenguest-network.service ${D}${systemd_system_unitdir}/
    fi
    if ${@bb.utils.contains('DISTRO_FEATURES', 'sysvinit', 'true', 'false', d)}; then
        install -d ${D}${sysconfdir}/init.d
        install -m 0755 ${S}/xenguest-network.init ${D}${sysconfdir}/init.d/xenguest-network
    fi
}

FILES:${PN} += "${sysconfdir}/xen/scripts/vif-xenguest"

# What 'xenguest-manager network' and vif-xenguest run: the manager, ip
# (iproute2), nft (nftables), dnsmasq and its dhcp_release, Xen's vif-bridge
# (xen-tools-scripts-network) and xenstore-read (xen-tools-xenstore), bash.
# A bridge address by DHCP runs busybox's udhcpc; the NAT network needs
# nf_tables with NAT, masquerading and fib in the kernel, and bridges.
RDEPENDS:${PN} += "bash dnsmasq iproute2 nftables xen-tools-scripts-network \
                   xen-tools-xenstore xenguest-manager"
RRECOMMENDS:${PN} += "busybox-udhcpc kernel-module-bridge kernel-module-nf-tables \
                      kernel-module-nft-chain-nat kernel-module-nft-fib-inet \
                      kernel-module-nft-masq kernel-module-nft-nat"

# The host networks are for the Xen host only: no native or SDK variant.
BBCLASSEXTEND = ""

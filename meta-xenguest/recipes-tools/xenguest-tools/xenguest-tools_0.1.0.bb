SUMMARY = "Create, inspect and modify xenguest images (one Xen guest in one file)"
DESCRIPTION = "The xenguest Python library and the xenguest-mkimage command, \
               from this layer's own lib/ and scripts/ folders: natively for \
               build tasks (xenguest-tools-native), in SDKs \
               (nativesdk-xenguest-tools, for TOOLCHAIN_HOST_TASK) and on \
               target for Xen host (dom0) images."
SECTION = "devel"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=13333274a5a9a617dfd1047e21b3ce2c"

# The sources are the layer's own files (not a copy): the layer root is two
# folders up. Every library module is listed by xenguest.bitbake.tools.tools_src_uri.
def xenguest_tools_src_uri(d):
    import xenguest.bitbake.tools
    return xenguest.bitbake.tools.tools_src_uri(d)

# The recipe's sources are this layer's own files, two folders up.
# nooelint: oelint.vars.fileextrapaths, oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${THISDIR}/../..:"
SRC_URI = "file://LICENSE;subdir=${BP} \
           file://scripts/xenguest-mkimage;subdir=${BP} \
           ${@xenguest_tools_src_uri(d)} \
           "

# A pure-Python tool without a build system in the layer: python3-dir gives
# PYTHON_SITEPACKAGES_DIR, nothing runs Python at build time. Not allarch: the
# site-packages folder depends on libdir (lib or lib64).
inherit python3-dir

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# The command's interpreter, as OE-core's python classes write it.
XENGUEST_TOOLS_PYTHON = "python3"
XENGUEST_TOOLS_PYTHON:class-native = "nativepython3"

do_install() {
    install -d ${D}${bindir} ${D}${PYTHON_SITEPACKAGES_DIR}
    install -m 0755 ${S}/scripts/xenguest-mkimage ${D}${bindir}/xenguest-mkimage
    sed -i -e '1s,^#!.*,#!${USRBINPATH}/env ${XENGUEST_TOOLS_PYTHON},' ${D}${bindir}/xenguest-mkimage
    cd ${S}/lib
    find xenguest -name '*.py' -exec install -D -m 0644 {} ${D}${PYTHON_SITEPACKAGES_DIR}/{} \;
}

FILES:${PN} += "${PYTHON_SITEPACKAGES_DIR}/xenguest"

# The standard library modules the library imports, by OE-core python3 package.
RDEPENDS:${PN} += "python3-compression python3-core python3-crypt python3-datetime \
                   python3-fcntl python3-io python3-json python3-logging python3-resource \
                   python3-shell python3-threading"
# 'sign' and 'verify' run the openssl command (openssl-bin in OE-core).
RRECOMMENDS:${PN} += "openssl-bin"

BBCLASSEXTEND = "native nativesdk"

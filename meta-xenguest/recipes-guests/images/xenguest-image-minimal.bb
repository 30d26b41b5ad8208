SUMMARY = "A minimal Xen guest, packaged as a xenguest image"
DESCRIPTION = "core-image-minimal as a Xen guest: the image, the guest kernel \
               and one host init script per stage in ${IMAGE_LINK_NAME}.xenguest. \
               The starting point for your own guests: copy it and change the \
               XENGUEST_IMAGE_* settings (see classes/xenguest-image.bbclass)."
LICENSE = "MIT"

inherit core-image xenguest-image

IMAGE_INSTALL = "packagegroup-core-boot ${CORE_IMAGE_EXTRA_INSTALL}"
IMAGE_LINGUAS = ""

XENGUEST_IMAGE_MEMORY_SIZE = "256"
XENGUEST_IMAGE_DISK_SIZE = "1"

# The host's NAT network: the guest gets an address from the host's DHCP
# server (on any host, QEMU's user-mode network included), and the host's port
# 2222 reaches its ssh server (see docs/build-and-boot.md).
XENGUEST_IMAGE_NETWORK_TYPE = "nat"
XENGUEST_IMAGE_NETWORK_PORT_FORWARD = "2222:22"
IMAGE_FEATURES += "ssh-server-dropbear"

# Scripts the host runs around the guest's creation (from the files folder next
# to this recipe), each with the guest name as $1.
XENGUEST_IMAGE_INIT_PRE = "file://10-report-network.sh"
XENGUEST_IMAGE_INIT = "file://10-report-domain.sh"
XENGUEST_IMAGE_INIT_POST = "file://10-report-started.sh"

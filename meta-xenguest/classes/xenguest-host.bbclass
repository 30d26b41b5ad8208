# xenguest-host: install xenguest images into a host (dom0) image.
#
# Inherit it from the host image recipe and list the guests in XENGUEST_HOST_GUESTS.
# Each guest image is copied, as <guestname>.xenguest, into XENGUEST_HOST_GUESTS_DIR
# of the host rootfs: the folder xenguest-manager reads at boot (it creates every
# guest found there and starts those whose params.cfg says GUEST_AUTOBOOT="1").
#
# XENGUEST_HOST_GUESTS: guests, separated by spaces, each WHAT[;NAME=VALUE...]:
#   RECIPE                  a guest image recipe (inherit xenguest-image) built for
#                           the same MACHINE: do_rootfs depends on its
#                           do_image_complete.
#   mc:MULTICONFIG:RECIPE   a guest image recipe of another multiconfig (a guest
#                           MACHINE next to the host MACHINE in one build):
#                           do_rootfs[mcdepends] on its do_image_complete. Give
#                           the guest's MACHINE with ;machine=NAME.
#   file://NAME             a .xenguest file found in FILESPATH (like SRC_URI).
#   /absolute/path          a .xenguest file (inside TMPDIR: made by another task).
#   https://... (any URL)   added to SRC_URI (add ;sha256sum=...): the image's
#                           do_fetch, enabled again for it, downloads it.
# Parameters:
#   guestname=NAME  the guest's name on the host (default: the recipe name, or the
#                   file name without .xenguest).
#   machine=NAME    for recipes: the guest's MACHINE (default: this MACHINE).
#   deploydir=DIR   for recipes: the guest's DEPLOY_DIR_IMAGE
#                   (default: ${DEPLOY_DIR}/images/<machine>; set it when the
#                   guest multiconfig has its own TMPDIR).
#   image=FILE      for recipes: the file in deploydir
#                   (default: <recipe>-<machine>${IMAGE_NAME_SUFFIX}.xenguest,
#                   the image's IMAGE_LINK_NAME link).
#
# XENGUEST_HOST_GUESTS_DIR: the host folder of guest images,
#   "${datadir}/xenguest/guests" (/usr/share/xenguest/guests). xenguest-manager
#   reads this folder: change it only together with the manager's configuration.

XENGUEST_HOST_GUESTS ?= ""
XENGUEST_HOST_GUESTS_DIR ?= "${datadir}/xenguest/guests"

# A ROOTFS_POSTPROCESS_COMMAND function run by do_rootfs, not a task of its own.
# nooelint: oelint.task.docstrings
python xenguest_host_install_guests () {
    import xenguest.bitbake.host
    xenguest.bitbake.host.install_guests(d)
}
ROOTFS_POSTPROCESS_COMMAND += "xenguest_host_install_guests"
do_rootfs[vardeps] += "XENGUEST_HOST_GUESTS XENGUEST_HOST_GUESTS_DIR"

python __anonymous () {
    import xenguest.bitbake.host
    xenguest.bitbake.host.setup_host(d)
}

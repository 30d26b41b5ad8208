"""The guests the end-to-end tests deploy: .xenguest images made with xenguest-mkimage.

The main guest: Debian's kernel and the busybox guest initramfs, 128 MB of memory, the host's
NAT network (an address from the host's DHCP server; host port FORWARD_PORT forwarded to its
HTTP server), a disk with an ext4 partition filled from a tarball holding DISK_FILE (the
guest prints it) and VERSION_FILE, and a kept ext4 data partition (the guest appends its
version to /boots on it at each boot, then prints "guest-data: " and the whole list), a
parameter, and one init script per stage (init.pre, init.d, init.post) that appends
"STAGE $1 $XENTEST_PARAM" to TRACE_FILE in dom0.  It fetches the bridged guest's
/cgi-bin/who (through the host's masquerading).  Its versions 2 and 3 differ only by their
version (GUEST_VERSION, and VERSION_FILE on their root file system).

The bridged guest: the same kernel and initramfs, on the host's guest bridge with the static
address BRIDGED_ADDRESS; it fetches the main guest's /cgi-bin/who through the host's
forwarded port.  Its disk is prebuilt: rendered on the build machine (render-disk, zstd) and
stored in the image (--disk-add-prebuilt), so dom0 writes it rather than building it; its
ext4 partition holds DISK_FILE with BRIDGED_DISK_TEXT.
"""

import os
import subprocess
import sys
import tarfile
from typing import List

from .guest import build_guest_initramfs, guest_kernel

LAYER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "meta-xenguest")
MKIMAGE = os.path.join(LAYER, "scripts", "xenguest-mkimage")

GUEST_MARKER = "XENGUEST-E2E-GUEST-UP"
DISK_FILE = "etc/xentest-disk.txt"
VERSION_FILE = "etc/xentest-version"
COMPATIBLE = "xentest/e2e-guest"
DISK_TEXT = "disk content seen by the guest: 7f3a2c\n"
BRIDGED_DISK_TEXT = "prebuilt disk content seen by the guest: 51c9e0\n"
BRIDGED_DISK_MIB = 16
PARAM_VALUE = "param-from-params.cfg"
TRACE_FILE = "/run/xenguest-e2e-trace"
STAGES = ("init.pre", "init.d", "init.post")
DISK_SIZE_MIB = 48
PART_SIZE_MIB = 32
DATA_SIZE_MIB = 8
MEMORY_MIB = 128
#: The host's address on its guest bridge, and the bridged guest's.
HOST_BRIDGE_ADDRESS = "192.168.50.1/24"
BRIDGED_ADDRESS = "192.168.50.2/24"
#: The host port forwarded to the main guest's HTTP server (port 8080).
FORWARD_PORT = 2280
GUEST_HTTP_PORT = 8080

MARKER_SCRIPT = """echo "disk-file: $(cat /mnt/%s)"
version=$(cat /mnt/%s 2>/dev/null)
echo "guest-version: $version"
if [ -e /dev/xvda2 ]; then
    mkdir -p /data
    if mount -t ext4 /dev/xvda2 /data; then
        echo "$version" >> /data/boots
        sync
        echo "guest-data: $(tr '\\n' ' ' < /data/boots)"
    else
        echo "guest-data: cannot mount /dev/xvda2"
    fi
fi
echo "%s"
""" % (DISK_FILE, VERSION_FILE, GUEST_MARKER)

TRACE_SCRIPT = """#!/bin/sh
echo "%s $1 $XENTEST_PARAM" >> %s
"""


def mkimage(args: List[str]) -> None:
    """Run the project's xenguest-mkimage CLI; fail loudly with its output."""
    proc = subprocess.run([sys.executable, MKIMAGE] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        raise AssertionError("xenguest-mkimage %s failed (rc %d):\n%s" % (
            " ".join(args[:2]), proc.returncode, proc.stdout))


def build_rootfs(folder: str, version: str) -> str:
    """The root file system tarball of version VERSION of the main guest, in FOLDER."""
    return rootfs_tar(folder, "rootfs-" + version, DISK_TEXT, version)


def rootfs_tar(folder: str, name: str, text: str, version: str = "") -> str:
    """A tarball holding DISK_FILE with TEXT (and VERSION_FILE with VERSION if given), in
    FOLDER; return its path."""
    content = os.path.join(folder, name)
    os.makedirs(os.path.join(content, os.path.dirname(DISK_FILE)))
    with open(os.path.join(content, DISK_FILE), "w") as handle:
        handle.write(text)
    if version:
        with open(os.path.join(content, VERSION_FILE), "w") as handle:
            handle.write(version + "\n")
    rootfs = os.path.join(folder, name + ".tar")
    with tarfile.open(rootfs, "w") as tar:
        tar.add(content, arcname=".")
    return rootfs


def build_image(arch: str, folder: str) -> str:
    """Build (version 1 of) the test guest's .xenguest file for ARCH in FOLDER; return its
    path.  Its later versions: the same with another root file system (build_rootfs) and
    --guest-version."""
    version = "1"
    rootfs = build_rootfs(folder, version)
    scripts = []
    for stage in STAGES:
        path = os.path.join(folder, "10-trace-" + stage.replace(".", "-"))
        with open(path, "w") as handle:
            handle.write(TRACE_SCRIPT % (stage, TRACE_FILE))
        os.chmod(path, 0o755)
        scripts.append(path)
    image = os.path.join(folder, "e2e-%s.xenguest" % arch)
    args = [
        "create", image,
        "--guest-compatible=" + COMPATIBLE,
        "--guest-version=" + version,
        "--xen-kernel=" + guest_kernel(arch),
        "--xen-ramdisk=" + build_guest_initramfs(arch, MARKER_SCRIPT),
        "--xen-memory=%d" % MEMORY_MIB,
        "--xen-extra=quiet",
        "--disk-size=%dM" % DISK_SIZE_MIB,
        "--disk-add-part=1:%dM:ext4:rootfs.tar" % PART_SIZE_MIB,
        "--disk-add-part=2:%dM:ext4::keep" % DATA_SIZE_MIB,
        "--disk-add-file=%s:rootfs.tar" % rootfs,
        "--init-pre=" + scripts[0],
        "--init-script=" + scripts[1],
        "--init-post=" + scripts[2],
        "--set-param=XENGUEST_NETWORK_TYPE=nat",
        "--set-param=XENGUEST_NETWORK_PORT_FORWARD=%d:%d" % (FORWARD_PORT, GUEST_HTTP_PORT),
        "--set-param=XENTEST_PARAM=" + PARAM_VALUE,
        "--xen-extra=xentest.ip=dhcp xentest.name=nat-guest xentest.fetch=%s:%d/cgi-bin/who"
        % (BRIDGED_ADDRESS.split("/")[0], GUEST_HTTP_PORT),
    ]
    if arch == "arm64":
        args.append('--xen-set=type="pvh"')
    mkimage(args)
    return image


def build_bridged_image(arch: str, folder: str) -> str:
    """Build the bridged guest's .xenguest file for ARCH in FOLDER; return its path."""
    image = os.path.join(folder, "bridged-%s.xenguest" % arch)
    host = HOST_BRIDGE_ADDRESS.split("/")[0]
    args = [
        "create", image,
        "--xen-kernel=" + guest_kernel(arch),
        "--xen-ramdisk=" + build_guest_initramfs(arch, MARKER_SCRIPT),
        "--xen-memory=%d" % MEMORY_MIB,
        "--xen-extra=quiet xentest.ip=%s xentest.name=bridged-guest "
        "xentest.fetch=%s:%d/cgi-bin/who" % (BRIDGED_ADDRESS, host, FORWARD_PORT),
        "--set-param=XENGUEST_NETWORK_TYPE=bridge",
        "--disk-size=%dM" % BRIDGED_DISK_MIB,
        "--disk-add-part=1:%dM:ext4:rootfs.tar" % (BRIDGED_DISK_MIB - 1),
        "--disk-add-file=%s:rootfs.tar" % rootfs_tar(folder, "bridged-rootfs",
                                                     BRIDGED_DISK_TEXT),
    ]
    if arch == "arm64":
        args.append('--xen-set=type="pvh"')
    mkimage(args)
    disk = os.path.join(folder, "bridged-disk.img.zst")
    mkimage(["render-disk", image, disk])
    mkimage(["update", image, "--disk-add-prebuilt=" + disk])
    return image


def expected_trace(name: str) -> List[str]:
    """The trace lines the init scripts leave for guest NAME, in order."""
    return ["%s %s %s" % (stage, name, PARAM_VALUE) for stage in STAGES]

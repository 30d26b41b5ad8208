"""A tiny busybox guest: kernel and initramfs for xenguest images in the end-to-end tests.

The guest's /init loads the block, network and ext4 modules of the same Debian kernel package,
mounts /dev/xvda1 read-only on /mnt when the guest has that partition, prints its network
interfaces, runs the test's marker script, then idles until Xen shuts it down: a graceful
`xl shutdown` makes the kernel run /sbin/poweroff, which prints POWEROFF_MARK and powers off
at once.
"""

import glob
import hashlib
import os

from . import debs
from .debs import GUEST_MODULES, cache_root, locked
from .stage import Stager

INIT = r"""#!/bin/busybox sh
# /init of the xenguest test guest
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
export PATH=/usr/sbin:/usr/bin
for module in $(cat /etc/xentest/modules); do
    insmod "$module" || echo "guest: insmod $module failed"
done
wait_for() {  # wait_for PATH: up to 10 s
    i=0
    while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
}
has() {  # has KIND: xenbus lists a KIND device (vbd, vif) for this guest
    for device in /sys/bus/xen/devices/"$1"-*; do
        [ -e "$device" ] && return 0
    done
    return 1
}
if has vbd; then
    wait_for /dev/xvda1
    mount -t ext4 -o ro /dev/xvda1 /mnt || echo "guest: cannot mount /dev/xvda1"
fi
if has vif; then
    wait_for /sys/class/net/eth0
fi
echo "guest-net:" $(ls /sys/class/net)
ip link
sh /etc/xentest/marker.sh
while true; do sleep 3600; done
"""

POWEROFF_MARK = "xentest-guest: graceful"
POWEROFF = r"""#!/bin/busybox sh
# run by the kernel on a graceful shutdown request (xl shutdown): power off now
echo "@MARK@ ${0##*/}" > /dev/console
/bin/busybox umount /mnt 2>/dev/null
/bin/busybox sync
exec /bin/busybox ${0##*/} -f
"""


def guest_kernel(arch: str) -> str:
    """Host path of the Debian kernel for ARCH's guests (x86_64: bzImage; arm64: Image)."""
    return debs.fetch(arch).kernel_image()


def build_guest_initramfs(arch: str, marker_script: str) -> str:
    """A gzip'd cpio guest initramfs for ARCH whose /init runs MARKER_SCRIPT (sh) once the
    disk is mounted on /mnt and the network device is up; returns its host path (cached)."""
    tree = debs.fetch(arch)
    digest = hashlib.sha256()
    for text in (tree.key, INIT, POWEROFF, marker_script):
        digest.update(text.encode() + b"\0")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "stage.py"), "rb") as src:
        digest.update(src.read())
    folder = cache_root()
    path = os.path.join(folder, "guest-%s-%s.cpio.gz" % (arch, digest.hexdigest()[:16]))
    with locked(os.path.join(folder, ".guest-%s.lock" % arch)):
        if os.path.exists(path):
            os.utime(path)
            return path
        stager = Stager(tree)
        stager.add("/usr/bin/busybox", "busybox-static")
        modules = stager.add_modules(list(GUEST_MODULES))
        staging = stager.staging
        staging.add_data("/etc/xentest/modules", "".join(m + "\n" for m in modules).encode())
        staging.add_data("/etc/xentest/marker.sh", marker_script.encode(), 0o755)
        staging.add_data("/init", INIT.encode(), 0o755)
        for command in ("poweroff", "reboot"):
            script = POWEROFF.replace("@MARK@", POWEROFF_MARK)
            staging.add_data("/usr/sbin/" + command, script.encode(), 0o755)
        for name in ("/proc", "/sys", "/dev", "/mnt", "/tmp", "/root"):
            staging.add_dir(name)
        staging.write_gzip(path, level=9)
        old = sorted(glob.glob(os.path.join(folder, "guest-%s-*.cpio.gz" % arch)),
                     key=os.path.getmtime)
        for stale in old[:-8]:
            os.unlink(stale)
        return path

"""A tiny busybox guest: kernel and initramfs for xenguest images in the end-to-end tests.

The guest's /init loads the block, network and ext4 modules of the same Debian kernel package,
mounts /dev/xvda1 read-only on /mnt when the guest has that partition, prints its network
interfaces, sets its network up as its kernel command line says (NETWORK below), runs the
test's marker script, then idles until Xen shuts it down: a graceful `xl shutdown` makes the
kernel run /sbin/poweroff, which prints POWEROFF_MARK and powers off at once.
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
sh /etc/xentest/network.sh
sh /etc/xentest/marker.sh
while true; do sleep 3600; done
"""

# The guest's network, from its kernel command line: xentest.ip=dhcp (busybox udhcpc) or
# xentest.ip=ADDRESS/PREFIX; then an HTTP server on port 8080 whose /cgi-bin/who answers
# "who: NAME from CLIENT-ADDRESS" (xentest.name=NAME); with xentest.fetch=HOST:PORT/PATH,
# the guest fetches it (retrying for 3 minutes, in the background) and prints
# "guest-fetch: ANSWER".
NETWORK = r"""#!/bin/busybox sh
ip_mode="" name=guest fetch=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        xentest.ip=*) ip_mode=${arg#*=} ;;
        xentest.name=*) name=${arg#*=} ;;
        xentest.fetch=*) fetch=${arg#*=} ;;
    esac
done
[ -n "$ip_mode" ] || exit 0
http_get() {  # http_get HOST:PORT/PATH: the last line of the answer (busybox-static's wget
              # crashes: it resolves names through glibc's NSS, which a static binary lacks)
    printf 'GET /%s HTTP/1.0\r\n\r\n' "${1#*/}" | nc -w 3 "${1%%:*}" "$(echo "${1%%/*}" | cut -d: -f2)" | tail -n 1
}
ip link set lo up
ip link set eth0 up
if [ "$ip_mode" = dhcp ]; then
    udhcpc -i eth0 -n -q -t 30 -T 2 -s /etc/xentest/udhcpc.script || echo "guest-lease-failed"
else
    ip addr add "$ip_mode" dev eth0 && echo "guest-address: $ip_mode"
fi
mkdir -p /www/cgi-bin
printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "who: %s from $REMOTE_ADDR"\n' \
    "$name" > /www/cgi-bin/who
chmod 755 /www/cgi-bin/who
httpd -p 8080 -h /www && echo "guest-httpd: up"
if [ -n "$fetch" ]; then
    (
        i=0
        while [ $i -lt 180 ]; do
            answer=$(http_get "$fetch")
            case "$answer" in who:*) break ;; esac
            answer=""
            sleep 1
            i=$((i + 1))
        done
        echo "guest-fetch: ${answer:-failed}"
    ) &
fi
"""

UDHCPC_SCRIPT = r"""#!/bin/busybox sh
# busybox udhcpc's script: apply the lease and say what it was
case "$1" in
    bound|renew)
        ip addr add "$ip/$mask" dev "$interface"
        [ -n "$router" ] && ip route add default via "$router"
        echo "guest-lease: $ip router $router"
        ;;
esac
"""

POWEROFF_MARK = "xentest-guest: graceful"
POWEROFF = r"""#!/bin/busybox sh
# run by the kernel on a graceful shutdown request (xl shutdown): power off now
echo "@MARK@ ${0##*/}" > /dev/console
/bin/busybox umount /data 2>/dev/null
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
    for text in (tree.key, INIT, POWEROFF, NETWORK, UDHCPC_SCRIPT, marker_script):
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
        staging.add_data("/etc/xentest/network.sh", NETWORK.encode(), 0o755)
        staging.add_data("/etc/xentest/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
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

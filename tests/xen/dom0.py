"""The dom0 initramfs: Xen's tools, python3, disk tools, and an /init that runs a test script.

The Debian part is built once per package set and cached (content-hashed). The project's own
files (meta-xenguest/lib and scripts), the test script and its payload go into a second,
small archive built fresh for every run; the kernel unpacks both, concatenated.
"""

import glob
import gzip
import hashlib
import io
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List

from .cpio import Staging
from .debs import DOM0_MODULES, XEN_VERSION, DebianTree, HarnessError, cache_root, locked
from .stage import Stager

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
LAYER = os.path.join(PROJECT, "meta-xenguest")
DOM0_LAYER = "/opt/meta-xenguest"
XEN_BIN = "/usr/lib/xen-%s/bin" % XEN_VERSION
PYTHON_LIB = "/usr/lib/python3.11"
PYTHON_SKIP = ["test", "tests", "idlelib", "tkinter", "ensurepip", "lib2to3", "turtledemo",
               "turtle.py"]

# Files taken from each package (canonical paths); their libraries come along.
DOM0_FILES = {
    "busybox-static": ["/usr/bin/busybox"],
    "bash": ["/usr/bin/bash"],
    "coreutils": ["/usr/bin/stat"],
    "util-linux": ["/usr/bin/flock", "/usr/bin/fallocate", "/usr/sbin/mkswap", "/usr/sbin/blkid",
                   "/usr/sbin/wipefs"],
    "mount": ["/usr/sbin/losetup"],
    "fdisk": ["/usr/sbin/sfdisk"],
    "e2fsprogs": ["/usr/sbin/mke2fs", "/usr/sbin/mkfs.ext2", "/usr/sbin/mkfs.ext3",
                  "/usr/sbin/mkfs.ext4", "/usr/sbin/debugfs", "/usr/sbin/e2fsck",
                  "/usr/sbin/fsck.ext4", "/usr/sbin/dumpe2fs", "/usr/sbin/tune2fs"],
    "python3.11-minimal": ["/usr/bin/python3.11"],
    "openssl": ["/usr/bin/openssl", "/usr/lib/ssl/openssl.cnf"],
    "zstd": ["/usr/bin/zstd"],
    "nftables": ["/usr/sbin/nft"],
    "dnsmasq-base": ["/usr/sbin/dnsmasq"],
    "dnsmasq-utils": ["/usr/bin/dhcp_release"],
    "xen-utils-4.17": [XEN_BIN + "/" + name for name in (
        "xl", "xenstored", "xenconsoled", "xen-init-dom0", "libxl-save-helper", "xenconsole",
        "xendomains")],
    # xendomains' settings (Debian's, with Xen's defaults: save at stop, restore at start)
    "xen-utils-common": ["/etc/default/xendomains"],
}
# Packages taken whole below a folder.
DOM0_TREES = [
    ("dosfstools", "/usr/sbin"),
    ("mtools", "/usr/bin"),
    ("xenstore-utils", "/usr/bin"),
    ("xen-utils-common", "/etc/xen"),
    ("python3.11-minimal", PYTHON_LIB),
    ("libpython3.11-minimal", PYTHON_LIB),
    ("libpython3.11-minimal", "/etc/python3.11"),
    ("libpython3.11-stdlib", PYTHON_LIB),
]

INIT = r"""#!/bin/bash
# /init of the xenguest test harness's dom0: bring up the Xen toolstack, run the test script,
# show the guests' console logs, power off. Markers: XENTEST-*.
export PATH=@LAYER@/scripts:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:@XEN_BIN@
export HOME=/root TERM=dumb LANG=C.UTF-8
unset PYTHONDONTWRITEBYTECODE
/usr/bin/busybox mount -t proc proc /proc
/usr/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /run/lock /run/xen /run/xenstored /var/lib/xen /var/lib/xenstored /var/log/xen/console \
    /etc/xen/auto
hostname dom0
ip link set lo up

failed=""
step() {
    echo "xentest-init: $*"
    "$@" || failed="$failed [$* -> rc $?]"
}
while read -r module; do
    step insmod "$module"
done < /etc/xentest/modules
step mount -t xenfs xenfs /proc/xen
step xenstored --pid-file=/run/xenstored.pid
step xen-init-dom0
step xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console

if [ -n "$failed" ]; then
    echo "XENTEST-SETUP-FAILED:$failed"
    rc=125
else
    echo "XENTEST-BEGIN"
    cd /root && bash /xentest/script.sh </dev/null 2>&1
    rc=$?
fi
echo "XENTEST-EXIT rc=$rc"
for log in /var/log/xen/console/guest-*.log; do
    [ -e "$log" ] || continue
    name=${log##*/guest-}
    name=${name%.log}
    echo "XENTEST-GUEST-LOG-BEGIN $name"
    cat "$log"
    echo
    echo "XENTEST-GUEST-LOG-END $name"
done
if [ "$rc" != 0 ]; then
    echo "XENTEST-DMESG-BEGIN"
    dmesg | tail -n 80
    echo "XENTEST-DMESG-END"
fi
echo "XENTEST-POWEROFF"
sync
poweroff -f
"""

ETC_FILES = {
    "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "/etc/group": "root:x:0:\ndisk:x:6:\nnogroup:x:65534:\n",
    "/etc/hostname": "dom0\n",
    "/etc/hosts": "127.0.0.1 localhost dom0\n",
}


def _source_digest() -> str:
    digest = hashlib.sha256()
    for name in ("dom0.py", "stage.py", "cpio.py", "elf.py", "debs.py"):
        with open(os.path.join(HERE, name), "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:16]


def _python_for_bytecode() -> List[str]:
    """A host interpreter whose .pyc files the dom0 python3.11 accepts, or []."""
    if sys.version_info[:2] == (3, 11):
        return [sys.executable]
    found = shutil.which("python3.11")
    return [found] if found else []


def _precompile(tree: DebianTree) -> None:
    """Write unchecked-hash .pyc files next to the unpacked standard library (once)."""
    python = _python_for_bytecode()
    if not python:
        return
    skip = "|".join(name.replace(".", r"\.") for name in PYTHON_SKIP)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for package in ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib"):
        root = tree.package_dir(package)
        folder = root + PYTHON_LIB
        if not os.path.isdir(folder):
            continue
        proc = subprocess.run(
            python + ["-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                      "unchecked-hash", "-s", root, "-x", r"/(%s)(/|$)" % skip, folder],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if proc.returncode != 0:
            raise HarnessError("precompiling the dom0 python failed: %s" % proc.stdout[-1000:])


def build_dom0_initramfs(tree: DebianTree) -> str:
    """The cached Debian part of the dom0 initramfs for TREE (a .cpio.gz path)."""
    arch = tree.arch
    folder = cache_root()
    path = os.path.join(folder, "dom0-%s-%s-%s.cpio.gz" % (arch, tree.key, _source_digest()))
    with locked(os.path.join(folder, ".dom0-%s.lock" % arch)):
        if os.path.exists(path):
            return path
        _precompile(tree)
        stager = Stager(tree)
        for package, paths in DOM0_FILES.items():
            for item in paths:
                stager.add(item, package)
        for package, under in DOM0_TREES:
            stager.add_package(package, under, PYTHON_SKIP)
        libgcc = tree.library("libgcc_s.so.1")
        if libgcc is None:
            raise HarnessError("libgcc_s.so.1 (package libgcc-s1) is missing")
        stager.add(libgcc)  # glibc dlopens it: xl aborts without it
        staging = stager.staging
        staging.add_symlink("/usr/bin/python3", "python3.11")
        staging.add_symlink("/usr/bin/env", "busybox")
        staging.add_symlink("/usr/bin/sh", "bash")
        for tool in ("xl", "xenstored", "xenconsoled", "xen-init-dom0"):
            staging.add_symlink("/usr/sbin/" + tool, XEN_BIN + "/" + tool)
        modules = stager.add_modules(list(DOM0_MODULES))
        staging.add_data("/etc/xentest/modules", "".join(m + "\n" for m in modules).encode())
        for name, text in ETC_FILES.items():
            staging.add_data(name, text.encode())
        for name in ("/proc", "/sys", "/dev", "/run", "/tmp", "/root", "/var/log", "/var/lib",
                     "/mnt", "/xentest"):
            staging.add_dir(name, 0o1777 if name == "/tmp" else 0o755)
        staging.add_symlink("/var/run", "/run")
        staging.add_symlink("/var/lock", "/run/lock")
        init = INIT.replace("@LAYER@", DOM0_LAYER).replace("@XEN_BIN@", XEN_BIN)
        staging.add_data("/init", init.encode(), 0o755)
        for old in glob.glob(os.path.join(folder, "dom0-%s-*.cpio.gz" % arch)):
            os.unlink(old)
        staging.write_gzip(path)
        return path


def _add_project(staging: Staging, host_dir: str, dom0_dir: str, compile_py: bool) -> None:
    """Copy a project folder (no caches), with unchecked-hash .pyc for its modules."""
    with tempfile.TemporaryDirectory() as tmp:
        for dirpath, dirnames, filenames in os.walk(host_dir):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            rel = os.path.relpath(dirpath, host_dir)
            target_dir = os.path.normpath(os.path.join(dom0_dir, rel))
            staging.add_dir(target_dir)
            for name in sorted(filenames):
                if name.endswith((".pyc", ".pyo")):
                    continue
                source = os.path.join(dirpath, name)
                staging.add_file(target_dir + "/" + name, source)
                if compile_py and name.endswith(".py"):
                    cfile = os.path.join(tmp, "%d.pyc" % len(staging.entries))
                    py_compile.compile(
                        source, cfile=cfile, dfile=target_dir + "/" + name, doraise=True,
                        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
                    with open(cfile, "rb") as handle:
                        staging.add_data("%s/__pycache__/%s.cpython-311.pyc" % (
                            target_dir, name[:-3]), handle.read())


def build_run_archive(script: str, payload: Dict[str, str]) -> bytes:
    """The per-run archive: this project's layer lib + scripts, the test script, PAYLOAD
    (dom0 path -> host file). Returned gzip-compressed, ready to append."""
    staging = Staging()
    compile_py = sys.version_info[:2] == (3, 11)
    for sub in ("lib", "scripts"):
        _add_project(staging, os.path.join(LAYER, sub), DOM0_LAYER + "/" + sub, compile_py)
    staging.add_data("/xentest/script.sh", script.encode(), 0o755)
    for dom0_path, host_path in payload.items():
        if not dom0_path.startswith("/"):
            raise HarnessError("payload path %r must be absolute" % dom0_path)
        if not os.path.isfile(host_path):
            raise HarnessError("payload file %s does not exist" % host_path)
        staging.add_file(dom0_path, host_path)
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as out:
        staging.write(out)
    return raw.getvalue()

"""Boot a real Xen 4.17 with a Debian dom0 under QEMU (TCG), run a script in dom0, collect
the console.

x86_64: QEMU's multiboot loader starts the uncompressed hypervisor with the dom0 kernel and
initramfs as modules. arm64: QEMU's `virt` board with virtualization on; the hypervisor is
loaded as the kernel and the dom0 kernel and initramfs are described as /chosen/module@ nodes
of the board's own device tree, dumped by QEMU and edited with fdtput.
"""

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

from . import debs, dom0
from .debs import HarnessError

DOM0_MEMORY = "512M"
MACHINE_MEMORY = "2G"  # Xen on Arm maps dom0 1:1 and needs room for that
DOM0_ARGS = "console=hvc0 rdinit=/init quiet"
QEMU = {"x86_64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}
# QEMU 7.2's "max" CPU (AVX2, MPX, PKU, XSAVE...; also with -avx,-avx2) made x86 PV processes
# crash now and then under TCG ("malloc(): corrupted top size" in xl shutdown, a segfaulting
# busybox, about 1 guest life cycle in 6); the plain "qemu64" model ran 24 cycles cleanly and
# is as fast. It has SVM but no nested paging: HVM/PVH guests would use shadow paging.
X86_CPU = "qemu64"
ARM_MACHINE = ["-machine", "virt,virtualization=on,gic-version=3", "-cpu", "cortex-a57"]
ARM_KERNEL_ADDR = 0x50000000  # above the DTB QEMU places at 0x48000000
ARM_INITRD_ADDR = 0x58000000
GRACE = 30.0  # seconds QEMU gets to exit after dom0 said it powers off
# Console lines of the hypervisor ("(XEN) ...") and of kernels ("[   12.3] ...")
NOISE = re.compile(r"^(\(XEN\) |\(d\d+\) |\[\s*\d+\.\d+\] )")


def missing_tools(arch: str) -> List[str]:
    """Host commands (and files) the harness needs for ARCH that are not installed."""
    needed = ["apt-get", "apt-cache", "dpkg-deb", QEMU.get(arch, "qemu-system-" + arch)]
    if arch == "arm64":
        needed += ["fdtput", "fdtget"]
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if not os.path.exists(debs.KEYRING):
        missing.append(debs.KEYRING)
    return missing


class XenRun:
    """What one boot produced: the whole console, the script's status and output, guest logs."""

    def __init__(self, arch: str, chunks: List[Tuple[float, bytes]], elapsed: float,
                 timed_out: bool) -> None:
        self.arch = arch
        self.chunks = chunks
        self.console = _text(b"".join(data for _when, data in chunks))
        self.elapsed = elapsed
        self.timed_out = timed_out
        match = re.search(r"^XENTEST-EXIT rc=(\d+)", self.console, re.M)
        self.rc: Optional[int] = int(match.group(1)) if match else None
        match = re.search(r"^XENTEST-SETUP-FAILED:(.*)$", self.console, re.M)
        self.setup_error = match.group(1).strip() if match else None
        match = re.search(r"^XENTEST-BEGIN\n(.*?)^XENTEST-EXIT rc=", self.console, re.M | re.S)
        #: What the dom0 script printed, without the hypervisor's and kernels' messages.
        self.script_output = "".join(
            line for line in (match.group(1) if match else "").splitlines(True)
            if not NOISE.match(line))
        self.guest_logs: Dict[str, str] = {}
        for found in re.finditer(r"^XENTEST-GUEST-LOG-BEGIN (\S+)\n(.*?)^XENTEST-GUEST-LOG-END \1$",
                                 self.console, re.M | re.S):
            self.guest_logs[found.group(1)] = found.group(2)

    def time_of(self, text: str) -> Optional[float]:
        """Seconds from QEMU's start until TEXT first appeared on the console, or None."""
        seen = b""
        needle = text.encode()
        for when, data in self.chunks:
            seen = seen[-len(needle):] + data
            if needle in seen:
                return when
        return None

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def guest_log(self) -> str:
        """All guest console logs, one after the other."""
        return "".join(self.guest_logs[name] for name in sorted(self.guest_logs))

    def tail(self, lines: int = 150) -> str:
        return "\n".join(self.console.splitlines()[-lines:])

    def diagnostics(self, lines: int = 150) -> str:
        """A summary and the console tail, for a failing assertion's message."""
        state = "timed out" if self.timed_out else "script rc=%s" % self.rc
        if self.setup_error:
            state += ", dom0 setup failed: " + self.setup_error
        return "Xen %s run: %s after %.1f s; last %d console lines:\n%s" % (
            self.arch, state, self.elapsed, lines, self.tail(lines))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")


def _fdtput(dtb: str, *args: str) -> None:
    proc = subprocess.run(["fdtput", dtb] + list(args), stderr=subprocess.PIPE,
                          universal_newlines=True)
    if proc.returncode != 0:
        raise HarnessError("fdtput %s failed: %s" % (" ".join(args), proc.stderr.strip()))


def _arm_device_tree(rundir: str, common: List[str], kernel: str, initrd: str) -> str:
    dtb = os.path.join(rundir, "virt.dtb")
    machine = list(common)
    machine[machine.index("-machine") + 1] += ",dumpdtb=" + dtb
    proc = subprocess.run([QEMU["arm64"]] + machine, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    if not os.path.exists(dtb):
        raise HarnessError("QEMU did not dump its device tree: %s" % proc.stdout.strip())
    gpio = subprocess.run(["fdtget", dtb, "/pl061@9030000", "compatible"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if gpio.returncode == 0:  # Xen gives dom0 no access to it; Xen's own CI disables it too
        _fdtput(dtb, "-t", "s", "/pl061@9030000", "status", "disabled")
    _fdtput(dtb, "-t", "x", "/chosen", "#address-cells", "2")
    _fdtput(dtb, "-t", "x", "/chosen", "#size-cells", "2")
    _fdtput(dtb, "-t", "s", "/chosen", "xen,xen-bootargs",
            "console=dtuart dom0_mem=%s,max:%s" % (DOM0_MEMORY, DOM0_MEMORY))
    _fdtput(dtb, "-t", "s", "/chosen", "xen,dom0-bootargs", DOM0_ARGS + " earlycon=xenboot")
    for addr, path, kind in ((ARM_KERNEL_ADDR, kernel, "kernel"),
                             (ARM_INITRD_ADDR, initrd, "ramdisk")):
        node = "/chosen/module@%x" % addr
        _fdtput(dtb, "-c", node)
        _fdtput(dtb, "-t", "s", node, "compatible", "multiboot," + kind, "multiboot,module")
        _fdtput(dtb, "-t", "x", node, "reg", "0", "%x" % addr, "0", "%x" % os.path.getsize(path))
    if os.path.getsize(kernel) > ARM_INITRD_ADDR - ARM_KERNEL_ADDR:
        raise HarnessError("dom0 kernel %s too big for its load slot" % kernel)
    return dtb


def qemu_command(arch: str, tree: debs.DebianTree, rundir: str, initrd: str) -> List[str]:
    """The QEMU command line that boots Xen with dom0 (kernel of TREE, INITRD)."""
    kernel = tree.kernel_image()
    common = ["-smp", "2", "-m", MACHINE_MEMORY, "-accel", "tcg", "-display", "none",
              "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot"]
    if arch == "x86_64":
        # QEMU's multiboot module list is comma-separated, "path args": keep paths plain.
        for path in (kernel, initrd):
            if re.search(r"[,\s]", path):
                raise HarnessError("path %r has a comma or space, QEMU cannot load it" % path)
        # smap=0 smep=0: with CPU models that have them, dom0 crashes at once under TCG
        xen_args = ("console=com1 com1=115200,8n1 dom0_mem=%s,max:%s smap=0 smep=0"
                    % (DOM0_MEMORY, DOM0_MEMORY))
        return [QEMU[arch], "-cpu", X86_CPU] + common + [
            "-kernel", tree.xen_image(), "-append", xen_args,
            "-initrd", "%s %s earlyprintk=xen,%s" % (kernel, DOM0_ARGS, initrd)]
    machine = ARM_MACHINE + common
    dtb = _arm_device_tree(rundir, machine, kernel, initrd)
    return [QEMU[arch]] + machine + [
        "-kernel", tree.xen_image(), "-dtb", dtb,
        "-device", "loader,file=%s,addr=0x%x,force-raw=on" % (kernel, ARM_KERNEL_ADDR),
        "-device", "loader,file=%s,addr=0x%x,force-raw=on" % (initrd, ARM_INITRD_ADDR)]


def _run_qemu(command: List[str], timeout: float,
              log_path: Optional[str]) -> Tuple[List[Tuple[float, bytes]], bool]:
    """Run QEMU to its end (or TIMEOUT); ([(seconds since start, console bytes)], timed out)."""
    start = time.monotonic()
    chunks: List[Tuple[float, bytes]] = []
    powered_off = threading.Event()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)

    def reader() -> None:
        assert proc.stdout is not None
        tail = b""
        with open(log_path or os.devnull, "wb") as log:
            while True:
                data = os.read(proc.stdout.fileno(), 65536)
                if not data:
                    return
                chunks.append((time.monotonic() - start, data))
                log.write(data)
                log.flush()
                tail = (tail + data)[-64:]
                if b"XENTEST-POWEROFF" in tail:
                    powered_off.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    deadline = start + timeout
    killed = False
    while proc.poll() is None:
        if powered_off.is_set():
            deadline = min(deadline, time.monotonic() + GRACE)
        if time.monotonic() > deadline:
            proc.kill()
            killed = True
            break
        time.sleep(0.1)
    proc.wait()
    thread.join(5)
    return chunks, killed and not powered_off.is_set()


def boot_xen(arch: str, dom0_script: str, payload: Optional[Dict[str, str]] = None,
             timeout: float = 300.0, log_path: Optional[str] = None) -> XenRun:
    """Boot Xen + dom0 for ARCH ("x86_64" or "arm64") and run DOM0_SCRIPT (bash) in dom0.

    PAYLOAD maps absolute dom0 paths to host files to put there. TIMEOUT bounds the QEMU run
    (the one-time package download and initramfs build come before it). The whole console
    is also written to LOG_PATH if given. Raises HarnessError when the machine cannot be
    prepared; a failing script or boot is reported in the returned XenRun.
    """
    missing = missing_tools(arch)
    if missing:
        raise HarnessError("missing %s; run tools/setup-test-env" % ", ".join(missing))
    tree = debs.fetch(arch)
    base = dom0.build_dom0_initramfs(tree)
    extra = dom0.build_run_archive(dom0_script, payload or {})
    rundir = tempfile.mkdtemp(prefix="xentest-")
    try:
        initrd = os.path.join(rundir, "dom0.cpio.gz")
        with open(initrd, "wb") as out, open(base, "rb") as src:
            shutil.copyfileobj(src, out)
            size = out.tell()
            out.write(b"\0" * (-size % 4))
            out.write(extra)
        command = qemu_command(arch, tree, rundir, initrd)
        start = time.monotonic()
        chunks, timed_out = _run_qemu(command, timeout, log_path)
        return XenRun(arch, chunks, time.monotonic() - start, timed_out)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)

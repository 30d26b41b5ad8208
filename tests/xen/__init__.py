"""End-to-end test harness: a real Xen 4.17 hypervisor and a Debian dom0 under QEMU (TCG).

`boot_xen` boots Xen for "x86_64" or "arm64" with a dom0 initramfs built from Debian bookworm
packages of that architecture (cached under ${XDG_CACHE_HOME:-~/.cache}/xenguest-tests/), plus
this project's meta-xenguest lib and scripts, runs a bash script in dom0 and returns an XenRun.
`build_guest_initramfs` and `guest_kernel` give a tiny busybox guest. `require_tools` skips a
test (or fails it when the CI variable is set) when the host lacks QEMU & co.
"""

import os

from .boot import XenRun, boot_xen, missing_tools
from .debs import HarnessError
from .guest import build_guest_initramfs, guest_kernel

__all__ = ["XenRun", "boot_xen", "build_guest_initramfs", "guest_kernel", "HarnessError",
           "missing_tools", "require_tools"]


def require_tools(arch: str) -> None:
    """Skip the calling test when the host lacks what ARCH needs; fail instead under CI."""
    import pytest

    missing = missing_tools(arch)
    if missing:
        message = "missing %s for the Xen %s tests; run tools/setup-test-env" % (
            ", ".join(missing), arch)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

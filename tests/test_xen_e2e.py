"""End to end: xenguest-manager deploys and runs a xenguest image under a REAL Xen hypervisor.

For each architecture, QEMU (software emulation) boots Xen 4.17 with a Debian dom0 that holds
Xen's tools, python3 and this project's layer (tests/xen/). The image, made on the host with
xenguest-mkimage, holds Debian's kernel, a busybox initramfs, a disk with one ext4 partition
filled from a tarball, a bridged network and one init script per stage. In dom0 the manager
creates, starts, reports, stops and removes the guest; the test checks what the guest saw,
the order of the init scripts and that nothing is left behind.
"""

import json
import re

import pytest

from xen import boot_xen, require_tools
from xen import scenario
from xen.guest import POWEROFF_MARK

NAME = "e2e-guest"
STATE = "/var/lib/xenguest-e2e"
IMAGE = "/xentest/e2e.xenguest"

DOM0_SCRIPT = r"""
set -u
NAME=@NAME@
STATE=@STATE@
LOG=/var/log/xen/console/guest-$NAME.log
cat > /run/manager.conf <<EOF
[manager]
state_folder = $STATE
guest_folders = /xentest/guests
host_scripts =
stop_timeout = 120
[log]
file = /var/log/xenguest-manager.log
level = debug
[disk]
backend = file
[network]
bridge = xenbr0
EOF
export XENGUEST_MANAGER_CONFIG=/run/manager.conf
fail() {
    echo "E2E-FAIL: $*"
    echo "--- manager log (tail)"
    tail -n 60 /var/log/xenguest-manager.log
    exit 1
}
run() {
    echo "e2e-run: $*"
    "$@" || fail "$* (rc $?)"
}
run xenguest-manager create @IMAGE@ "$NAME"
run xenguest-manager start "$NAME"
for i in $(seq 600); do
    grep -q @MARKER@ "$LOG" 2>/dev/null && break
    sleep 0.2
done
grep -q @MARKER@ "$LOG" || fail "the guest never printed its marker"
echo "guest-up"
echo "status-json-begin"
xenguest-manager status "$NAME" --json || fail "status --json"
echo "status-json-end"
run xenguest-manager stop "$NAME"
run xenguest-manager remove "$NAME"
# Lock files (locks/NAME.lock) stay by design: deleting a lock file races with its users.
echo "left-guests:[$(ls -A "$STATE/guests")]"
echo "left-disk-images:[$(find "$STATE" -name '*.img' 2>/dev/null)]"
echo "left-loops:[$(losetup -a)]"
echo "left-domains:"
xl list
echo "trace:"
cat @TRACE@
""".replace("@NAME@", NAME).replace("@STATE@", STATE).replace("@IMAGE@", IMAGE).replace(
    "@MARKER@", scenario.GUEST_MARKER).replace("@TRACE@", scenario.TRACE_FILE)


def _section(text: str, start: str, end: str) -> str:
    match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), text, re.S)
    return match.group(1) if match else ""


@pytest.mark.e2e
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_manager_runs_a_guest_under_real_xen(arch, tmp_path):
    require_tools(arch)
    image = scenario.build_image(arch, str(tmp_path))
    run = boot_xen(arch, DOM0_SCRIPT, {IMAGE: image}, timeout=420,
                   log_path=str(tmp_path / "console.log"))
    print("Xen %s end-to-end: %.1f s in QEMU; guest up after %s s" % (
        arch, run.elapsed, run.time_of("guest-up")))
    why = run.diagnostics()
    assert run.ok, why
    out = run.script_output

    # The guest booted, saw its disk content and its network device.
    log = run.guest_logs.get(NAME, "")
    assert scenario.GUEST_MARKER in log, why
    assert "disk-file: " + scenario.DISK_TEXT.strip() in log, why
    assert re.search(r"^guest-net: .*\beth0\b", log, re.M), why
    assert POWEROFF_MARK + " poweroff" in log, why  # a graceful shutdown

    # status --json described the running guest.
    status = json.loads(_section(out, "status-json-begin", "status-json-end"))
    assert status["name"] == NAME and status["state"] == "running", status

    # Every init script ran, in stage order, with the guest name and the image parameter.
    trace = out.split("trace:\n", 1)[1].splitlines()
    assert trace == scenario.expected_trace(NAME), out

    # After remove: no guest folder, no disk, no loop device, no domain but dom0.
    assert "left-guests:[]" in out, out
    assert "left-disk-images:[]" in out, out
    assert "left-loops:[]" in out, out
    domains = _section(out, "left-domains:", "trace:")
    assert [line.split()[0] for line in domains.splitlines()[1:]] == ["Domain-0"], domains

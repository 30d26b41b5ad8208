"""End to end: xenguest-manager deploys and runs a xenguest image under a REAL Xen hypervisor.

For each architecture, QEMU (software emulation) boots Xen 4.17 with a Debian dom0 that holds
Xen's tools, python3 and this project's layer (tests/xen/). The image, made on the host with
xenguest-mkimage, holds Debian's kernel, a busybox initramfs, a disk with one ext4 partition
filled from a tarball, a bridged network and one init script per stage. In dom0 the manager
creates, starts, reports, stops and removes the guest; the test checks what the guest saw,
the order of the init scripts and that nothing is left behind.

The manager runs with `verify = require`: the image is signed on the host (test PKI, real
openssl, a chain through an intermediate CA) and dom0's openssl checks it against the root CA.
Before the genuine image, a copy with one byte of its init.pre script flipped must be refused
with nothing done: no init script run, no disk provisioned, no state, no domain.
"""

import json
import re
import shutil

import pytest

from signing_util import flip_byte, sign_args
from xen import boot_xen, require_tools
from xen import scenario
from xen.guest import POWEROFF_MARK

NAME = "e2e-guest"
STATE = "/var/lib/xenguest-e2e"
IMAGE = "/xentest/e2e.xenguest"
TAMPERED = "/xentest/tampered.xenguest"
KEYRING = "/xentest/keyring.pem"

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
[security]
verify = require
keyring = @KEYRING@
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
leftovers() {
    # What a guest's life cycle may leave on the host; each line must end in "[]".
    # Lock files (locks/NAME.lock) stay by design: deleting one races with its users.
    echo "$1-guests:[$(ls -A "$STATE/guests" 2>/dev/null)]"
    echo "$1-files:[$(find "$STATE" -type f ! -path "$STATE/locks/*" 2>/dev/null)]"
    echo "$1-loops:[$(losetup -a)]"
    echo "$1-domains:[$(xl list | awk 'NR > 2 {print $1}')]"
}
echo "e2e-run: xenguest-manager create @TAMPERED@ tampered (must be refused)"
xenguest-manager create @TAMPERED@ tampered > /run/refusal 2>&1
echo "refusal-rc:[$?]"
echo "refusal:[$(cat /run/refusal)]"
leftovers refused
echo "refused-trace:[$(cat @TRACE@ 2>/dev/null)]"
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
leftovers removed
echo "trace:"
cat @TRACE@
"""
for _key, _value in {"@NAME@": NAME, "@STATE@": STATE, "@IMAGE@": IMAGE, "@TAMPERED@": TAMPERED,
                     "@KEYRING@": KEYRING, "@MARKER@": scenario.GUEST_MARKER,
                     "@TRACE@": scenario.TRACE_FILE}.items():
    DOM0_SCRIPT = DOM0_SCRIPT.replace(_key, _value)

# The byte flipped in the tampered copy: the first letter of the stage name its init.pre
# script traces ("init.pre" becomes "hnit.pre"), so that a script run unverified would show.
TAMPERED_MEMBER = "init.pre/10-trace-init-pre"
TAMPERED_OFFSET = scenario.TRACE_SCRIPT.index("%s")


def _section(text: str, start: str, end: str) -> str:
    match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), text, re.S)
    return match.group(1) if match else ""


def assert_nothing_left(out: str, when: str) -> None:
    """The dom0 script's `leftovers WHEN` lines are all empty."""
    for what in ("guests", "files", "loops", "domains"):
        assert "\n%s-%s:[]\n" % (when, what) in out, out


@pytest.mark.e2e
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_manager_runs_a_guest_under_real_xen(arch, tmp_path, pki):
    require_tools(arch)
    image = scenario.build_image(arch, str(tmp_path))
    scenario.mkimage(["sign", image] + sign_args(pki))
    tampered = str(tmp_path / "tampered.xenguest")
    shutil.copyfile(image, tampered)
    flip_byte(tampered, TAMPERED_MEMBER, TAMPERED_OFFSET)
    payload = {IMAGE: image, TAMPERED: tampered, KEYRING: pki.cert("root")}
    run = boot_xen(arch, DOM0_SCRIPT, payload, timeout=480,
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

    # The tampered copy was refused for its init script, before anything was done.
    assert "refusal-rc:[1]" in out, out
    assert "refusal:[xenguest-manager create: %s: refused (verify = require): digest mismatch: %s" % (
        TAMPERED, TAMPERED_MEMBER) in out, out
    assert_nothing_left(out, "refused")
    assert "refused-trace:[]" in out, out

    # status --json described the running guest and the verified signer.
    status = json.loads(_section(out, "status-json-begin", "status-json-end"))
    assert status["name"] == NAME and status["state"] == "running", status
    assert status["signer"]["subject"] == "CN=Image Signer", status

    # Every init script ran, in stage order, with the guest name and the image parameter.
    trace = out.split("trace:\n", 1)[1].splitlines()
    assert trace == scenario.expected_trace(NAME), out

    # After remove: no guest folder, no disk, no loop device, no domain but dom0.
    assert_nothing_left(out, "removed")

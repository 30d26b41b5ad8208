"""End to end: xenguest-manager deploys and runs xenguest images under a REAL Xen hypervisor.

For each architecture, QEMU (software emulation) boots Xen 4.17 with a Debian dom0 that holds
Xen's tools, python3, nftables, dnsmasq and this project's layer (tests/xen/), installed
where the layer's recipes put it: the settings, vif-xenguest among Xen's scripts, and the
SysV init scripts of xenguest-network and xenguest-manager.

Two images, made on the host with xenguest-mkimage (tests/xen/scenario.py): the main guest
(a disk with an ext4 partition filled from a tarball, built in dom0 with debugfs, and a kept
data partition, one init script per stage, the host's NAT network with a forwarded port;
versions 2 and 3 of it for its updates) and a bridged guest (on the host's guest bridge, a
static address, a prebuilt disk that dom0 writes with zstd). dom0 boots the way a SysV host
does: the network service (bridge and NAT network from the settings: bridges, nftables,
dnsmasq), Xen's real xendomains script, then the manager's autostart, which creates and
starts both. Then:

* the main guest got its address from dnsmasq, answers ping and HTTP from dom0, directly and
  through dom0's forwarded port; the bridged guest answers ping on the bridge;
* from inside the guests: the bridged guest reaches the main guest through dom0's forwarded
  port (destination NAT), the main guest reaches the bridged guest masqueraded as dom0;
* the main guest is updated, running, to version 2 (a new root file system; its data partition
  kept: the guest's own list of the versions that booted from it grows) and checked by a health
  check script; then an update to version 3 whose health check fails leaves version 2 running
  again, with the same data partition, addresses and previous image;
* the host shuts down in SysV order: the manager shuts both guests down (gracefully), then
  xendomains finds nothing to save, then the network service takes the networks down: no
  forward, reservation, lease, vif, table, bridge or dnsmasq is left; at the next boot
  xendomains restores nothing; remove leaves no state.

The manager runs with `verify = require`: the images are signed on the host (test PKI, real
openssl, a chain through an intermediate CA) and dom0's openssl checks them against the root
CA. Before anything else, a copy of the main image with one byte of its init.pre script
flipped (made in dom0) must be refused with nothing done: no init script run, no disk, no
state, no domain.
"""

import json
import os
import re

import pytest

from signing_util import sign_args
from xen import boot_xen, require_tools
from xen import scenario
from xen.dom0 import LAYER
from xen.guest import POWEROFF_MARK
from xenguest.format.archive import TarIndex

NAME = "e2e-guest"
BRIDGED = "e2e-bridged"
STATE = "/var/lib/xenguest"
IMAGE = "/xentest/guests/%s.xenguest" % NAME
BRIDGED_IMAGE = "/xentest/guests/%s.xenguest" % BRIDGED
#: The root file systems of versions 2 and 3 of the main guest (their images are made in
#: dom0: all of them in the payload would not fit in dom0's memory), and the signer's files.
ROOTFS = "/xentest/rootfs-v%s.tar"
SIGNER = {"--key": "/xentest/signer.key", "--cert": "/xentest/signer.pem",
          "--chain": "/xentest/intermediate.pem"}
TAMPERED = "/xentest/tampered.xenguest"
KEYRING = "/xentest/keyring.pem"
DYNAMIC = os.path.join(LAYER, "dynamic-layers", "virtualization-layer")
#: The boot integration of the layer's recipes, installed where the recipes put it.
INIT_SCRIPTS = {
    "/etc/init.d/xenguest-network": os.path.join(
        DYNAMIC, "recipes-network", "xenguest-network", "files", "xenguest-network.init"),
    "/etc/init.d/xenguest-manager": os.path.join(
        DYNAMIC, "recipes-manager", "xenguest-manager", "files", "xenguest-manager.init"),
}

DOM0_SCRIPT = r"""
set -u
NAME=@NAME@
BRIDGED=@BRIDGED@
STATE=@STATE@
RUN=/run/xenguest/network
XENDOMAINS=/usr/lib/xen-4.17/bin/xendomains
LOG=/var/log/xen/console/guest-$NAME.log
BLOG=/var/log/xen/console/guest-$BRIDGED.log
# dom0's root file system is the initramfs (tmpfs, half of dom0's memory by default): it
# holds the images and the guests made of them (arm64 kernels are 33 MB uncompressed).
mount -o remount,size=80% /
# What the layer's recipes install: the settings, the command, vif-xenguest.
mkdir -p /etc/xenguest
cat > /etc/xenguest/manager.conf <<SETTINGS
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
bridge_address = @HOST_BRIDGE_ADDRESS@
[security]
verify = require
keyring = @KEYRING@
SETTINGS
ln -s /opt/meta-xenguest/scripts/xenguest-manager /usr/bin/xenguest-manager
cp /opt/meta-xenguest/scripts/vif-xenguest /etc/xen/scripts/vif-xenguest
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
wait_for() {  # wait_for FILE TEXT [FROM]: up to 180 s, from byte FROM (1: the start)
    for i in $(seq 900); do
        tail -c +"${3:-1}" "$1" 2>/dev/null | grep -q "$2" && return 0
        sleep 0.2
    done
    fail "$1 never showed $2"
}
log_end() {  # the byte after the end of a console log (it grows across a guest's starts)
    echo $(( $(wc -c < "$1") + 1 ))
}
leftovers() {
    # What a guest's life cycle may leave on the host; each line must end in "[]".
    # Lock files (locks/NAME.lock) stay by design: deleting one races with its users.
    echo "$1-guests:[$(ls -A "$STATE/guests" 2>/dev/null)]"
    echo "$1-files:[$(find "$STATE" -type f ! -path "$STATE/locks/*" 2>/dev/null)]"
    echo "$1-loops:[$(losetup -a)]"
    echo "$1-domains:[$(xl list | awk 'NR > 2 {print $1}')]"
}
http_get() {  # http_get HOST PORT PATH: the answer's last line (busybox-static's wget
              # crashes: it resolves names through glibc's NSS, which a static binary lacks)
    printf 'GET %s HTTP/1.0\r\n\r\n' "$3" | nc -w 20 "$1" "$2" | tail -n 1
}
net_leftovers() {
    # What a nat guest's vif may leave: forwards, reservations, records, leases, vifs.
    echo "$1-forwards:[$(nft list map inet xenguest tcp_forward 2>/dev/null | grep elements)]"
    echo "$1-reservations:[$(ls -A $RUN/dhcp-hosts 2>/dev/null)]"
    echo "$1-records:[$(ls -A $RUN/guests 2>/dev/null)]"
    echo "$1-leases:[$(cat $RUN/dnsmasq.leases 2>/dev/null)]"
    echo "$1-vifs:[$(ls /sys/class/net | grep '^vif')]"
}
# The tampered copy is made here, not shipped: the initramfs unpacks into half of dom0's
# memory, before the remount above.
cp @IMAGE@ @TAMPERED@ && printf '@TAMPER_BYTE@' | dd of=@TAMPERED@ bs=1 seek=@TAMPER_OFFSET@ \
    conv=notrunc 2> /dev/null || fail "cannot make the tampered copy"
echo "e2e-run: xenguest-manager create @TAMPERED@ tampered (must be refused)"
xenguest-manager create @TAMPERED@ tampered > /run/refusal 2>&1
echo "refusal-rc:[$?]"
echo "refusal:[$(cat /run/refusal)]"
leftovers refused
echo "refused-trace:[$(cat @TRACE@ 2>/dev/null)]"
rm @TAMPERED@

# The host boots: the SysV scripts in their order (S75, S83, S85).
run /etc/init.d/xenguest-network start
run bash $XENDOMAINS start
run /etc/init.d/xenguest-manager start
wait_for "$LOG" @MARKER@
wait_for "$BLOG" @MARKER@
wait_for "$LOG" "guest-httpd: up"
echo "guest-up"
echo "prebuilt-disks:[$(grep -c 'wrote the prebuilt disk' /var/log/xenguest-manager.log)]"
echo "status-json-begin"
xenguest-manager status "$NAME" --json || fail "status --json"
echo "status-json-end"
xenguest-manager network status
ADDRESS=$(xenguest-manager status "$NAME" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["nic"]["ipv4"])')
echo "ping-nat:[$(ping -c 1 -W 10 "$ADDRESS" > /dev/null && echo ok)]"
echo "http-nat:[$(http_get "$ADDRESS" @HTTP@ /cgi-bin/who)]"
echo "http-forward:[$(http_get @HOST@ @FORWARD@ /cgi-bin/who)]"
echo "ping-bridged:[$(ping -c 1 -W 10 @BRIDGED_HOST@ > /dev/null && echo ok)]"
echo "bridge-ports:[$(ls /sys/class/net/xenbr0/brif | wc -l)]"
echo "nat-ports:[$(ls /sys/class/net/xenguest-nat/brif | wc -l)]"
net_leftovers running
wait_for "$LOG" "guest-fetch:"
wait_for "$BLOG" "guest-fetch:"

# Versions 2 and 3 of the main guest: its image with another root file system and
# version, signed again.
rm @BRIDGED_IMAGE@  # installed: dom0's memory is the disk here
for v in 2 3; do
    cp @IMAGE@ /xentest/v$v.xenguest
    run xenguest-mkimage update /xentest/v$v.xenguest --guest-version=$v \
        --disk-add-file=/xentest/rootfs-v$v.tar:rootfs.tar
    run xenguest-mkimage sign /xentest/v$v.xenguest @SIGNER@
done
rm @IMAGE@
# Update the running main guest to version 2, which is up once its console shows it.
from=$(log_end "$LOG")
printf '#!/bin/sh
tail -c +%s %s | grep -q "guest-version: 2"
' "$from" "$LOG" > /run/up-2
chmod 755 /run/up-2
run xenguest-manager update "$NAME" @IMAGE_V2@ --health-check /run/up-2 --health-timeout 300
rm @IMAGE_V2@
echo "updated-json-begin"
xenguest-manager status "$NAME" --json || fail "status --json"
echo "updated-json-end"
# Version 3 never passes its health check: version 2 must run again.
printf '#!/bin/sh
echo "not up, on purpose"
exit 1
' > /run/down
chmod 755 /run/down
from=$(log_end "$LOG")
echo "e2e-run: xenguest-manager update $NAME @IMAGE_V3@ (must fail its health check)"
xenguest-manager update "$NAME" @IMAGE_V3@ --health-check /run/down --health-timeout 5 \
    > /run/failed-update 2>&1
echo "failed-update-rc:[$?]"
echo "failed-update:[$(tail -n 1 /run/failed-update)]"
rm @IMAGE_V3@
wait_for "$LOG" "guest-version: 2" "$from"
echo "restored-json-begin"
xenguest-manager status "$NAME" --json || fail "status --json"
echo "restored-json-end"

# The host shuts down: the SysV scripts in their order (K15, K17, K25).
run /etc/init.d/xenguest-manager stop
leftovers stopped
net_leftovers stopped
run bash $XENDOMAINS stop
echo "xendomains-saved:[$(ls -A /var/lib/xen/save 2>/dev/null)]"
run /etc/init.d/xenguest-network stop
echo "down-tables:[$(nft list tables)]"
echo "down-bridges:[$(ls /sys/class/net | grep -E '^(xenbr0|xenguest-nat)$')]"
echo "down-dnsmasq:[$(pidof dnsmasq)]"
echo "down-runtime:[$(ls -A $RUN | grep -v '^lock$')]"
# The next boot: xendomains has nothing to restore.
run bash $XENDOMAINS start
echo "restored-domains:[$(xl list | awk 'NR > 2 {print $1}')]"
run bash $XENDOMAINS stop

run xenguest-manager remove "$NAME"
run xenguest-manager remove "$BRIDGED"
leftovers removed
echo "trace:"
cat @TRACE@
"""
for _key, _value in {"@NAME@": NAME, "@BRIDGED@": BRIDGED, "@STATE@": STATE,
                     "@TAMPERED@": TAMPERED, "@KEYRING@": KEYRING,
                     "@IMAGE@": IMAGE, "@BRIDGED_IMAGE@": BRIDGED_IMAGE,
                     "@IMAGE_V2@": "/xentest/v2.xenguest", "@IMAGE_V3@": "/xentest/v3.xenguest",
                     "@SIGNER@": " ".join("%s %s" % item for item in SIGNER.items()),
                     "@MARKER@": scenario.GUEST_MARKER, "@TRACE@": scenario.TRACE_FILE,
                     "@HOST_BRIDGE_ADDRESS@": scenario.HOST_BRIDGE_ADDRESS,
                     "@HOST@": scenario.HOST_BRIDGE_ADDRESS.split("/")[0],
                     "@BRIDGED_HOST@": scenario.BRIDGED_ADDRESS.split("/")[0],
                     "@FORWARD@": str(scenario.FORWARD_PORT),
                     "@HTTP@": str(scenario.GUEST_HTTP_PORT)}.items():
    DOM0_SCRIPT = DOM0_SCRIPT.replace(_key, _value)

# The byte flipped in the tampered copy: the first letter of the stage name its init.pre
# script traces ("init.pre" becomes "hnit.pre"), so that a script run unverified would show.
TAMPERED_MEMBER = "init.pre/10-trace-init-pre"
TAMPERED_OFFSET = scenario.TRACE_SCRIPT.index("%s")
GUEST_ITEMS = ("guests", "files", "loops", "domains")
NET_ITEMS = ("forwards", "reservations", "records", "leases", "vifs")


def _section(text: str, start: str, end: str) -> str:
    match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), text, re.S)
    return match.group(1) if match else ""


def _line(out: str, key: str) -> str:
    """The value of the dom0 script's `KEY:[VALUE]` line."""
    match = re.search(r"^%s:\[(.*?)\]$" % re.escape(key), out, re.M | re.S)
    assert match, "no %s line in:\n%s" % (key, out)
    return match.group(1)


def assert_nothing_left(out: str, when: str, items=GUEST_ITEMS) -> None:
    """The dom0 script's `leftovers WHEN` (or `net_leftovers WHEN`) lines are all empty."""
    for item in items:
        assert "\n%s-%s:[]\n" % (when, item) in out, out


@pytest.mark.e2e
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_manager_runs_guests_under_real_xen(arch, tmp_path, pki):
    require_tools(arch)
    image = scenario.build_image(arch, str(tmp_path))
    bridged = scenario.build_bridged_image(arch, str(tmp_path))
    for path in (image, bridged):
        scenario.mkimage(["sign", path] + sign_args(pki))
    with TarIndex.open(image) as index:
        offset = index.file_member(TAMPERED_MEMBER).data_offset + TAMPERED_OFFSET
    with open(image, "rb") as f:
        f.seek(offset)
        flipped = f.read(1)[0] ^ 0x01
    script = DOM0_SCRIPT.replace("@TAMPER_OFFSET@", str(offset)).replace(
        "@TAMPER_BYTE@", "\\%03o" % flipped)
    payload = {IMAGE: image, BRIDGED_IMAGE: bridged, KEYRING: pki.cert("root")}
    for version in ("2", "3"):
        payload[ROOTFS % version] = scenario.build_rootfs(str(tmp_path), version)
    signer = sign_args(pki)
    payload.update({path: signer[signer.index(option) + 1] for option, path in SIGNER.items()})
    payload.update(INIT_SCRIPTS)
    run = boot_xen(arch, script, payload, timeout=720,
                   log_path=str(tmp_path / "console.log"))
    phases = [("script", "XENTEST-BEGIN"), ("networks up", "e2e-run: bash"),
              ("guests up", "guest-up"), ("guests fetched", "e2e-run: xenguest-mkimage update"),
              ("versions made", "e2e-run: xenguest-manager update"),
              ("updated", "updated-json-end"), ("failed update undone", "restored-json-end"),
              ("(shutdown)", "e2e-run: /etc/init.d/xenguest-manager stop"),
              ("guests stopped", "stopped-guests:"), ("networks down", "down-tables:"),
              ("removed", "removed-guests:"), ("end", "XENTEST-EXIT")]
    print("Xen %s end-to-end: %.1f s in QEMU; %s" % (arch, run.elapsed, ", ".join(
        "%s %.0f s" % (label, run.time_of(marker) or -1) for label, marker in phases)))
    why = run.diagnostics()
    assert run.ok, why
    out = run.script_output

    # The tampered copy was refused for its init script, before anything was done.
    assert "refusal-rc:[1]" in out, out
    assert "refusal:[xenguest-manager create: %s: refused (verify = require): digest mismatch: %s" % (
        TAMPERED, TAMPERED_MEMBER) in out, out
    assert_nothing_left(out, "refused")
    assert "refused-trace:[]" in out, out

    # The main guest booted, saw its disk content and its network device, and got the
    # address the manager reserved for it from the host's DHCP server.
    log = run.guest_logs.get(NAME, "")
    assert scenario.GUEST_MARKER in log, why
    assert "disk-file: " + scenario.DISK_TEXT.strip() in log, why
    assert re.search(r"^guest-net: .*\beth0\b", log, re.M), why
    status = json.loads(_section(out, "status-json-begin", "status-json-end"))
    assert status["name"] == NAME and status["state"] == "running", status
    assert status["signer"]["subject"] == "CN=Image Signer", status
    nic = status["nic"]
    assert "guest-lease: %s router 192.168.213.1" % nic["ipv4"] in log, why
    assert "  %s: %s (%s), forwards %d:%d/tcp" % (
        NAME, nic["ipv4"], nic["mac"], scenario.FORWARD_PORT, scenario.GUEST_HTTP_PORT) in out

    # dom0 reaches it directly and through its forwarded port; the bridged guest is on the
    # bridge the network service made.
    host = scenario.HOST_BRIDGE_ADDRESS.split("/")[0]
    bridged_host = scenario.BRIDGED_ADDRESS.split("/")[0]
    assert _line(out, "ping-nat") == "ok", out
    assert _line(out, "http-nat") == "who: nat-guest from [::ffff:192.168.213.1]", out
    assert _line(out, "http-forward") == "who: nat-guest from [::ffff:%s]" % host, out
    assert _line(out, "ping-bridged") == "ok", out
    assert (_line(out, "bridge-ports"), _line(out, "nat-ports")) == ("1", "1"), out
    assert _line(out, "running-forwards").split() == [
        "elements", "=", "{", str(scenario.FORWARD_PORT), ":", nic["ipv4"], ".",
        str(scenario.GUEST_HTTP_PORT), "}"], out
    assert _line(out, "running-reservations") == nic["mac"].replace(":", "-"), out
    assert nic["mac"] in _line(out, "running-leases"), out

    # Inside the guests: the bridged guest reached the main guest through dom0's forwarded
    # port (its own address seen), the main guest the bridged one masqueraded as dom0.
    bridged_log = run.guest_logs.get(BRIDGED, "")
    assert "guest-address: %s" % scenario.BRIDGED_ADDRESS in bridged_log, why
    # The bridged guest booted with the disk prebuilt on the build machine, written by dom0.
    assert "disk-file: " + scenario.BRIDGED_DISK_TEXT.strip() in bridged_log, why
    assert _line(out, "prebuilt-disks") == "1", out
    assert "guest-fetch: who: nat-guest from [::ffff:%s]" % bridged_host in bridged_log, why
    assert "guest-fetch: who: bridged-guest from [::ffff:%s]" % host in log, why

    # The update to version 2: a new root file system, the data partition kept (the guest's
    # list of the versions that booted from it grew), the same addresses, version 1 kept.
    updated = json.loads(_section(out, "updated-json-begin", "updated-json-end"))
    assert (updated["state"], updated["version"], updated["compatible"]) == (
        "running", "2", scenario.COMPATIBLE), updated
    assert updated["previous"]["version"] == "1" and updated["nic"] == nic, updated
    # The update to version 3 failed its health check: version 2 runs again, unchanged.
    assert _line(out, "failed-update-rc") == "1", out
    assert _line(out, "failed-update") == (
        "xenguest-manager update: guest %s: update failed: check the guest's health: not "
        "healthy within 5 s: /run/down failed with exit status 1: not up, on purpose; guest "
        "%s is back to its image before the update and running again" % (NAME, NAME)), out
    restored = json.loads(_section(out, "restored-json-begin", "restored-json-end"))
    for key in ("version", "previous", "nic", "image", "updated", "disk"):
        assert restored[key] == updated[key], (key, restored, updated)
    assert restored["state"] == "running", restored
    # What the guest saw at each boot: version 1, 2, (3 if it booted before its health check
    # failed), 2 again; each time the data partition's list of versions, kept across them.
    booted = re.findall(r"^guest-version: (\d+)$", log, re.M)
    assert booted in (["1", "2", "3", "2"], ["1", "2", "2"]), why
    data = re.findall(r"^guest-data: (.*?) ?$", log, re.M)
    assert data[:2] == ["1", "1 2"] and data[-1] in ("1 2 2", "1 2 3 2"), why

    # The host shut down: the manager stopped both guests gracefully, leaving no forward,
    # reservation, record, lease or vif; xendomains found nothing to save; the network
    # service left no table, bridge, dnsmasq or runtime file; nothing was restored.
    for guest_log in (log, bridged_log):
        assert POWEROFF_MARK + " poweroff" in guest_log, why
    assert_nothing_left(out, "stopped", ("domains", "loops"))
    assert_nothing_left(out, "stopped", NET_ITEMS)
    for key in ("xendomains-saved", "down-tables", "down-bridges", "down-dnsmasq",
                "down-runtime", "restored-domains"):
        assert _line(out, key) == "", (key, out)

    # Every init script ran, in stage order, with the guest name and the image parameter.
    # (4 starts of the main guest: version 1, 2, 3 on trial and 2 again)
    trace = out.split("trace:\n", 1)[1].splitlines()
    assert trace == scenario.expected_trace(NAME) * 4, out

    # After remove: no guest folder, no disk, no loop device, no domain but dom0.
    assert_nothing_left(out, "removed")

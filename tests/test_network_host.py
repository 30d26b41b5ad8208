"""The host's guest networks, for real, in a network namespace of their own.

Every test runs xenguest-manager's network code with the real tools — ip,
nftables, dnsmasq, dhcp_release, busybox udhcpc and nc — inside a fresh
network (and mount) namespace made with unshare, so that nothing of the test
machine's own network is touched.  A "guest" is a second namespace joined to
the NAT bridge by a veth pair, with the guest's MAC address: its DHCP client
gets the reserved address from the host's dnsmasq, and a connection to the
host's forwarded port reaches its listener.

Only Xen itself is stood in for: ``xl`` (manager_util.FakeXl) and
``xenstore-read`` (a script answering from a JSON file, the values Xen's
vif hotplug environment would have), because there is no hypervisor here.
The end-to-end tests (test_xen_e2e.py) run the same code under real Xen.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest
from manager_util import LAUNCHER, FakeXl, make_image, write

NEEDED = ("unshare", "nsenter", "ip", "nft", "dnsmasq", "dhcp_release", "busybox")  # setup-test-env

XENSTORE_READ = r'''#!{python} -S
"""Stand-in for Xen's xenstore-read: the values of a vif's hotplug environment."""
import json, sys
values = json.load(open({values!r}))
if sys.argv[1] not in values:
    sys.stderr.write("xenstore-read: couldn't read path %s\n" % sys.argv[1])
    sys.exit(1)
print(values[sys.argv[1]])
'''

UDHCPC_SCRIPT = """#!/bin/sh
# applies the lease in the guest namespace (what a guest's default script does)
case "$1" in
    bound|renew)
        ip addr add "$ip/$mask" dev "$interface"
        echo "guest-lease: $ip router $router"
        ;;
esac
"""

PRELUDE = """set -u
trap 'kill $(jobs -p) 2>/dev/null' EXIT
mount -t sysfs sysfs /sys
ip link set lo up
export XENGUEST_MANAGER_CONFIG={config}
M="{python} {launcher}"
guest_ns() {{  # a namespace for the guest, its end of a veth pair in it, and its MAC
    unshare -n sleep 600 >/dev/null &
    GUEST_PID=$!
    sleep 0.2
    ip link add vif9.0 type veth peer name geth
    ip link set geth netns $GUEST_PID
    nsenter -t $GUEST_PID -n ip link set geth address "$1"
    nsenter -t $GUEST_PID -n ip link set geth up
    nsenter -t $GUEST_PID -n ip link set lo up
    ip link set vif9.0 master {nat_bridge} up
}}
in_guest() {{ nsenter -t $GUEST_PID -n "$@"; }}
start_nat_guest() {{  # NAME IMAGE: create and start it (fake xl), then run what Xen's
                      # vif-xenguest runs for its vif (backend/vif/9/0); sets MAC and ADDRESS
    $M create "$2" "$1" && $M start "$1" || echo start-failed
    MAC=$($M status "$1" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["nic"]["mac"])')
    ADDRESS=$($M status "$1" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["nic"]["ipv4"])')
    echo "{{\\"backend/vif/9/0/mac\\": \\"$MAC\\", \\"/local/domain/9/name\\": \\"$1\\"}}" > {values}
    XENBUS_PATH=backend/vif/9/0 $M network hotplug online || echo online-failed
}}
leftovers() {{
    echo "$1-elements:[$(nft list map inet xenguest tcp_forward 2>/dev/null | grep -c '[0-9] : [0-9]')]"
    echo "$1-hosts:[$(ls {run}/network/dhcp-hosts 2>/dev/null)]"
    echo "$1-records:[$(ls {run}/network/guests 2>/dev/null)]"
    echo "$1-leases:[$(cat {run}/network/dnsmasq.leases 2>/dev/null)]"
}}
"""


@pytest.fixture
def net(tmp_path):
    """Settings, a fake xl and xenstore-read, and a runner of bash scripts in a namespace."""
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        message = f"missing {', '.join(missing)}: run tools/setup-test-env"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    probe = subprocess.run(["unshare", "-n", "-m", "true"], stderr=subprocess.PIPE)
    if probe.returncode != 0:
        message = f"cannot make a network namespace: {probe.stderr.decode().strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    class Net:
        pass

    n = Net()
    # dnsmasq drops to user nobody: the runtime folder must be readable by it,
    # and pytest's tmp_path is not (its root is private to the user).
    n.run = tempfile.mkdtemp(prefix="xenguest-net-")
    os.chmod(n.run, 0o755)
    n.tmp = tmp_path
    n.xl = FakeXl(str(tmp_path))
    n.values = str(tmp_path / "xenstore.json")
    n.xenstore = write(str(tmp_path / "xenstore-read"),
                       XENSTORE_READ.format(python=sys.executable, values=n.values), 0o755)
    n.udhcpc_script = write(str(tmp_path / "udhcpc.script"), UDHCPC_SCRIPT, 0o755)
    n.state = str(tmp_path / "state")
    n.config = write(str(tmp_path / "manager.conf"), textwrap.dedent(f"""\
        [manager]
        state_folder = {n.state}
        runtime_folder = {n.run}
        guest_folders =
        host_scripts =
        stop_timeout = 2
        lock_timeout = 5
        [log]
        file = {tmp_path / 'manager.log'}
        level = debug
        [network]
        bridge = xgbr0
        bridge_address = 192.168.50.1/24
        nat_bridge = xgnat0
        nat_address = 192.168.213.1/24
        nat_dns = 192.168.213.1
        [security]
        verify = off
        [commands]
        xl = {n.xl.path}
        xenstore-read = {n.xenstore}
        """))

    def bash(script: str, timeout: float = 90) -> str:
        text = PRELUDE.format(config=n.config, python=sys.executable, launcher=LAUNCHER,
                              nat_bridge="xgnat0", run=n.run, values=n.values)
        text += textwrap.dedent(script)
        proc = subprocess.run(["unshare", "-n", "-m", "--propagation", "private", "bash", "-c",
                               text], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=timeout, cwd=str(tmp_path))
        return proc.stdout

    n.bash = bash
    yield n
    shutil.rmtree(n.run, ignore_errors=True)


def nat_image(tmp_path, forwards="2222:22 5353:53/udp"):
    return make_image(str(tmp_path / "web.xenguest"), [
        ("--set-param", "XENGUEST_NETWORK_TYPE=nat"),
        ("--set-param", f"XENGUEST_NETWORK_PORT_FORWARD={forwards}")])


def test_up_status_down_leave_nothing(net):
    out = net.bash("""
        ip link add keep0 type bridge
        $M network up && echo up-ok
        $M network up && echo up-again-ok
        echo "nat-address:[$(ip -o -4 addr show dev xgnat0 | awk '{print $4}')]"
        echo "bridge-address:[$(ip -o -4 addr show dev xgbr0 | awk '{print $4}')]"
        echo "forwarding:[$(cat /proc/sys/net/ipv4/ip_forward)]"
        echo "tables:[$(nft list tables)]"
        DNSMASQ=$(cat {run}/network/dnsmasq.pid)
        echo "dnsmasq:[$(cat /proc/$DNSMASQ/comm)]"
        $M network status --json > status.json
        $M network down && echo down-ok
        echo "after-links:[$(ip -o link show | awk -F': ' '{print $2}' | sort | tr '\\n' ' ')]"
        echo "after-tables:[$(nft list tables)]"
        echo "after-forwarding:[$(cat /proc/sys/net/ipv4/ip_forward)]"
        echo "after-dnsmasq:[$(grep -s '^State:' /proc/$DNSMASQ/status | grep -v zombie)]"
        echo "after-run:[$(ls {run}/network)]"
        """.replace("{run}", net.run))
    for line in ("up-ok", "up-again-ok", "down-ok", "nat-address:[192.168.213.1/24]",
                 "bridge-address:[192.168.50.1/24]", "forwarding:[1]",
                 "tables:[table inet xenguest]", "dnsmasq:[dnsmasq]",
                 "after-links:[keep0 lo ]", "after-tables:[]", "after-forwarding:[0]",
                 "after-dnsmasq:[]", "after-run:[lock]"):
        assert line in out, out
    status = json.loads((net.tmp / "status.json").read_text())
    assert status["nat"]["exists"] and status["nat"]["dhcp_server_pid"]
    assert status["bridge"] == {"name": "xgbr0", "exists": True} and status["guests"] == []


def test_a_bridge_that_existed_before_up_stays(net):
    out = net.bash("""
        ip link add xgbr0 type bridge
        $M network up && $M network down && echo cycle-ok
        echo "links:[$(ip -o link show | awk -F': ' '{print $2}' | sort | tr '\\n' ' ')]"
        """)
    assert "cycle-ok" in out and "links:[lo xgbr0 ]" in out, out


def test_bridge_members_join_the_bridge_with_its_static_address(net):
    with open(net.config) as f:
        text = f.read()
    with open(net.config, "w") as f:
        f.write(text.replace("[security]", "bridge_members = lan0\n"
                             "bridge_gateway = 192.168.50.254\n[security]"))
    out = net.bash("""
        ip link add lan0 type veth peer name lan1
        ip addr add 10.9.9.9/24 dev lan0
        $M network up || echo up-failed
        echo "master:[$(basename $(readlink /sys/class/net/lan0/master))]"
        echo "lan0-addr:[$(ip -o -4 addr show dev lan0)]"
        echo "route:[$(ip route show default)]"
        $M network down
        echo "after-master:[$(readlink /sys/class/net/lan0/master)]"
        """)
    assert "master:[xgbr0]" in out and "lan0-addr:[]" in out, out
    assert "route:[default via 192.168.50.254 dev xgbr0" in out, out
    assert "after-master:[]" in out, out


def test_nat_guest_dhcp_forward_and_release(net):
    """Start (fake xl), Xen's online hotplug, DHCP, a forwarded connection, offline, stop."""
    image = nat_image(net.tmp)
    out = net.bash(r"""
        $M network up || echo up-failed
        start_nat_guest web {image}
        guest_ns "$MAC"
        leftovers online
        in_guest busybox udhcpc -i geth -n -q -t 5 -T 1 -O dns -s {script} 2>&1 | grep guest-lease
        in_guest busybox nc -l -p 22 -e busybox echo hello-from-the-guest &
        sleep 0.5
        echo "forwarded:[$(busybox nc -w 5 192.168.213.1 2222 </dev/null)]"
        echo "direct-ping:[$(busybox ping -c 1 -W 2 $ADDRESS >/dev/null && echo ok)]"
        echo "leases:[$(awk '{{print $2, $3}}' {run}/network/dnsmasq.leases)]"
        $M network status
        XENBUS_PATH=backend/vif/9/0 $M network hotplug offline || echo offline-failed
        leftovers offline
        XENBUS_PATH=backend/vif/9/0 $M network hotplug offline && echo offline-again-ok
        $M stop web && echo stopped
        $M network down
        """.format(image=image, script=net.udhcpc_script, run=net.run))
    assert "failed" not in out, out
    with open(os.path.join(net.state, "guests", "web", "xenguest-manager.json")) as f:
        nic = json.load(f)["nic"]
    mac, ipv4 = nic["mac"], nic["ipv4"]
    assert "online-elements:[1]" in out and f"online-hosts:[{mac.replace(':', '-')}]" in out, out
    assert f"guest-lease: {ipv4} router 192.168.213.1" in out, out
    assert "forwarded:[hello-from-the-guest]" in out and "direct-ping:[ok]" in out, out
    assert f"leases:[{mac} {ipv4}]" in out, out
    assert f"web: {ipv4} ({mac}), forwards 2222:22/tcp, 5353:53/udp" in out, out
    for what in ("elements", "hosts", "records", "leases"):
        assert f"offline-{what}:[0]" in out or f"offline-{what}:[]" in out, out
    assert "offline-again-ok" in out and "stopped" in out, out
    config = net.xl.load()["configs"][0]
    assert f'vif = ["mac={mac},bridge=xgnat0,script=vif-xenguest"]' in config


def test_stop_releases_what_the_hotplug_script_left(net):
    """The manager releases after a stop, when Xen's script did not run (its xl killed)."""
    image = nat_image(net.tmp, "2222:22")
    out = net.bash(r"""
        $M network up || echo up-failed
        start_nat_guest web {image}
        leftovers started
        $M stop web || echo stop-failed
        leftovers stopped
        $M network down
        """.format(image=image))
    assert "failed" not in out, out
    assert "started-elements:[1]" in out and "stopped-elements:[0]" in out, out
    assert "stopped-hosts:[]" in out and "stopped-records:[]" in out, out


def test_a_port_another_guest_forwards_is_refused(net):
    first = nat_image(net.tmp, "2222:22")
    second = make_image(str(net.tmp / "db.xenguest"), [
        ("--set-param", "XENGUEST_NETWORK_TYPE=nat"),
        ("--set-param", "XENGUEST_NETWORK_PORT_FORWARD=8080:80 2222:23")])
    out = net.bash(r"""
        $M network up || echo up-failed
        start_nat_guest web {first}
        $M create {second} db
        $M start db 2>&1 | tail -n 1
        echo "elements:[$(nft list map inet xenguest tcp_forward | grep elements | tr -s ' \t' ' ')]"
        $M network down
        """.format(first=first, second=second))
    assert "start-failed" not in out and "online-failed" not in out, out
    assert ("xenguest-manager start: guest db: host port 2222/tcp is forwarded to running "
            "guest web already") in out, out
    assert [c[0] for c in net.xl.ops()] == ["create", "unpause"], net.xl.ops()  # web's only
    assert "/guests/web/" in net.xl.ops()[0][2]
    with open(os.path.join(net.state, "guests", "web", "xenguest-manager.json")) as f:
        ipv4 = json.load(f)["nic"]["ipv4"]
    assert f"elements:[ elements = {{ 2222 : {ipv4} . 22 }}]" in out, out


NETWORKD_DRIVER = r'''
import os, sys
sys.path.insert(0, {lib!r})
from xenguest.manager.config import load_config
from xenguest.programs import Host
from xenguest.manager.hostnet import HostNetwork
config = load_config({config!r})
network = HostNetwork(config, Host(config.commands), systemd_run={systemd!r})
network.up()
print("unit:[" + open(os.path.join({systemd!r}, "network", "05-xenguest.network")).read() + "]")
network.down()
print("after:[%s]" % os.listdir(os.path.join({systemd!r}, "network")))
'''


@pytest.mark.parametrize("bridge_settings,names", [
    ("", "xgnat0 vif*"),
    ("bridge_members = lan0\n", "xgnat0 xgbr0 lan0 vif*"),
])
def test_systemd_networkd_is_kept_off_the_guest_networks(net, bridge_settings, names):
    """On a host booted with systemd, 'network up' writes a runtime networkd unit that
    leaves the NAT bridge and the vifs alone (and the guest bridge when the settings
    configure it: else the host's own configuration may), and 'down' removes it."""
    from manager_util import ROOT
    systemd = str(net.tmp / "run-systemd")
    os.makedirs(os.path.join(systemd, "system"))  # what a systemd boot has
    with open(net.config) as f:
        text = f.read().replace("bridge_address = 192.168.50.1/24\n", "")
    with open(net.config, "w") as f:
        f.write(text.replace("[security]", bridge_settings + "[security]"))
    driver = write(str(net.tmp / "driver.py"), NETWORKD_DRIVER.format(
        lib=os.path.join(ROOT, "meta-xenguest", "lib"), config=net.config, systemd=systemd))
    out = net.bash(f"""
        ip link add lan0 type veth peer name lan1
        {sys.executable} {driver}
        """)
    assert f"Name={names}\n\n[Link]\nUnmanaged=yes\n]" in out, out
    assert "after:[[]]" in out, out


def test_the_guest_bridge_gets_its_address_by_dhcp(net):
    """bridge_address = dhcp: udhcpc (with the distribution's default script) gets an
    address for the guest bridge from the network of its member; down releases it."""
    if not os.path.exists("/etc/udhcpc/default.script"):
        message = "Debian's udhcpc (its default script) is missing: run tools/setup-test-env"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with open(net.config) as f:
        text = f.read().replace("bridge_address = 192.168.50.1/24\n", "")
    with open(net.config, "w") as f:
        f.write(text.replace("[security]", "bridge_members = lan0\nbridge_address = dhcp\n"
                             "[security]"))
    lan = str(net.tmp / "lan")
    os.mkdir(lan)
    os.chmod(str(net.tmp), 0o755)
    os.chmod(lan, 0o777)
    out = net.bash(f"""
        # the default script writes the resolver configuration: a private one
        touch {lan}/resolv.conf && mount --bind {lan}/resolv.conf /etc/resolv.conf
        # the LAN: a DHCP server in a namespace of its own, behind lan0
        unshare -n sleep 600 >/dev/null &
        LAN_PID=$!
        sleep 0.2
        ip link add lan0 type veth peer name lan1
        ip link set lan1 netns $LAN_PID
        nsenter -t $LAN_PID -n ip link set lo up
        nsenter -t $LAN_PID -n ip addr add 10.77.0.1/24 dev lan1
        nsenter -t $LAN_PID -n ip link set lan1 up
        nsenter -t $LAN_PID -n dnsmasq --port=0 --interface=lan1 --bind-interfaces \\
            --dhcp-range=10.77.0.50,10.77.0.60,1h --dhcp-option=option:dns-server,10.77.0.53 \\
            --dhcp-leasefile={lan}/leases --pid-file={lan}/pid
        $M network up || echo up-failed
        for i in $(seq 50); do
            ip -o -4 addr show dev xgbr0 | grep -q 10.77.0. && break
            sleep 0.2
        done
        echo "address:[$(ip -o -4 addr show dev xgbr0 | awk '{{print $4}}')]"
        echo "route:[$(ip route show default)]"
        echo "resolver:[$(cat /etc/resolv.conf | tr '\\n' ' ')]"
        $M network down
        sleep 0.5
        echo "lan0-after:[$(readlink /sys/class/net/lan0/master)]"
        echo "udhcpc-after:[$(ls {net.run}/network)]"
        kill $(cat {lan}/pid)
        """)
    assert "up-failed" not in out, out
    assert re.search(r"address:\[10\.77\.0\.(5\d|60)/24\]", out), out
    assert "route:[default via 10.77.0.1 dev xgbr0" in out, out
    assert "nameserver 10.77.0.53" in out, out
    assert "lan0-after:[]" in out and "udhcpc-after:[lock]" in out, out

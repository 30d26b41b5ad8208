"""Guest networks in the manager: settings, addresses, the generated
nftables and dnsmasq text (checked by the real nft and dnsmasq), and where the
network checks sit in the start sequence.

The toolstack is the RecordingToolstack double (no hypervisor here); the
scripts, state folder and configuration are real.  tests/test_network_host.py
runs the network code itself with the real tools in a network namespace.
"""

import ipaddress
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from manager_util import RecordingToolstack, lines, make_image, manager, script, write
from xenguest.format.netparams import PortForward
from xenguest.manager import ManagerError, natconf
from xenguest.manager.config import ManagerConfig, parse_config
from xenguest.manager.guestnet import (
    ActiveGuest,
    NatRuntime,
    assign_nic,
    derive_ipv4,
    derive_mac,
    frontend_domid,
    vif_spec,
)
from xenguest.programs import Host

NAT = "192.168.213.1/24"


def tool(name):
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}")
                                  else None)
    if path is None:
        message = f"{name} is missing: run tools/setup-test-env"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# -- settings --------------------------------------------------------------------

def test_network_settings_defaults_and_values():
    config = parse_config("[network]\nbridge_members = eth0 eth1\nbridge_address = DHCP\n"
                          "nat_address = 10.20.30.40/16\nnat_dns = 9.9.9.9 1.1.1.1\n", "t")
    assert (config.bridge_members, config.bridge_address, config.nat_address,
            config.nat_dns) == (["eth0", "eth1"], "dhcp", "10.20.30.40/16",
                                ["9.9.9.9", "1.1.1.1"])
    assert ManagerConfig().nat_bridge == "xenguest-nat"


@pytest.mark.parametrize("text,message", [
    ("bridge_address = 10.0.0.1", "not a host address with its prefix length"),
    ("bridge_address = 10.0.0.0/24", "not a host address"),
    ("bridge_address = static", "is not an IPv4 ADDRESS/PREFIX"),
    ("nat_address = 10.0.0.255/24", "not a host address"),
    ("nat_address = 10.0.0.1/30", "prefix length from 16 to 29"),
    ("nat_address = fd00::1/64", "is not an IPv4 ADDRESS/PREFIX"),
    ("nat_dns = 1.1.1", "'1.1.1' is not an IPv4 address"),
    ("nat_bridge = xenbr0", "bridge and nat_bridge are both xenbr0"),
    ("nat_bridge = ..", "not a valid network interface name"),
    ("bridge_members = eth0 xenguest-nat", "xenguest-nat is a bridge of xenguest-manager"),
    ("bridge_members = eth0 eth0", "an interface is listed twice"),
    ("bridge_members = eth0:1,eth1", "not a valid network interface name"),
    ("bridge_gateway = 10.0.0.1", "bridge_gateway needs a static bridge_address"),
    ("bridge_address = 10.0.0.2/24\nbridge_gateway = 10.0.1.1", "not in 10.0.0.0/24"),
    ("bridge_address = 192.168.213.9/16", "overlaps the NAT network 192.168.213.0/24"),
])
def test_bad_network_settings(text, message):
    with pytest.raises(ManagerError, match=message):
        parse_config("[network]\n" + text + "\n", "t.conf")


# -- addresses -------------------------------------------------------------------

def test_addresses_are_derived_from_the_name():
    assert derive_mac("web") == derive_mac("web") != derive_mac("db")
    assert derive_mac("web").startswith("00:16:3e:") and len(derive_mac("web")) == 17
    assert derive_mac("web", 1) != derive_mac("web", 0)
    network = ipaddress.IPv4Network("192.168.213.0/24")
    for name in ("web", "db", "a" * 64):
        address = ipaddress.IPv4Address(derive_ipv4(name, NAT))
        assert address in network and address not in (network[0], network[-1])
    nic = assign_nic("web", "nat", NAT, None, [])
    assert nic == {"mac": derive_mac("web"), "ipv4": derive_ipv4("web", NAT)}
    assert assign_nic("web", "bridge", NAT, None, []) == {"mac": derive_mac("web")}
    assert assign_nic("web", "none", NAT, None, []) is None


def test_address_collisions_are_resolved_in_a_fixed_order():
    taken = {"mac": derive_mac("web"), "ipv4": derive_ipv4("web", NAT)}
    nic = assign_nic("web", "nat", NAT, None, [taken])
    assert nic == {"mac": derive_mac("web", 1), "ipv4": derive_ipv4("web", NAT, 1)}
    assert assign_nic("web", "nat", NAT, None, [taken]) == nic
    # the host's own address is never given
    host_slot = assign_nic("x", "nat", "192.168.213.1/29", None, [])["ipv4"]
    assert host_slot != "192.168.213.1"


def test_recorded_addresses_stay_while_valid():
    current = {"mac": "00:16:3e:00:00:01", "ipv4": "192.168.213.77"}
    assert assign_nic("web", "nat", NAT, current, [{"mac": "00:16:3e:00:00:02"}]) == current
    # another network: a new address of it, the MAC stays
    moved = assign_nic("web", "nat", "10.1.0.1/16", current, [])
    assert moved["mac"] == current["mac"]
    assert ipaddress.IPv4Address(moved["ipv4"]) in ipaddress.IPv4Network("10.1.0.0/16")
    # another guest holds it now: it moves
    assert assign_nic("web", "nat", NAT, current, [current]) != current


def test_a_full_network_is_an_error():
    others = [{"mac": f"m{i}", "ipv4": f"192.168.213.{i}"} for i in range(2, 7)]
    with pytest.raises(ManagerError, match="no free address for guest web in the NAT "
                                           r"network 192.168.213.0/29"):
        assign_nic("web", "nat", "192.168.213.1/29", None, others)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True),
                min_size=1, max_size=13, unique=True))  # a /28 has 13 guest slots
def test_assigned_addresses_are_unique(names):
    nics = []
    for name in names:
        nics.append(assign_nic(name, "nat", "10.0.0.1/28", None, nics))
    assert len({n["mac"] for n in nics}) == len({n["ipv4"] for n in nics}) == len(names)
    assert "10.0.0.1" not in {n["ipv4"] for n in nics}


def test_vif_lines():
    config = ManagerConfig(bridge="br-lan", nat_bridge="br-nat")
    nic = {"mac": "00:16:3e:01:02:03", "ipv4": "192.168.213.5"}
    assert vif_spec("bridge", nic, config) == "mac=00:16:3e:01:02:03,bridge=br-lan,script=vif-bridge"
    assert vif_spec("nat", nic, config) == "mac=00:16:3e:01:02:03,bridge=br-nat,script=vif-xenguest"
    assert frontend_domid("backend/vif/12/0") == 12
    for bad in ("backend/vbd/12/0", "backend/vif/x/0", "vif/12/0"):
        with pytest.raises(ManagerError, match="not a vif backend path"):
            frontend_domid(bad)


# -- generated text, checked by the real tools ---------------------------------------

def nft_check(path):
    proc = subprocess.run([tool("nft"), "--check", "-f", path], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("address", [NAT, "10.20.0.1/16", "172.31.255.254/29"])
def test_nft_table_is_valid(tmp_path, address):
    text = natconf.nft_table(address)
    assert text.startswith("# xenguest-manager's NAT network")
    network = ipaddress.IPv4Interface(address).network
    assert f"ip saddr {network} ip daddr != {network} masquerade" in text
    nft_check(write(str(tmp_path / "table.nft"), text))
    forwards = [PortForward(2222, 22), PortForward(5353, 53, "udp")]
    elements = natconf.add_forwards("192.168.213.5", forwards) + natconf.delete_forwards(forwards)
    nft_check(write(str(tmp_path / "elements.nft"), text + elements))
    nft_check(write(str(tmp_path / "delete.nft"), natconf.delete_table()))


def test_nft_map_listing_is_read_back():
    listing = ("table inet xenguest {\n\tmap tcp_forward {\n\t\ttype inet_service : ipv4_addr"
               " . inet_service\n\t\telements = { 22 : 10.0.0.5 . 22, 2222 : 10.0.0.6 . 2022 "
               "}\n\t}\n}\n")
    assert natconf.parse_map(listing, "tcp") == [(PortForward(22, 22), "10.0.0.5"),
                                                 (PortForward(2222, 2022), "10.0.0.6")]
    assert natconf.parse_map(listing.replace("elements = {", "x = {"), "tcp") == []


@pytest.mark.parametrize("dns", [[], ["10.0.2.3", "9.9.9.9"]])
def test_dnsmasq_configuration_is_valid(tmp_path, dns):
    hosts = str(tmp_path / "hosts")
    os.mkdir(hosts)
    text = natconf.dnsmasq_conf("xenguest-nat", NAT, dns, hosts, str(tmp_path / "leases"),
                                str(tmp_path / "pid"))
    write(os.path.join(hosts, "00-16-3e-01-02-03"), natconf.dhcp_host("00:16:3e:01:02:03",
                                                                      "192.168.213.5"))
    conf = write(str(tmp_path / "dnsmasq.conf"), text)
    proc = subprocess.run([tool("dnsmasq"), "--test", f"--conf-file={conf}"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert proc.returncode == 0 and "syntax check OK" in proc.stdout, proc.stdout
    assert "dhcp-range=192.168.213.0,static,255.255.255.0,1h" in text
    assert ("dhcp-option=option:dns-server,10.0.2.3,9.9.9.9" in text) == bool(dns)


def test_lease_file_lines():
    text = ("1796494663 00:16:3E:11:22:33 192.168.213.57 * 01:00:16:3e:11:22:33\n"
            "1796494664 00:16:3e:11:22:34 192.168.213.58 guest *\n\n")
    assert natconf.leases(text) == {
        "00:16:3e:11:22:33": ["192.168.213.57", "00:16:3e:11:22:33", "01:00:16:3e:11:22:33"],
        "00:16:3e:11:22:34": ["192.168.213.58", "00:16:3e:11:22:34"]}


def test_networkd_unit():
    text = natconf.networkd_unmanaged(["xenbr0", "vif*"])
    assert "[Match]\nName=xenbr0 vif*\n\n[Link]\nUnmanaged=yes\n" in text


# -- the start sequence ------------------------------------------------------------

TRACE = 'echo "$XENGUEST_MANAGER_STAGE $(basename "$0")" >> "$TRACE"\n'


def network_guest(tmp_path, kind, pre_script=TRACE, forwards=""):
    trace = str(tmp_path / "trace")
    edits = [("--set-param", f"XENGUEST_NETWORK_TYPE={kind}"),
             ("--set-param", f"TRACE={trace}"),
             ("--init-pre", script(str(tmp_path / "src" / "10-pre"), pre_script))]
    if forwards:
        edits.append(("--set-param", f"XENGUEST_NETWORK_PORT_FORWARD={forwards}"))
    image = make_image(str(tmp_path / "net.xenguest"), edits)
    toolstack = RecordingToolstack()
    toolstack.bridges = set()
    toolstack.trace = trace
    mgr = manager(str(tmp_path / "state"), toolstack)
    mgr.create(image)
    return mgr, toolstack, trace



def test_the_bridge_check_comes_after_init_pre(tmp_path):
    """init.pre prepares the host (here it "creates" the bridge): the check follows it."""
    bridges = str(tmp_path / "bridges")
    mgr, toolstack, trace = network_guest(
        tmp_path, "bridge", TRACE + f'echo xenbr0 >> {bridges}\n')
    toolstack.bridges_file = bridges
    mgr.start("net")
    assert lines(trace) == ["init.pre 10-pre", "xl bridge? xenbr0", "xl create net",
                            "xl unpause net"]
    mac = mgr.state.load("net").nic["mac"]
    assert f'vif = ["mac={mac},bridge=xenbr0,script=vif-bridge"]' in toolstack.configs[0]


def test_a_missing_bridge_refuses_the_start_after_init_pre(tmp_path):
    mgr, toolstack, trace = network_guest(tmp_path, "bridge")
    with pytest.raises(ManagerError, match="^guest net needs network bridge xenbr0, which "
                                           "does not exist on this host$"):
        mgr.start("net")
    assert lines(trace) == ["init.pre 10-pre", "xl bridge? xenbr0"]
    assert not any(op == "create" for op, _ in toolstack.calls)


def test_a_nat_guest_needs_the_nat_network_up(tmp_path):
    mgr, toolstack, trace = network_guest(tmp_path, "nat")
    with pytest.raises(ManagerError, match=r"^guest net: the NAT network is not up \(bridge "
                                           r"xenguest-nat missing\): start the "):
        mgr.start("net")
    toolstack.bridges = {"xenguest-nat"}
    with pytest.raises(ManagerError, match=r"the NAT network is not up \(its DHCP server "
                                           r"\(dnsmasq\) missing\)"):
        mgr.start("net")
    assert lines(trace) == ["init.pre 10-pre", "xl bridge? xenguest-nat"] * 2


@pytest.fixture
def stand_in_dnsmasq():
    """Puts a running process (that ignores SIGHUP, like dnsmasq) into the pid file
    'network up' leaves: the NAT network counts as up."""
    processes = []

    def start(mgr):
        proc = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                 "signal.signal(signal.SIGHUP, signal.SIG_IGN); time.sleep(120)"])
        processes.append(proc)
        runtime = NatRuntime(mgr.config, mgr.host)
        runtime.prepare()
        write(runtime.pid_file, f"{proc.pid}\n")
        return runtime

    yield start
    for proc in processes:
        proc.kill()
        proc.wait()


def test_a_nat_guest_starts_with_its_vif_and_keeps_its_addresses(tmp_path, stand_in_dnsmasq):
    mgr, toolstack, trace = network_guest(tmp_path, "nat", forwards="2222:22")
    toolstack.bridges = {"xenguest-nat"}
    stand_in_dnsmasq(mgr)
    mgr.start("net")
    nic = mgr.state.load("net").nic
    assert nic == {"mac": derive_mac("net"), "ipv4": derive_ipv4("net", NAT)}
    assert (f'vif = ["mac={nic["mac"]},bridge=xenguest-nat,script=vif-xenguest"]'
            in toolstack.configs[0])
    [status] = mgr.status("net")
    assert status.nic == nic and status.network == "nat"
    mgr.stop("net")
    mgr.start("net")
    assert mgr.state.load("net").nic == nic
    assert toolstack.configs[0] == toolstack.configs[1]


def test_a_forwarded_port_of_a_running_guest_refuses_the_start(tmp_path, stand_in_dnsmasq):
    mgr, toolstack, trace = network_guest(tmp_path, "nat", forwards="8080:80 2222:22")
    toolstack.bridges = {"xenguest-nat"}
    runtime = stand_in_dnsmasq(mgr)
    runtime.prepare()
    write(os.path.join(runtime.guests_dir, "00-16-3e-00-00-09.json"), ActiveGuest(
        "other", "00:16:3e:00:00:09", "192.168.213.9", [PortForward(2222, 2222)]).to_json())
    with pytest.raises(ManagerError, match="^guest net: host port 2222/tcp is forwarded to "
                                           "running guest other already$"):
        mgr.start("net")
    assert not any(op == "create" for op, _ in toolstack.calls)


def test_a_failed_start_releases_what_the_hotplug_script_added(tmp_path, stand_in_dnsmasq):
    """init.d fails after xl create: the domain is destroyed and the NAT network released,
    even if Xen's vif script could not (here nothing ran it: the record stays behind)."""
    mgr, toolstack, trace = network_guest(tmp_path, "nat")
    toolstack.bridges = {"xenguest-nat"}
    runtime = stand_in_dnsmasq(mgr)
    mac, ipv4 = derive_mac("net"), derive_ipv4("net", NAT)
    folder = mgr.state.guest_dir("net")
    # the online hotplug would have written this record; init.d writes it here
    record = os.path.join(runtime.guests_dir, mac.replace(":", "-") + ".json")
    script(os.path.join(folder, "init.d", "10-fail"),
           f"cat > {record} <<'EOF'\n{ActiveGuest('net', mac, ipv4).to_json()}EOF\nexit 4\n")
    mgr.host = Host({"nft": tool("nft")})
    mgr.nat = NatRuntime(mgr.config, mgr.host)
    with pytest.raises(ManagerError, match="init.d/10-fail failed with exit status 4; "
                                           "domain net was destroyed"):
        mgr.start("net")
    assert not os.path.exists(record)
    assert ("destroy", "net") in toolstack.calls

"""The xenguest-manager and xenguest-network recipes, parsed and installed by the
real BitBake.

The recipe needs meta-virtualization (the stand-in's collection name); the
stand-in core has OE-core's allarch, systemd and update-rc.d classes (the
variables the recipe reads), and this test sets the unit folder and
DISTRO_FEATURES of OE-core's configuration.
"""

import filecmp
import os
import stat

import bitbake_env as be
import pytest
from xenguest.programs import PROVIDERS

RECIPE = os.path.join(be.LAYER, "dynamic-layers", "virtualization-layer", "recipes-manager",
                      "xenguest-manager", "xenguest-manager_0.1.0.bb")
FILES = os.path.join(os.path.dirname(RECIPE), "files")
NETWORK_RECIPE = os.path.join(be.LAYER, "dynamic-layers", "virtualization-layer",
                              "recipes-network", "xenguest-network", "xenguest-network_0.1.0.bb")
NETWORK_FILES = os.path.join(os.path.dirname(NETWORK_RECIPE), "files")
UNITDIR = "/usr/lib/systemd/system"
#: meta-virtualization's xen-tools SysV start and stop numbers (recipes-extended/xen/
#: xen-tools.inc, INITSCRIPT_PARAMS "defaults N": start N, stop 100 - N).
XEN_SYSV = {"xencommons": (80, 20), "xendomains": (83, 17)}

#: The package that brings each command the manager runs.
PACKAGES = {
    "sfdisk": "util-linux-sfdisk", "mkswap": "util-linux-mkswap",
    "fallocate": "util-linux-fallocate", "lvresize": "lvm2",
    "mke2fs": "e2fsprogs-mke2fs", "debugfs": "e2fsprogs", "mkfs.vfat": "dosfstools",
    "mcopy": "mtools", "mmd": "mtools", "xl": "xen-tools-xl",
    "lvcreate": "lvm2", "lvremove": "lvm2", "lvs": "lvm2", "vgs": "lvm2", "zstd": "zstd",
    # the networks (xenguest-network)
    "ip": "iproute2", "nft": "nftables", "dnsmasq": "dnsmasq", "dhcp_release": "dnsmasq",
    "xenstore-read": "xen-tools-xenstore", "udhcpc": "busybox-udhcpc", "networkctl": "systemd",
}
#: Commands only some hosts need: a recommendation is enough.
RECOMMENDED = {"lvm2", "busybox-udhcpc"}
#: Commands of the init system itself (networkctl: only where systemd-networkd runs).
INIT_SYSTEM = {"systemd"}


@pytest.fixture(scope="module", params=[("scarthgap", "systemd"), ("wrynose", "sysvinit")],
                ids=lambda p: "-".join(p))
def installed(request, tmp_path_factory):
    series, init = request.param
    local_conf = ('localstatedir = "/var"\n'
                  f'systemd_system_unitdir = "{UNITDIR}"\n'
                  f'DISTRO_FEATURES = "ipv4 xen {init}"\n')
    env = be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")), series=series, virtualization=True,
                        local_conf=local_conf)
    d = env.parse(RECIPE)
    env.run_until(RECIPE, d, "do_install")
    network = env.parse(NETWORK_RECIPE)
    env.run_until(NETWORK_RECIPE, network, "do_install")
    return init, d, network


def test_install(installed):
    init, d, _ = installed
    image = d.getVar("D")

    def installed_file(path, mode, source):
        full = image + path
        assert stat.S_IMODE(os.stat(full).st_mode) == mode, path
        assert filecmp.cmp(full, source, shallow=False), path

    installed_file("/usr/bin/xenguest-manager", 0o755,
                   os.path.join(be.LAYER, "scripts", "xenguest-manager"))
    installed_file("/etc/xenguest/manager.conf", 0o644, os.path.join(FILES, "manager.conf"))
    for folder in ("/usr/share/xenguest/guests", "/etc/xenguest/guests", "/var/lib/xenguest"):
        assert os.path.isdir(image + folder), folder
    unit = image + UNITDIR + "/xenguest-manager.service"
    script = image + "/etc/init.d/xenguest-manager"
    if init == "systemd":
        installed_file(UNITDIR + "/xenguest-manager.service", 0o644,
                       os.path.join(FILES, "xenguest-manager.service"))
        assert not os.path.exists(script)
    else:
        installed_file("/etc/init.d/xenguest-manager", 0o755,
                       os.path.join(FILES, "xenguest-manager.init"))
        assert not os.path.exists(unit)
    assert d.getVar("SYSTEMD_SERVICE:xenguest-manager") == "xenguest-manager.service"
    assert d.getVar("INITSCRIPT_PARAMS") == "defaults 85 15"
    assert d.getVar("CONFFILES:xenguest-manager") == "/etc/xenguest/manager.conf"


def test_runtime_dependencies_cover_every_command(installed):
    _, d, network = installed
    rdepends = (d.getVar("RDEPENDS:xenguest-manager").split()
                + network.getVar("RDEPENDS:xenguest-network").split())
    recommends = (d.getVar("RRECOMMENDS:xenguest-manager").split()
                  + network.getVar("RRECOMMENDS:xenguest-network").split())
    assert set(PACKAGES) == set(PROVIDERS)
    for command, package in PACKAGES.items():
        if package not in INIT_SYSTEM:
            assert package in (recommends if package in RECOMMENDED else rdepends), command
    for package in ("xenguest-tools", "xen-tools-xencommons", "xen-tools-scripts-block",
                    "xen-tools-scripts-network", "python3-core", "python3-compression"):
        assert package in rdepends
    # The manager comes with its networks; they need the manager and bash (vif-xenguest).
    assert "xenguest-network" in d.getVar("RRECOMMENDS:xenguest-manager").split()
    assert {"xenguest-manager", "bash"} <= set(network.getVar("RDEPENDS:xenguest-network").split())


def test_network_install(installed):
    init, _, d = installed
    image = d.getVar("D")
    script = image + "/etc/xen/scripts/vif-xenguest"
    assert stat.S_IMODE(os.stat(script).st_mode) == 0o755
    assert filecmp.cmp(script, os.path.join(be.LAYER, "scripts", "vif-xenguest"), shallow=False)
    unit = image + UNITDIR + "/xenguest-network.service"
    sysv = image + "/etc/init.d/xenguest-network"
    if init == "systemd":
        assert filecmp.cmp(unit, os.path.join(NETWORK_FILES, "xenguest-network.service"))
        assert not os.path.exists(sysv)
    else:
        assert filecmp.cmp(sysv, os.path.join(NETWORK_FILES, "xenguest-network.init"))
        assert stat.S_IMODE(os.stat(sysv).st_mode) == 0o755
        assert not os.path.exists(unit)
    assert d.getVar("SYSTEMD_SERVICE:xenguest-network") == "xenguest-network.service"
    assert "/etc/xen/scripts/vif-xenguest" in d.getVar("FILES:xenguest-network").split()


def _sysv(d):
    """(start, stop) of a recipe's "defaults START STOP"."""
    words = d.getVar("INITSCRIPT_PARAMS").split()
    assert words[0] == "defaults"
    return int(words[1]), int(words[2])


def _unit(path):
    """The [Unit] ordering of a systemd unit: {"After": [...], "Before": [...], ...}."""
    found = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep:
                found.setdefault(key, []).extend(value.split())
    return found


def test_boot_order_network_xendomains_manager(installed):
    """The networks come up before the Xen services and the guests and go down after;
    the manager starts after xendomains and so stops before it: at shutdown it shuts
    its guests down first, and xendomains finds none of them to save or restore."""
    _, d, network = installed
    manager_start, manager_stop = _sysv(d)
    network_start, network_stop = _sysv(network)
    for start, stop in XEN_SYSV.values():
        assert network_start < start < manager_start
        assert manager_stop < stop < network_stop
    manager_unit = _unit(os.path.join(FILES, "xenguest-manager.service"))
    network_unit = _unit(os.path.join(NETWORK_FILES, "xenguest-network.service"))
    assert {"xendomains.service", "xenguest-network.service"} <= set(manager_unit["After"])
    assert "xenguest-network.service" in manager_unit["Wants"]
    assert {"xendomains.service", "xenguest-manager.service"} <= set(network_unit["Before"])
    assert network_unit["ExecStart"] == ["/usr/bin/xenguest-manager", "network", "up"]
    assert network_unit["ExecStop"] == ["/usr/bin/xenguest-manager", "network", "down"]

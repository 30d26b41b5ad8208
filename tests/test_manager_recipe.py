"""The xenguest-manager recipe, parsed and installed by the real BitBake.

The recipe needs meta-virtualization (the stand-in's collection name); the
stand-in core has OE-core's allarch, systemd and update-rc.d classes (the
variables the recipe reads), and this test sets the unit folder and
DISTRO_FEATURES of OE-core's configuration.
"""

import filecmp
import os
import stat

import pytest

import bitbake_env as be
from xenguest.manager.host import PROVIDERS

RECIPE = os.path.join(be.LAYER, "dynamic-layers", "virtualization-layer", "recipes-manager",
                      "xenguest-manager", "xenguest-manager_0.1.0.bb")
FILES = os.path.join(os.path.dirname(RECIPE), "files")
UNITDIR = "/usr/lib/systemd/system"

#: The package that brings each command the manager runs.
PACKAGES = {
    "sfdisk": "util-linux-sfdisk", "mkswap": "util-linux-mkswap",
    "mke2fs": "e2fsprogs-mke2fs", "debugfs": "e2fsprogs", "mkfs.vfat": "dosfstools",
    "mcopy": "mtools", "mmd": "mtools", "xl": "xen-tools-xl",
    "lvcreate": "lvm2", "lvremove": "lvm2", "lvs": "lvm2", "vgs": "lvm2", "zstd": "zstd",
}


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
    return init, d


def test_install(installed):
    init, d = installed
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
    _, d = installed
    rdepends = d.getVar("RDEPENDS:xenguest-manager").split()
    recommends = d.getVar("RRECOMMENDS:xenguest-manager").split()
    assert set(PACKAGES) == set(PROVIDERS)
    for command, package in PACKAGES.items():
        assert package in (recommends if package == "lvm2" else rdepends), command
    for package in ("xenguest-tools", "xen-tools-xencommons", "xen-tools-scripts-block",
                    "xen-tools-scripts-network", "python3-core", "python3-compression"):
        assert package in rdepends

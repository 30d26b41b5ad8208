"""The settings file of xenguest-manager, and the files the recipe installs."""

import os
import re
import shlex

import pytest
from manager_util import ROOT, write
from xenguest.cli.manager import COMMANDS, main
from xenguest.manager import ManagerError
from xenguest.manager.config import (
    DEFAULT_PATH,
    ENV_VAR,
    ManagerConfig,
    default_text,
    load_config,
    parse_config,
)

RECIPE = os.path.join(ROOT, "meta-xenguest", "dynamic-layers", "virtualization-layer",
                      "recipes-manager", "xenguest-manager")


def test_defaults_without_a_file():
    config = load_config(None, {})
    assert config == ManagerConfig()
    assert config.guest_folders == ["/usr/share/xenguest/guests", "/etc/xenguest/guests"]
    assert (config.state_folder, config.disk_backend, config.bridge) == (
        "/var/lib/xenguest", "file", "xenbr0")
    assert config.stop_timeout == 60


def test_which_file(tmp_path):
    option = write(str(tmp_path / "a.conf"), "[network]\nbridge = br-a\n")
    env = write(str(tmp_path / "b.conf"), "[network]\nbridge = br-b\n")
    assert load_config(option, {ENV_VAR: env}).bridge == "br-a"
    assert load_config(None, {ENV_VAR: env}).bridge == "br-b"
    assert load_config(None, {ENV_VAR: env}).source == env
    with pytest.raises(ManagerError, match="no such settings file"):
        load_config(str(tmp_path / "missing.conf"), {})
    with pytest.raises(ManagerError, match="no such settings file"):
        load_config(None, {ENV_VAR: str(tmp_path / "missing.conf")})
    assert DEFAULT_PATH == "/etc/xenguest/manager.conf"


def test_every_setting():
    config = parse_config("""
[manager]
guest_folders = /a/guests
    /b/guests
state_folder = /srv/xen//state/
host_scripts =
stop_timeout = 5.5
script_timeout = 10
lock_timeout = 1
[log]
file =
level = DEBUG
[disk]
backend = lvm
volume_group = vg0
lv_prefix =
[network]
bridge = br0
[commands]
xl = /opt/xen/bin/xl
mkfs.vfat = /sbin/mkfs.fat
""", "test.conf")
    assert config.guest_folders == ["/a/guests", "/b/guests"]
    assert config.state_folder == "/srv/xen/state"
    assert (config.host_scripts, config.log_file, config.log_level) == ("", "", "debug")
    assert (config.stop_timeout, config.script_timeout, config.lock_timeout) == (5.5, 10, 1)
    assert (config.disk_backend, config.volume_group, config.lv_prefix) == ("lvm", "vg0", "")
    assert config.commands == {"xl": "/opt/xen/bin/xl", "mkfs.vfat": "/sbin/mkfs.fat"}


@pytest.mark.parametrize("text,message", [
    ("[disk]\nbackend = zfs\n", "test.conf: [disk] backend: 'zfs' is not one of file, lvm"),
    ("[disk]\nsize = 3\n", "test.conf: [disk] size: unknown setting"),
    ("[network]\nbridge = a,b\n", "not a valid network interface name"),
    ("[manager]\nstate_folder = relative\n", "'relative' is not an absolute path"),
    ("[manager]\nstop_timeout = soon\n", "'soon' is not a number of seconds"),
    ("[manager]\nstop_timeout = -1\n", "must be a positive number of seconds"),
    ("[manager]\nstop_timeout = \u0661\u0660\n", "'\u0661\u0660' is not a number of seconds"),
    ("[manager]\nlock_timeout = 1_0\n", "'1_0' is not a number of seconds"),
    ("[manager]\nscript_timeout = nan\n", "'nan' is not a number of seconds"),
    ("[guests]\n", "unknown section [guests]"),
    ("[disk]\nbackend = lvm\n", "backend is lvm but no volume_group is set"),
    ("[commands]\nxl = xl\n", "[commands] xl: 'xl' is not an absolute path"),
    ("bridge = br0\n", "not a valid settings file: File contains no section headers."),
])
def test_errors_name_the_setting(text, message):
    with pytest.raises(ManagerError) as err:
        parse_config(text, "test.conf")
    assert message in str(err.value)


def test_installed_default_file_is_the_documented_defaults():
    with open(os.path.join(RECIPE, "files", "manager.conf")) as f:
        text = f.read()
    assert text == default_text()
    assert parse_config(text, "manager.conf") == ManagerConfig()


def test_boot_integration_calls_real_operations(capsys):
    with open(os.path.join(RECIPE, "files", "xenguest-manager.service")) as f:
        unit = f.read()
    with open(os.path.join(RECIPE, "files", "xenguest-manager.init")) as f:
        init = f.read()
    calls = [shlex.split(line.split("=", 1)[1]) for line in unit.splitlines()
             if line.startswith(("ExecStart=", "ExecStop="))]
    calls += [shlex.split(m.replace('"$MANAGER"', "/usr/bin/xenguest-manager"))
              for m in re.findall(r'^\s+("\$MANAGER" .*)$', init, re.M)]
    assert [c[1] for c in calls] == ["autostart", "shutdown-all", "autostart",
                                     "shutdown-all", "status"]
    for call in calls:
        assert call[0] == "/usr/bin/xenguest-manager"
        assert main(call[1:] + ["--help"]) == 0
    assert {c.name for c in COMMANDS} >= {"autostart", "shutdown-all", "status"}
    assert "After=xenstored.service xenconsoled.service xen-init-dom0.service" in unit
    capsys.readouterr()

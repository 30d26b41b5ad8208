"""The settings of xenguest-manager: an INI file, ``/etc/xenguest/manager.conf`` by default.

Which file is read: the ``--config`` option, else the environment variable
``XENGUEST_MANAGER_CONFIG``, else :data:`DEFAULT_PATH`.  A file named by the
option or the variable must exist; the default file is optional (built-in
defaults apply).  Unknown sections and keys are errors, so that a typo never
silently falls back to a default.

Adding a setting is one field of :class:`ManagerConfig` (its default) and one
row of :data:`SETTINGS` (where it is read from and how it is checked).
"""

import configparser
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from ..digits import decimal_number
from ..fsutil import require_path
from . import ManagerError

DEFAULT_PATH = "/etc/xenguest/manager.conf"
ENV_VAR = "XENGUEST_MANAGER_CONFIG"

DISK_BACKENDS = ("file", "lvm")
LOG_LEVELS = ("debug", "info", "warning", "error")
#: Image verification policies (see docs/manager.md).
VERIFY_POLICIES = ("require", "if-signed", "off")
DEFAULT_KEYRING = "/etc/xenguest/keyring.pem"

_VG_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}\Z")
_IFNAME = re.compile(r"(?!\.{1,2}\Z)[A-Za-z0-9_.-]{1,15}\Z")
_COMMAND = re.compile(r"[A-Za-z0-9_.+-]+\Z")


@dataclass
class ManagerConfig:
    """Every setting, with its built-in default."""

    #: Folders searched for images by ``autostart`` (``NAME.xenguest``), in order.
    guest_folders: List[str] = field(default_factory=lambda: [
        "/usr/share/xenguest/guests", "/etc/xenguest/guests"])
    #: Where guests live: ``guests/NAME/`` and ``locks/NAME.lock``.
    state_folder: str = "/var/lib/xenguest"
    #: Host-wide init scripts: ``init.pre/``, ``init.d/``, ``init.post/`` below it
    #: run before the guest's own scripts of the same stage.
    host_scripts: str = "/etc/xenguest"
    stop_timeout: float = 60.0
    script_timeout: float = 300.0
    lock_timeout: float = 300.0
    log_file: str = "/var/log/xenguest-manager.log"
    log_level: str = "info"
    disk_backend: str = "file"
    volume_group: str = ""
    lv_prefix: str = "xenguest-"
    #: Runtime state (network rules, leases, DHCP server): under /run, gone at reboot.
    runtime_folder: str = "/run/xenguest"
    #: The bridge of guests whose network type is bridge, and what ``network up`` does to it.
    bridge: str = "xenbr0"
    bridge_members: List[str] = field(default_factory=list)
    #: none, dhcp, or ADDRESS/PREFIX.
    bridge_address: str = "none"
    bridge_gateway: str = ""
    #: The private bridge of guests whose network type is nat, and the host's address on it.
    nat_bridge: str = "xenguest-nat"
    nat_address: str = "192.168.213.1/24"
    #: DNS servers nat guests get from the DHCP server.
    nat_dns: List[str] = field(default_factory=list)
    #: Signature policy of create and autostart: require, if-signed or off.
    verify: str = "if-signed"
    #: The trusted CA certificates (PEM) signatures must chain to.
    keyring: str = DEFAULT_KEYRING
    #: Absolute paths of external commands, overriding the PATH lookup.
    commands: Dict[str, str] = field(default_factory=dict)
    #: The file the settings were read from (None: built-in defaults).
    source: Optional[str] = None


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path")
    return os.path.normpath(value)


def _optional_absolute(value: str) -> str:
    return _absolute(value) if value else ""


def _absolute_list(value: str) -> List[str]:
    return [_absolute(v) for v in value.split()]


def seconds(value: str) -> float:
    """A timeout of the settings or the command line: a number of seconds in ASCII
    digits, above 0 (below 10**7); ValueError saying what is wrong."""
    negative = value.startswith("-")
    seconds = decimal_number(value[1:] if negative else value)
    if seconds is None:
        raise ValueError(f"{value!r} is not a number of seconds")
    if negative or not 0 < seconds < 10 ** 7:
        raise ValueError(f"{value!r} must be a positive number of seconds")
    return seconds


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value.lower()
    return parse


def _matching(pattern: "re.Pattern[str]", what: str, empty_ok: bool) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if (value or not empty_ok) and not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value
    return parse


def _ifname(value: str) -> str:
    if not _IFNAME.match(value):
        raise ValueError(f"{value!r} is not a valid network interface name")
    return value


def _ifname_list(value: str) -> List[str]:
    return [_ifname(v) for v in value.split()]


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _optional_ipv4(value: str) -> str:
    return _ipv4(value) if value else ""


def _ipv4_list(value: str) -> List[str]:
    return [_ipv4(v) for v in value.split()]


def _host_interface(value: str) -> "ipaddress.IPv4Interface":
    """ADDRESS/PREFIX: a host address of its network (not the network or broadcast)."""
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 ADDRESS/PREFIX") from None
    if "/" not in value or iface.ip in (iface.network.network_address,
                                        iface.network.broadcast_address):
        raise ValueError(f"{value!r} is not a host address with its prefix length "
                         "(e.g. 192.168.1.2/24)")
    return iface


def _bridge_address(value: str) -> str:
    if value.lower() in ("none", "dhcp"):
        return value.lower()
    return str(_host_interface(value))


def _nat_address(value: str) -> str:
    iface = _host_interface(value)
    if not 16 <= iface.network.prefixlen <= 29:
        raise ValueError(f"{value!r}: the NAT network needs a prefix length from 16 to 29")
    return str(iface)


class Setting(NamedTuple):
    section: str
    key: str
    attr: str
    parse: Callable[[str], object]


SETTINGS: List[Setting] = [
    Setting("manager", "guest_folders", "guest_folders", _absolute_list),
    Setting("manager", "state_folder", "state_folder", _absolute),
    Setting("manager", "runtime_folder", "runtime_folder", _absolute),
    Setting("manager", "host_scripts", "host_scripts", _optional_absolute),
    Setting("manager", "stop_timeout", "stop_timeout", seconds),
    Setting("manager", "script_timeout", "script_timeout", seconds),
    Setting("manager", "lock_timeout", "lock_timeout", seconds),
    Setting("log", "file", "log_file", _optional_absolute),
    Setting("log", "level", "log_level", _choice(*LOG_LEVELS)),
    Setting("disk", "backend", "disk_backend", _choice(*DISK_BACKENDS)),
    Setting("disk", "volume_group", "volume_group",
            _matching(_VG_NAME, "volume group name", empty_ok=True)),
    Setting("disk", "lv_prefix", "lv_prefix",
            _matching(re.compile(r"[A-Za-z0-9+_.-]{0,32}\Z"), "volume name prefix", True)),
    Setting("network", "bridge", "bridge", _ifname),
    Setting("network", "bridge_members", "bridge_members", _ifname_list),
    Setting("network", "bridge_address", "bridge_address", _bridge_address),
    Setting("network", "bridge_gateway", "bridge_gateway", _optional_ipv4),
    Setting("network", "nat_bridge", "nat_bridge", _ifname),
    Setting("network", "nat_address", "nat_address", _nat_address),
    Setting("network", "nat_dns", "nat_dns", _ipv4_list),
    Setting("security", "verify", "verify", _choice(*VERIFY_POLICIES)),
    Setting("security", "keyring", "keyring", _absolute),
]

#: Sections whose keys are free (``[commands]``: command name = absolute path).
COMMANDS_SECTION = "commands"


def config_path(explicit: Optional[str], environ: Mapping[str, str]) -> Tuple[str, bool]:
    """The settings file to read and whether it must exist."""
    if explicit is not None:
        return require_path(explicit, "settings file"), True
    if environ.get(ENV_VAR):
        return environ[ENV_VAR], True
    return DEFAULT_PATH, False


def load_config(explicit: Optional[str] = None,
                environ: Optional[Mapping[str, str]] = None) -> ManagerConfig:
    """Read the settings (see the module documentation for which file)."""
    path, required = config_path(explicit, os.environ if environ is None else environ)
    if not os.path.exists(path):
        if required:
            raise ManagerError(f"{path}: no such settings file")
        return ManagerConfig()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ManagerError(f"{path}: cannot read the settings: {e}") from None
    config = parse_config(text, path)
    config.source = path
    return config


def parse_config(text: str, source: str) -> ManagerConfig:
    """Read settings from INI *text*; errors name *source*, the section and the key."""
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        parser.read_string(text, source)
    except configparser.Error as e:
        first = str(e).splitlines()[0]
        raise ManagerError(f"{source}: not a valid settings file: {first}") from None
    config = ManagerConfig()
    known = {(s.section, s.key): s for s in SETTINGS}
    sections = {s.section for s in SETTINGS} | {COMMANDS_SECTION}
    for section in parser.sections():
        if section not in sections:
            raise ManagerError(
                f"{source}: unknown section [{section}] (known: {', '.join(sorted(sections))})")
        for key, value in parser.items(section):
            where = f"{source}: [{section}] {key}"
            value = value.strip()
            if section == COMMANDS_SECTION:
                config.commands[key] = _command_path(where, key, value)
                continue
            setting = known.get((section, key))
            if setting is None:
                raise ManagerError(f"{where}: unknown setting")
            try:
                setattr(config, setting.attr, setting.parse(value))
            except ValueError as e:
                raise ManagerError(f"{where}: {e}") from None
    if config.disk_backend == "lvm" and not config.volume_group:
        raise ManagerError(f"{source}: [disk] backend is lvm but no volume_group is set")
    problem = network_problem(config)
    if problem:
        raise ManagerError(f"{source}: [network] {problem}")
    return config


def network_problem(config: ManagerConfig) -> str:
    """What is wrong with the [network] settings taken together, or ''."""
    if config.bridge == config.nat_bridge:
        return f"bridge and nat_bridge are both {config.bridge}: they must differ"
    for member in config.bridge_members:
        if member in (config.bridge, config.nat_bridge):
            return f"bridge_members: {member} is a bridge of xenguest-manager"
    if len(set(config.bridge_members)) != len(config.bridge_members):
        return "bridge_members: an interface is listed twice"
    if config.bridge_gateway:
        if config.bridge_address in ("none", "dhcp"):
            return "bridge_gateway needs a static bridge_address (ADDRESS/PREFIX)"
        network = ipaddress.IPv4Interface(config.bridge_address).network
        if ipaddress.IPv4Address(config.bridge_gateway) not in network:
            return f"bridge_gateway {config.bridge_gateway} is not in {network}"
    if config.bridge_address not in ("none", "dhcp"):
        nat = ipaddress.IPv4Interface(config.nat_address).network
        if ipaddress.IPv4Interface(config.bridge_address).network.overlaps(nat):
            return f"bridge_address {config.bridge_address} overlaps the NAT network {nat}"
    return ""


def _command_path(where: str, name: str, value: str) -> str:
    if not _COMMAND.match(name):
        raise ManagerError(f"{where}: not a command name")
    try:
        return _absolute(value)
    except ValueError as e:
        raise ManagerError(f"{where}: {e}") from None


def default_text() -> str:
    """The documented default settings file (installed as manager.conf)."""
    d = ManagerConfig()
    return f"""\
# xenguest-manager settings (INI).  Every key is optional: the values shown
# are the built-in defaults.  See docs/manager.md.

[manager]
# Folders searched by 'autostart' for images named NAME.xenguest (file or
# directory image); the guest is called NAME.  Whitespace-separated.
guest_folders = {' '.join(d.guest_folders)}
# Guests live in STATE/guests/NAME, per-guest lock files in STATE/locks.
state_folder = {d.state_folder}
# Runtime state (network rules, DHCP leases): gone when the host reboots.
runtime_folder = {d.runtime_folder}
# Host-wide init scripts in HOST_SCRIPTS/init.pre, init.d and init.post run
# before the guest's own scripts of each stage (empty: none).
host_scripts = {d.host_scripts}
# Seconds: a graceful shutdown, one init script, waiting for another
# xenguest-manager command working on the same guest.
stop_timeout = {d.stop_timeout:g}
script_timeout = {d.script_timeout:g}
lock_timeout = {d.lock_timeout:g}

[log]
# Log file (empty: stderr only) and level: debug, info, warning or error.
file = {d.log_file}
level = {d.log_level}

[disk]
# Where guest disks are provisioned: file (a sparse raw file in the guest's
# state folder) or lvm (a logical volume named LV_PREFIX + NAME in VOLUME_GROUP).
backend = {d.disk_backend}
volume_group =
lv_prefix = {d.lv_prefix}

[network]
# Read by 'xenguest-manager network up' (the xenguest-network service at
# boot) and by every guest start.  See docs/manager.md, "Networks".
# The bridge of guests whose XENGUEST_NETWORK_TYPE is bridge; 'network up'
# creates it, adds the host interfaces of bridge_members to it and gives it
# bridge_address: none, dhcp, or ADDRESS/PREFIX (then bridge_gateway, if set,
# is the default route).
bridge = {d.bridge}
bridge_members =
bridge_address = {d.bridge_address}
bridge_gateway =
# The private bridge of guests whose XENGUEST_NETWORK_TYPE is nat, and the
# host's address on it (ADDRESS/PREFIX): guests get addresses of that network
# from the host's DHCP server (dnsmasq), reach out through masquerading and
# are reached through their port forwards.  nat_dns: DNS servers handed to
# them (whitespace-separated; empty: none).
nat_bridge = {d.nat_bridge}
nat_address = {d.nat_address}
nat_dns =

[security]
# Image signatures, checked by create and autostart before anything is
# extracted: require (only images signed by a certificate of the keyring),
# if-signed (signed images must verify, unsigned ones are accepted) or off.
verify = {d.verify}
# The trusted CA certificates (PEM) that signers' certificates must chain to.
keyring = {d.keyring}

[commands]
# Absolute paths of external commands, if PATH does not find the right ones:
# xl = /usr/sbin/xl
# mke2fs = /sbin/mke2fs
"""

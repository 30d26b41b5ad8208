"""One guest's network: its stable addresses, its virtual interface, and the
NAT rules and DHCP reservation that exist while a nat guest's interface does.

Addresses.  At its first start a guest with a network gets a MAC address
(Xen's prefix 00:16:3e and three bytes of SHA-256 of its name) and a nat
guest an IPv4 address of the NAT network (SHA-256 of its name picks the
slot).  A value another guest holds already is skipped, trying the next
derivation (MAC) or the next slot (IPv4) in turn: the same guests get the
same addresses, whatever the order they start in after the first time.  The
guest record keeps them; they change only when the NAT network changes.

Runtime.  A nat guest's vif runs Xen's hotplug script ``vif-xenguest``,
which calls ``xenguest-manager network hotplug online|offline``:

* online — the guest's DHCP reservation (a file in dnsmasq's
  ``dhcp-hostsdir``) and its port forwards (elements of the nftables maps)
  are added, and recorded in ``RUNTIME/network/guests/MAC.json``;
* offline — what that record says is removed, the lease is released
  (``dhcp_release``) and the record deleted.

Xen runs the script whenever the interface goes, however the guest stops
(shutdown, crash, destroy, a start rolled back); the manager also releases
after every stop, destroy and failed start, for the cases Xen's script
cannot cover (its ``xl`` process killed).  Releasing twice is harmless.
Everything is under /run and in the kernel: a reboot leaves nothing.
"""

import ipaddress
import json
import logging
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Mapping, Optional

from ..format.netparams import FORWARD_PARAM, TYPE_PARAM, PortForward, check_network
from ..programs import CommandError, Host
from . import ManagerError
from .config import ManagerConfig
from .guestcfg import read_params_file
from .natconf import add_forwards, delete_forwards, dhcp_host, leases, list_map_command, parse_map
from .state import StateStore, hold_lock, write_atomic

log = logging.getLogger("xenguest.manager")

#: Xen's vif hotplug scripts (in /etc/xen/scripts) for each network type.
VIF_SCRIPTS = {"bridge": "vif-bridge", "nat": "vif-xenguest"}
#: Xen's organisationally unique identifier: xl's own random MACs use it too.
XEN_OUI = "00:16:3e"
#: How long a release waits for dnsmasq to forget a lease.
LEASE_WAIT = 3.0


def _sha256(text: str) -> bytes:
    import hashlib  # loaded only when addresses are chosen: it slows every command's start

    return hashlib.sha256(text.encode()).digest()


def derive_mac(name: str, attempt: int = 0) -> str:
    """The *attempt*-th candidate MAC address of guest *name*."""
    return XEN_OUI + "".join(f":{b:02x}" for b in _sha256(f"xenguest-mac:{name}:{attempt}")[:3])


def derive_ipv4(name: str, nat_address: str, attempt: int = 0) -> str:
    """The *attempt*-th candidate IPv4 address of guest *name* in the NAT network."""
    network = ipaddress.IPv4Interface(nat_address).network
    slots = network.num_addresses - 2
    start = int.from_bytes(_sha256(f"xenguest-ipv4:{name}")[:8], "big")
    return str(network.network_address + 1 + (start + attempt) % slots)


def assign_nic(name: str, kind: str, nat_address: str, current: Optional[Dict[str, str]],
               others: List[Dict[str, str]]) -> Optional[Dict[str, str]]:
    """The addresses guest *name* of network *kind* keeps or gets.

    *current* is what its record holds; *others* what the other guests'
    records hold.  A current value is kept while it is still valid and unique.
    """
    if kind == "none":
        return current
    taken_macs = {o.get("mac") for o in others}
    mac = (current or {}).get("mac")
    attempt = 0
    while not mac or mac in taken_macs:
        mac = derive_mac(name, attempt)
        attempt += 1
    nic = {"mac": mac}
    if kind == "nat":
        iface = ipaddress.IPv4Interface(nat_address)
        taken = {o.get("ipv4") for o in others} | {str(iface.ip)}
        ipv4 = (current or {}).get("ipv4")
        valid = ipv4 and ipaddress.IPv4Address(ipv4) in iface.network and ipv4 not in (
            str(iface.network.network_address), str(iface.network.broadcast_address))
        attempt = 0
        slots = iface.network.num_addresses - 2
        while not valid or ipv4 in taken:
            if attempt >= slots:
                raise ManagerError(f"no free address for guest {name} in the NAT network "
                                   f"{iface.network}")
            ipv4 = derive_ipv4(name, nat_address, attempt)
            valid = True
            attempt += 1
        nic["ipv4"] = str(ipv4)
    return nic


def vif_spec(kind: str, nic: Dict[str, str], config: ManagerConfig) -> str:
    """The xl ``vif`` entry of a guest of network *kind* with addresses *nic*."""
    bridge = config.nat_bridge if kind == "nat" else config.bridge
    return f"mac={nic['mac']},bridge={bridge},script={VIF_SCRIPTS[kind]}"


@dataclass
class ActiveGuest:
    """What the NAT network holds for one guest's interface while it exists."""

    name: str
    mac: str
    ipv4: str
    forwards: List[PortForward] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "mac": self.mac, "ipv4": self.ipv4,
                           "forwards": [[f.host, f.guest, f.protocol] for f in self.forwards]},
                          indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> "ActiveGuest":
        try:
            data = json.loads(text)
            return cls(str(data["name"]), str(data["mac"]), str(data["ipv4"]),
                       [PortForward(int(h), int(g), str(p)) for h, g, p in data["forwards"]])
        except (ValueError, KeyError, TypeError) as e:
            raise ManagerError(f"{where}: damaged network record ({e})") from None


class NatRuntime:
    """The runtime state of the NAT network: ``RUNTIME/network/``.

    ``dnsmasq.conf``, ``dnsmasq.pid``, ``dnsmasq.leases``, ``dhcp-hosts/MAC``
    (one reservation per running nat guest), ``guests/MAC.json`` (what each
    running nat guest's interface added) and ``lock``.
    """

    def __init__(self, config: ManagerConfig, host: Host) -> None:
        self.config = config
        self.host = host
        self.folder = os.path.join(config.runtime_folder, "network")
        self.dnsmasq_conf = os.path.join(self.folder, "dnsmasq.conf")
        self.pid_file = os.path.join(self.folder, "dnsmasq.pid")
        self.lease_file = os.path.join(self.folder, "dnsmasq.leases")
        self.hosts_dir = os.path.join(self.folder, "dhcp-hosts")
        self.guests_dir = os.path.join(self.folder, "guests")

    def prepare(self) -> None:
        for path in (self.folder, self.hosts_dir, self.guests_dir):
            os.makedirs(path, 0o755, exist_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialize changes of the NAT network (hotplug scripts, the manager)."""
        self.prepare()
        with hold_lock(os.path.join(self.folder, "lock"), self.config.lock_timeout,
                       "the NAT network"):
            yield

    # -- the DHCP server -----------------------------------------------------

    def dnsmasq_pid(self) -> Optional[int]:
        """The process ID of the NAT network's dnsmasq, if it runs."""
        try:
            with open(self.pid_file, encoding="ascii") as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def reload_dnsmasq(self) -> None:
        """Make dnsmasq read the reservations again (it only notices new files by itself)."""
        pid = self.dnsmasq_pid()
        if pid is None:
            raise ManagerError("the NAT network's DHCP server (dnsmasq) is not running: "
                               "run 'xenguest-manager network up'")
        os.kill(pid, signal.SIGHUP)

    def problem(self, bridge_exists: bool) -> str:
        """Why a nat guest cannot start now, or ''."""
        if not bridge_exists or self.dnsmasq_pid() is None:
            missing = (f"bridge {self.config.nat_bridge}" if not bridge_exists
                       else "its DHCP server (dnsmasq)")
            return (f"the NAT network is not up ({missing} missing): start the "
                    "xenguest-network service or run 'xenguest-manager network up'")
        return ""

    # -- the guests' records ---------------------------------------------------

    def _record_path(self, mac: str) -> str:
        return os.path.join(self.guests_dir, mac.replace(":", "-") + ".json")

    def active(self) -> List[ActiveGuest]:
        """Every nat guest whose interface is up, by MAC address."""
        try:
            names = sorted(os.listdir(self.guests_dir))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.endswith(".json"):
                path = os.path.join(self.guests_dir, name)
                with open(path, encoding="utf-8") as f:
                    found.append(ActiveGuest.from_json(f.read(), path))
        return found

    def conflicts(self, name: str, forwards: List[PortForward]) -> str:
        """The first forward of guest *name* whose host port another guest holds, or ''."""
        held = {(f.host, f.protocol): other.name for other in self.active()
                if other.name != name for f in other.forwards}
        for forward in forwards:
            owner = held.get((forward.host, forward.protocol))
            if owner:
                return (f"host port {forward.host}/{forward.protocol} is forwarded to "
                        f"running guest {owner} already")
        return ""

    # -- apply and release -----------------------------------------------------

    def apply(self, guest: ActiveGuest) -> None:
        """Add the reservation and forwards of *guest* (its interface came up)."""
        with self.lock():
            self._release_locked(guest.mac)
            clash = self.conflicts(guest.name, guest.forwards)
            if clash:
                raise ManagerError(f"guest {guest.name}: {clash}")
            write_atomic(self._record_path(guest.mac), guest.to_json())
            write_atomic(os.path.join(self.hosts_dir, guest.mac.replace(":", "-")),
                         dhcp_host(guest.mac, guest.ipv4))
            self.reload_dnsmasq()
            if guest.forwards:
                self.host.run("nft", ["-f", "-"],
                              input=add_forwards(guest.ipv4, guest.forwards).encode())
        log.info("guest %s: NAT network: %s reserved for %s%s", guest.name, guest.ipv4,
                 guest.mac, "".join(f", forward {f}" for f in guest.forwards))

    def release(self, mac: str) -> bool:
        """Remove what the interface of MAC address *mac* added; False if nothing."""
        if not os.path.exists(self._record_path(mac)):
            return False
        with self.lock():
            return self._release_locked(mac)

    def _release_locked(self, mac: str) -> bool:
        path = self._record_path(mac)
        try:
            with open(path, encoding="utf-8") as f:
                guest = ActiveGuest.from_json(f.read(), path)
        except FileNotFoundError:
            return False
        self._delete_forwards(guest)
        hosts = os.path.join(self.hosts_dir, mac.replace(":", "-"))
        if os.path.exists(hosts):
            os.unlink(hosts)
        pid = self.dnsmasq_pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
            self._release_lease(guest)
        os.unlink(path)
        log.info("guest %s: NAT network: released %s (%s)", guest.name, guest.ipv4, mac)
        return True

    def _delete_forwards(self, guest: ActiveGuest) -> None:
        """Delete the map elements that still point at *guest* (and no others)."""
        mine = []
        for protocol in {f.protocol for f in guest.forwards}:
            result = self.host.run("nft", list_map_command(protocol), check=False)
            if result.returncode != 0:
                continue  # no table: nothing to delete
            held = parse_map(result.stdout, protocol)
            mine += [f for f in guest.forwards if f.protocol == protocol
                     and (f, guest.ipv4) in held]
        if mine:
            self.host.run("nft", ["-f", "-"], input=delete_forwards(mine).encode())

    def _release_lease(self, guest: ActiveGuest) -> None:
        lease = self._leases().get(guest.mac)
        if lease is None:
            return
        try:
            self.host.run("dhcp_release", [self.config.nat_bridge] + lease)
        except CommandError as e:
            log.warning("guest %s: %s", guest.name, e.message)
            return
        deadline = time.monotonic() + LEASE_WAIT
        while guest.mac in self._leases() and time.monotonic() < deadline:
            time.sleep(0.05)
        if guest.mac in self._leases():
            log.warning("guest %s: dnsmasq still lists the lease of %s", guest.name, guest.ipv4)

    def _leases(self) -> Dict[str, List[str]]:
        try:
            with open(self.lease_file, encoding="utf-8", errors="replace") as f:
                return leases(f.read())
        except FileNotFoundError:
            return {}


def xenstore_read(host: Host, path: str) -> str:
    """A value of the XenStore (``xenstore-read``)."""
    return host.run("xenstore-read", [path]).stdout.strip()


def frontend_domid(xenbus_path: str) -> int:
    """The guest's domain ID in a vif backend path (``backend/vif/DOMID/DEVID``)."""
    parts = xenbus_path.strip("/").split("/")
    if len(parts) != 4 or parts[:2] != ["backend", "vif"] or not parts[2].isdigit():
        raise ManagerError(f"XENBUS_PATH {xenbus_path!r} is not a vif backend path")
    return int(parts[2])


def hotplug(action: str, config: ManagerConfig, host: Host, state: StateStore,
            environ: Mapping[str, str]) -> None:
    """What Xen's ``vif-xenguest`` runs for a nat guest's vif (``online``/``offline``).

    The vif is the one of ``XENBUS_PATH`` (Xen's hotplug environment).  At
    ``online`` the guest is found by its domain's name, and must be a nat
    guest of this manager with that vif's MAC address; at ``offline`` the
    domain may be gone already: the runtime record of the MAC address says
    what to remove.
    """
    xenbus_path = environ.get("XENBUS_PATH", "")
    if not xenbus_path:
        raise ManagerError("XENBUS_PATH is not set: Xen's vif hotplug script runs this")
    domid = frontend_domid(xenbus_path)
    mac = xenstore_read(host, f"{xenbus_path}/mac").lower()
    runtime = NatRuntime(config, host)
    if action == "offline":
        runtime.release(mac)
        return
    if action != "online":
        raise ManagerError(f"unknown hotplug action {action!r} (online or offline)")
    name = xenstore_read(host, f"/local/domain/{domid}/name")
    record = state.load(name)
    nic = record.nic or {}
    if record.network != "nat" or nic.get("mac") != mac or not nic.get("ipv4"):
        raise ManagerError(f"domain {name} (vif {mac}) is not a nat guest of xenguest-manager: "
                           "start it with 'xenguest-manager start'")
    params = read_params_file(state.guest_dir(name))
    _, forwards = check_network(params.get(TYPE_PARAM), params.get(FORWARD_PARAM))
    runtime.apply(ActiveGuest(name, mac, nic["ipv4"], forwards))

"""The text of what the host's NAT network runs: the nftables table, the
dnsmasq configuration, DHCP reservations, and systemd-networkd's hands-off unit.

Pure functions of the settings: the side effects are in
:mod:`xenguest.manager.hostnet` (the host) and :mod:`xenguest.manager.guestnet`
(one guest).

Everything nftables holds for xenguest-manager is in one table of its own,
``inet xenguest``, so no other rule of the host is ever touched:

* ``tcp_forward`` and ``udp_forward`` — maps from a host port to a guest
  address and port (the guests' port forwards; one element per forward);
* ``prerouting`` and ``output`` — destination NAT of packets to a local
  address (not loopback, for ``output``) through those maps;
* ``postrouting`` — masquerading of what the NAT network sends elsewhere.
"""

import ipaddress
import re
from typing import Dict, Iterable, List, Tuple

from ..format.netparams import PROTOCOLS, PortForward

FAMILY = "inet"
TABLE = "xenguest"
#: Where each protocol's forwards live.
FORWARD_MAPS: Dict[str, str] = {protocol: f"{protocol}_forward" for protocol in PROTOCOLS}

#: One element of a forward map in ``nft list map`` output: ``2222 : 192.168.1.5 . 22``.
_ELEMENT = re.compile(r"(\d+)\s*:\s*(\d+\.\d+\.\d+\.\d+)\s*\.\s*(\d+)")


def nft_table(nat_address: str) -> str:
    """The whole table as an ``nft -f`` script that replaces any earlier one at once."""
    network = ipaddress.IPv4Interface(nat_address).network
    maps = "".join(
        f"\tmap {name} {{\n\t\ttype inet_service : ipv4_addr . inet_service\n\t}}\n"
        for name in FORWARD_MAPS.values())

    def dnat(prefix: str) -> str:
        return "".join(f"\t\t{prefix}dnat ip to {protocol} dport map @{name}\n"
                       for protocol, name in FORWARD_MAPS.items())

    return (
        f"# xenguest-manager's NAT network ({network}): written by 'xenguest-manager network up'\n"
        f"add table {FAMILY} {TABLE}\n"
        f"delete table {FAMILY} {TABLE}\n"
        f"table {FAMILY} {TABLE} {{\n"
        f"{maps}"
        "\tchain prerouting {\n"
        "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        f"{dnat('fib daddr type local ')}"
        "\t}\n"
        "\tchain output {\n"
        "\t\ttype nat hook output priority -100; policy accept;\n"
        f"{dnat('fib daddr type local ip daddr != 127.0.0.0/8 ')}"
        "\t}\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        f"\t\tip saddr {network} ip daddr != {network} masquerade\n"
        "\t}\n"
        "}\n")


def delete_table() -> str:
    """An ``nft -f`` script removing the table, whether or not it exists."""
    return f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"


def _element(forward: PortForward, address: str) -> str:
    return f"{forward.host} : {address} . {forward.guest}"


def add_forwards(address: str, forwards: Iterable[PortForward]) -> str:
    """``nft -f`` lines adding *forwards* to the guest at *address* (empty: none)."""
    return "".join(
        f"add element {FAMILY} {TABLE} {FORWARD_MAPS[f.protocol]} {{ {_element(f, address)} }}\n"
        for f in forwards)


def delete_forwards(forwards: Iterable[PortForward]) -> str:
    """``nft -f`` lines deleting the map elements of *forwards*' host ports."""
    return "".join(
        f"delete element {FAMILY} {TABLE} {FORWARD_MAPS[f.protocol]} {{ {f.host} }}\n"
        for f in forwards)


def list_map_command(protocol: str) -> List[str]:
    """The ``nft`` arguments listing one forward map."""
    return ["list", "map", FAMILY, TABLE, FORWARD_MAPS[protocol]]


def parse_map(text: str, protocol: str) -> List[Tuple[PortForward, str]]:
    """(forward, guest address) of every element in ``nft list map`` output."""
    body = text.split("elements", 1)[1] if "elements" in text else ""
    return [(PortForward(int(host), int(port), protocol), address)
            for host, address, port in _ELEMENT.findall(body)]


def dnsmasq_conf(nat_bridge: str, nat_address: str, dns: List[str], hosts_dir: str,
                 lease_file: str, pid_file: str) -> str:
    """The configuration of the NAT network's DHCP server.

    DHCP only (no DNS: ``port=0``), on the NAT bridge only, and only to hosts
    with a reservation (``static``): each running nat guest has one, made
    when its interface comes up, removed when it goes away.
    """
    iface = ipaddress.IPv4Interface(nat_address)
    lines = [
        "# DHCP server of xenguest-manager's NAT network: written by "
        "'xenguest-manager network up'",
        f"interface={nat_bridge}",
        "bind-interfaces",
        "port=0",
        "user=nobody",
        "group=nogroup",
        "no-resolv",
        "no-hosts",
        "dhcp-authoritative",
        f"dhcp-range={iface.network.network_address},static,{iface.network.netmask},1h",
        f"dhcp-option=option:router,{iface.ip}",
        f"dhcp-hostsdir={hosts_dir}",
        f"dhcp-leasefile={lease_file}",
        f"pid-file={pid_file}",
    ]
    if dns:
        lines.append("dhcp-option=option:dns-server," + ",".join(dns))
    return "\n".join(lines) + "\n"


def dhcp_host(mac: str, address: str) -> str:
    """A dnsmasq ``dhcp-host`` line reserving *address* for *mac*."""
    return f"{mac},{address}\n"


def leases(text: str) -> Dict[str, List[str]]:
    """The leases of a dnsmasq lease file by MAC address: the ``dhcp_release`` arguments
    after the interface (address, MAC and the client ID, when the client sent one).

    A line is ``EXPIRY MAC ADDRESS HOSTNAME CLIENT-ID`` (``*`` for none).
    """
    found = {}
    for fields in (line.split() for line in text.splitlines()):
        if len(fields) >= 3:
            mac = fields[1].lower()
            found[mac] = [fields[2], mac] + ([fields[4]] if len(fields) > 4
                                             and fields[4] != "*" else [])
    return found


def networkd_unmanaged(names: Iterable[str]) -> str:
    """A systemd-networkd unit that leaves the interfaces *names* (globs) alone."""
    return ("# Interfaces of xenguest-manager's networks: systemd-networkd leaves them\n"
            "# alone. Written by 'xenguest-manager network up', removed by 'network down'.\n"
            "[Match]\n"
            f"Name={' '.join(names)}\n\n"
            "[Link]\n"
            "Unmanaged=yes\n")

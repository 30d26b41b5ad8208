"""The network parameters of an image (params.cfg), as every reader checks them.

``XENGUEST_NETWORK_TYPE`` says how the host connects the guest:

* ``bridge`` — a virtual interface on the host's guest bridge;
* ``nat`` — a virtual interface on the host's private NAT bridge, an address
  from the host's DHCP server, masquerading, and optional port forwards;
* ``none`` (or no such parameter) — the host adds nothing.

``XENGUEST_NETWORK_PORT_FORWARD`` (``nat`` only) lists host ports forwarded
to the guest, separated by spaces or tabs: ``HOST:GUEST`` or
``HOST:GUEST/PROTO``, ports 1 to 65535 in ASCII digits without leading zeros,
PROTO ``tcp`` (the default) or ``udp``; e.g. ``"2222:22 8080:80 5353:53/udp"``.

The image checks (``xenguest-mkimage check``), the build class and the host
manager all read them through this module.
"""

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..errors import XenguestError

TYPE_PARAM = "XENGUEST_NETWORK_TYPE"
FORWARD_PARAM = "XENGUEST_NETWORK_PORT_FORWARD"
TYPES: Tuple[str, ...] = ("bridge", "nat", "none")
PROTOCOLS: Tuple[str, ...] = ("tcp", "udp")

_PORT = r"[1-9][0-9]{0,4}"
_FORWARD = re.compile(rf"({_PORT}):({_PORT})(?:/([a-z]+))?\Z")
_SEPARATORS = re.compile(r"[ \t]+")


class NetworkParamError(XenguestError):
    """A network parameter has a wrong value."""


@dataclass(frozen=True)
class PortForward:
    """Host port *host* (of *protocol*) forwarded to port *guest* of the guest."""

    host: int
    guest: int
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.host}:{self.guest}/{self.protocol}"


def network_type(value: Optional[str]) -> str:
    """The network type a ``XENGUEST_NETWORK_TYPE`` value names (unset or empty: none)."""
    if not value:
        return "none"
    if value not in TYPES:
        raise NetworkParamError(f"{TYPE_PARAM} is {value!r}, not {', '.join(TYPES)}")
    return value


def parse_forwards(text: Optional[str]) -> List[PortForward]:
    """The port forwards of a ``XENGUEST_NETWORK_PORT_FORWARD`` value, in order."""
    forwards: List[PortForward] = []
    seen = {}
    for entry in _SEPARATORS.split((text or "").strip(" \t")):
        if not entry:
            continue
        match = _FORWARD.match(entry)
        if not match:
            raise NetworkParamError(
                f"{FORWARD_PARAM}: {entry!r} is not HOST:GUEST or HOST:GUEST/PROTO "
                "(ports 1 to 65535, PROTO tcp or udp)")
        host, guest, protocol = int(match.group(1)), int(match.group(2)), match.group(3)
        protocol = protocol or "tcp"
        if protocol not in PROTOCOLS:
            raise NetworkParamError(f"{FORWARD_PARAM}: {entry!r}: protocol {protocol!r} "
                                    "is not tcp or udp")
        for port in (host, guest):
            if port > 65535:
                raise NetworkParamError(f"{FORWARD_PARAM}: {entry!r}: port {port} is "
                                        "above 65535")
        if (host, protocol) in seen:
            raise NetworkParamError(f"{FORWARD_PARAM}: host port {host}/{protocol} is "
                                    f"forwarded twice ({seen[host, protocol]} and {entry})")
        seen[host, protocol] = entry
        forwards.append(PortForward(host, guest, protocol))
    return forwards


def check_network(type_value: Optional[str],
                  forward_value: Optional[str]) -> Tuple[str, List[PortForward]]:
    """The network type and port forwards of a guest's parameters, checked together."""
    kind = network_type(type_value)
    forwards = parse_forwards(forward_value)
    if forwards and kind != "nat":
        raise NetworkParamError(f"{FORWARD_PARAM} needs {TYPE_PARAM}=nat (it is {kind})")
    return kind, forwards

"""The network parameters of images (params.cfg): XENGUEST_NETWORK_TYPE and
XENGUEST_NETWORK_PORT_FORWARD, as the library, check, the build class and the
manager read them (xenguest.format.netparams)."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from manager_util import make_image
from xenguest import operations
from xenguest.errors import XenguestError
from xenguest.format.netparams import PortForward, check_network, network_type, parse_forwards


@pytest.mark.parametrize("text,expected", [
    ("", []),
    ("2222:22", [PortForward(2222, 22)]),
    ("  2222:22\t8080:80/tcp 5353:53/udp ", [PortForward(2222, 22), PortForward(8080, 80),
                                            PortForward(5353, 53, "udp")]),
    ("53:53/udp 53:53/tcp", [PortForward(53, 53, "udp"), PortForward(53, 53)]),
    ("65535:1", [PortForward(65535, 1)]),
])
def test_port_forwards(text, expected):
    assert parse_forwards(text) == expected


@pytest.mark.parametrize("text,message", [
    ("22", "'22' is not HOST:GUEST"),
    ("0:22", "'0:22' is not HOST:GUEST"),
    ("022:22", "'022:22' is not HOST:GUEST"),
    ("65536:22", "port 65536 is above 65535"),
    ("22:99999", "port 99999 is above 65535"),
    ("22:22/sctp", "protocol 'sctp' is not tcp or udp"),
    ("22:22/TCP", "'22:22/TCP' is not HOST:GUEST"),
    ("\uff12\uff12:22", "is not HOST:GUEST"),        # fullwidth digits
    ("\u00b2:22", "is not HOST:GUEST"),              # superscript two
    ("22:22\u00a08080:80", "is not HOST:GUEST"),     # no-break space is no separator
    ("22:22\n80:80", "is not HOST:GUEST"),
    ("2222:22 2222:23", "host port 2222/tcp is forwarded twice (2222:22 and 2222:23)"),
    ("-1:22", "is not HOST:GUEST"),
    ("22 : 22", "is not HOST:GUEST"),
])
def test_bad_port_forwards(text, message):
    with pytest.raises(XenguestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_forwards(text)


@given(st.lists(st.tuples(st.integers(1, 65535), st.integers(1, 65535),
                          st.sampled_from(["", "/tcp", "/udp"])),
                unique_by=lambda t: (t[0], t[2] or "/tcp")))
def test_port_forwards_round_trip(entries):
    text = " ".join(f"{h}:{g}{p}" for h, g, p in entries)
    forwards = parse_forwards(text)
    assert [(f.host, f.guest, f.protocol) for f in forwards] == [
        (h, g, (p or "/tcp")[1:]) for h, g, p in entries]
    assert parse_forwards(" ".join(str(f) for f in forwards)) == forwards


@given(st.text(max_size=30))
def test_port_forwards_accept_only_what_they_can_say_back(text):
    try:
        forwards = parse_forwards(text)
    except XenguestError:
        return
    assert all(c in "0123456789:/tcpud \t" for c in text)
    assert parse_forwards(" ".join(str(f) for f in forwards)) == forwards


def test_network_type_and_forwards_together():
    assert network_type(None) == network_type("") == "none"
    assert check_network("nat", "22:22") == ("nat", [PortForward(22, 22)])
    assert check_network("bridge", "") == ("bridge", [])
    with pytest.raises(XenguestError, match="needs XENGUEST_NETWORK_TYPE=nat"):
        check_network(None, "22:22")


def test_check_reports_network_parameters(tmp_path):
    image = str(tmp_path / "dir.xenguest")
    os.mkdir(image)
    make_image(image, [("--set-param", "XENGUEST_NETWORK_TYPE=nat")])
    with open(os.path.join(image, "params.cfg"), "a") as f:
        f.write('XENGUEST_NETWORK_PORT_FORWARD="80:80/icmp"\n')
    problems = [str(p) for p in operations.check(image) if p.severity == "error"]
    assert problems == ["error: params.cfg: XENGUEST_NETWORK_PORT_FORWARD: '80:80/icmp': "
                        "protocol 'icmp' is not tcp or udp"]

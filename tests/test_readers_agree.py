"""Fuzzing tar headers and member layouts: every reader of an image must agree.

Images made by the library are taken apart into their members (header blocks and
data); hypothesis then patches header fields, adds, removes, duplicates and moves
members, inserts zero blocks, puts data after the end and truncates the file.
Whatever comes out, four invariants hold:

1. no traceback: every operation works or fails with a XenguestError (one line);
2. check agrees: what extract, list, pack, verify or the manager refuse, check
   reports as an error, and what check (with --verify for signed images) finds
   no error in, they all accept;
3. GNU tar and busybox tar see the members our reader sees: the same names and
   the same data, in the same order, whenever our reader accepts the file;
4. a failed operation changes nothing: update leaves the file byte-identical,
   extract an empty folder, pack no file, the manager no guest.

XENGUEST_FUZZ_EXAMPLES sets the number of examples (CI runs the default).
"""

import os
import subprocess
import tempfile
from typing import Callable, List, NamedTuple, Optional, Tuple

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from manager_util import RecordingToolstack, manager
from mkimage_util import write
from xenguest import operations
from xenguest.errors import XenguestError
from xenguest.format import signing
from xenguest.format.archive import TarIndex
from xenguest.format.image import Image

EXAMPLES = int(os.environ.get("XENGUEST_FUZZ_EXAMPLES", "100"))
BLOCK = 512
#: (offset, width) of the header fields (GNU and ustar layouts).
FIELDS = {"name": (0, 100), "mode": (100, 8), "uid": (108, 8), "gid": (116, 8),
          "size": (124, 12), "mtime": (136, 12), "chksum": (148, 8), "type": (156, 1),
          "linkname": (157, 100), "magic": (257, 8), "uname": (265, 32), "gname": (297, 32),
          "devmajor": (329, 8), "devminor": (337, 8), "prefix": (345, 155), "pad": (500, 12)}
NAMES = ["./guest.cfg", "guest.cfg", ".//guest.cfg", "././guest.cfg", "./guest.cfg/",
         "./params.cfg", "./disk.cfg", "./disk-files/x.img", "./disk/x.img", "./disk-files/",
         "./disk-files", "./files", "./files/", "./files/sub", "./files/sub/x",
         "./signatures/evil.sh", "./signatures/0123456789abcdef.cms", "./signatures/x/",
         "./xl.cfg", "./xl.cfg/", "./init.d", "./init.d/", "./init.d/20-x", "../evil",
         "/etc/evil", "./a/../../evil", "./", ".", "./x\ny", "./é", "./sub/" + "n" * 120,
         "./xenguest.manifest", "./xenguest.format/", "./guest.d/x.cfg"]
TYPES = [b"0", b"\0", b"5", b"1", b"2", b"3", b"4", b"6", b"7", b"L", b"K", b"x", b"g",
         b"S", b"V", b"Z"]
DATA = [b"", b"# fuzz\n", b"#!/bin/sh\nexit 0\n", b"memory = 64\n" * 60]


class Record(NamedTuple):
    """One member as stored: its header block(s) (a GNU long name first) and data."""

    header: bytes
    data: bytes

    def raw(self) -> bytes:
        return self.header + self.data + bytes(-len(self.data) % BLOCK)


def checksummed(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


class Bases(list):
    """The images taken apart (a short repr for hypothesis' reports)."""

    def __repr__(self) -> str:
        return f"<{len(self)} base images>"


def take_apart(path: str) -> List[Record]:
    with open(path, "rb") as f:
        data = f.read()
    with TarIndex.open(path) as index:
        members = sorted(list(index.members.values()) + index.superseded,
                         key=lambda m: m.header_offset)
    return [Record(data[m.header_offset:m.data_offset],
                   data[m.data_offset:m.data_offset + m.size]) for m in members]


# -- strategies ------------------------------------------------------------------------

def numeric(width: int) -> st.SearchStrategy:
    value = st.integers(0, 8 ** (width - 1) - 1)
    return st.one_of(
        value.map(lambda v: b"%0*o\0" % (width - 1, v)),
        value.map(lambda v: (b"%o" % v).rjust(width - 1) + b"\0"),
        value.map(lambda v: b"%o " % v),
        st.sampled_from([b"-1", b"+1", b"1_0", b"0x10", "\u0661".encode(), b"", b" ", b"8",
                         b"7" * width, b"\xff" * width]),
        st.binary(min_size=width - 1, max_size=width - 1).map(lambda b: b"\x80" + b),
        st.binary(min_size=width, max_size=width),
    ).map(lambda b: b[:width].ljust(width, b"\0"))


def text(width: int, values: List[bytes]) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(values), st.binary(max_size=width)).map(
        lambda b: b[:width].ljust(width, b"\0"))


def names() -> st.SearchStrategy:
    listed = st.sampled_from(NAMES).map(str.encode)
    return st.one_of(
        listed, listed,
        st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).map(
            lambda t: ("./files/" + t).encode()),
        st.binary(min_size=1, max_size=120))


FIELD_VALUES = {
    "name": names().map(lambda b: b[:100].ljust(100, b"\0")),
    "linkname": text(100, [b"", b"./guest.cfg", b"/etc/passwd"]),
    "magic": text(8, [b"ustar  \0", b"ustar\x0000", b"ustar\0  ", b""]),
    "uname": text(32, [b"root", b"", b"r\x01ot", "r\u00f6t".encode()]),
    "gname": text(32, [b"root", b""]),
    "type": st.sampled_from(TYPES),
    "prefix": text(155, [b"", b"dir", b"\x01"]),
    "pad": text(12, [b"", b"x"]),
}


def field_value(field: str) -> st.SearchStrategy:
    return FIELD_VALUES[field] if field in FIELD_VALUES else numeric(FIELDS[field][1])


def new_record(name: bytes, kind: bytes, data: bytes, template: bytes) -> Record:
    """A member like *template*'s last header block, with *name*, *kind* and *data*."""
    block = bytearray(template[-BLOCK:])
    block[0:100] = name[:100].ljust(100, b"\0")
    block[124:136] = b"%011o\0" % len(data)
    block[156:157] = kind
    header = checksummed(block)
    if len(name) > 100:  # a GNU long name first
        long = bytearray(block)
        long[0:100] = b"././@LongLink".ljust(100, b"\0")
        long[124:136] = b"%011o\0" % (len(name) + 1)
        long[156:157] = b"L"
        header = checksummed(long) + (name + b"\0").ljust(-(-(len(name) + 1) // BLOCK) * BLOCK,
                                                          b"\0") + header
    return Record(header, data)


class Fuzzed(NamedTuple):
    """The bytes of a fuzzed image and what was done to make it (its repr)."""

    data: bytes
    done: str

    def __repr__(self) -> str:
        return f"<{len(self.data)} bytes: {self.done}>"


@st.composite
def images(draw: Callable, bases: List[List[Record]]) -> Fuzzed:
    """A fuzzed image."""
    records = list(draw(st.sampled_from(bases)))
    done = []
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["patch", "patch", "add", "remove", "duplicate", "move",
                                   "zero"]))
        at = draw(st.integers(0, len(records)))
        pick = min(at, len(records) - 1)
        if op == "patch" and records:
            field = draw(st.sampled_from(sorted(FIELDS)))
            value = draw(field_value(field))
            header = bytearray(records[pick].header)
            block = len(header) - BLOCK if draw(st.integers(0, 4)) else 0
            start, width = FIELDS[field]
            header[block + start:block + start + width] = value
            if field != "chksum" and draw(st.integers(0, 9)):
                header[block:block + BLOCK] = checksummed(header[block:block + BLOCK])
            records[pick] = Record(bytes(header), records[pick].data)
            done.append(f"patch {pick} {field}={value!r}")
        elif op == "add" and records:
            name, kind = draw(names()), draw(st.sampled_from(TYPES[:4]))
            data = b"" if kind == b"5" else draw(st.sampled_from(DATA))
            records.insert(at, new_record(name, kind, data, records[0].header))
            done.append(f"add {at} {name!r} {kind!r} {len(data)}")
        elif op == "remove" and records:
            del records[pick]
            done.append(f"remove {pick}")
        elif op == "duplicate" and records:
            records.insert(at, records[draw(st.integers(0, len(records) - 1))])
            done.append(f"duplicate to {at}")
        elif op == "move" and records:
            records.insert(at, records.pop(pick))
            done.append(f"move {pick} to {at}")
        elif op == "zero":
            records.insert(at, Record(bytes(BLOCK), b""))
            done.append(f"zero block at {at}")
    body = b"".join(r.raw() for r in records)
    tail = draw(st.sampled_from(["end"] * 5 + ["none", "one zero", "junk", "zeros"]))
    body += {"end": bytes(1024), "none": b"", "one zero": bytes(BLOCK),
             "junk": bytes(1024) + b"junk", "zeros": bytes(1024 + 3000)}[tail]
    body += bytes(-len(body) % 10240) if tail == "end" else b""
    done.append(f"tail {tail}")
    if draw(st.integers(0, 19)) == 0:
        cut = draw(st.integers(0, len(body)))
        body = body[:cut]
        done.append(f"cut at {cut}")
    return Fuzzed(body, "; ".join(done))


# -- the readers -----------------------------------------------------------------------

class Outcome(NamedTuple):
    ok: bool
    value: object
    error: str


def attempt(step: Callable[[], object]) -> Outcome:
    """Run *step*: its value, or the user error it raised (anything else propagates)."""
    try:
        return Outcome(True, step(), "")
    except XenguestError as e:
        assert "\n" not in e.message, e.message
        return Outcome(False, None, e.message)


def our_view(path: str) -> Optional[Tuple[List[bytes], bytes]]:
    """The member names (every occurrence) and concatenated file data our reader sees."""
    try:
        index = TarIndex.open(path)
    except XenguestError:
        return None
    with index:
        members = sorted(list(index.members.values()) + index.superseded,
                         key=lambda m: m.header_offset)
        data = b"".join(os.pread(index.fd, m.size, m.data_offset)
                        for m in members if not m.is_dir)
        return [m.raw_name.encode().rstrip(b"/") or b"." for m in members], data


def tar_view(tool: List[str], path: str) -> Tuple[List[bytes], bytes]:
    env = dict(os.environ, LC_ALL="C")
    listing = subprocess.run(tool + ["-tf", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
    content = subprocess.run(tool + ["-xOf", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
    assert listing.returncode == 0 and content.returncode == 0, (tool, listing.stderr,
                                                                 content.stderr)
    names = [n.rstrip(b"/") or b"." for n in listing.stdout.split(b"\n")[:-1]]
    return names, content.stdout


def errors(outcome: Outcome) -> bool:
    """Whether a check outcome reports an error (raised, or an error problem)."""
    return not outcome.ok or any(p.severity == "error" for p in outcome.value)


def is_signed(path: str) -> bool:
    with Image.open(path) as image:
        return bool(signing.signature_members(image))


def listing(path: str) -> object:
    with operations.open_image(path) as image:
        return operations.members(image)


def verify(path: str, keyring: str) -> object:
    with Image.open(path) as image:
        return signing.verify_signed(image, keyring)


# -- the test ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bases(tmp_path_factory, pki):
    """A signed image, an unsigned one, and one updated (superseded members), taken apart."""
    folder = tmp_path_factory.mktemp("bases")
    script = write(str(folder / "10-setup"), "#!/bin/sh\nexit 0\n", 0o755)
    found = Bases()
    for kind in ("signed", "unsigned", "updated"):
        path = str(folder / f"{kind}.xenguest")
        operations.create(path, [("--init-script", script), ("--xen-memory", "64"),
                                 ("--xen-add-file", f"{script}:{'deep/' * 20}setup")])
        if kind == "signed":
            signing.sign(path, pki.key("signer"), pki.cert("signer"), pki.cert("intermediate"))
        if kind == "updated":
            operations.update(path, [("--xen-memory", "96"), ("--init-script", script)])
        found.append(take_apart(path))
    return found


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_reader_agrees(bases, pki, data):
    image, done = data.draw(images(bases))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fuzz.xenguest")
        with open(path, "wb") as f:
            f.write(image)

        # 3. GNU tar and busybox tar see what we see, when we read it at all.
        ours = our_view(path)
        event("read" if ours is not None else "refused by the reader")
        if ours is not None:
            for tool in (["tar", "--quoting-style=literal"], ["busybox", "tar"]):
                assert tar_view(tool, path) == ours, (tool, done)

        # 1. and 2.: every operation works or fails in one line; check agrees.
        checked = attempt(lambda: operations.check(path))
        verified = attempt(lambda: operations.check(path, verify=True))
        signed = checked.ok and is_signed(path)
        must_accept = not (errors(verified) if signed else errors(checked))

        out = os.path.join(tmp, "out")
        os.mkdir(out)
        extracted = attempt(lambda: operations.extract(path, out))
        listed = attempt(lambda: listing(path))
        packed_path = os.path.join(tmp, "packed.xenguest")
        packed = attempt(lambda: operations.pack(path, packed_path))
        state = os.path.join(tmp, "state")
        toolstack = RecordingToolstack()
        made = attempt(lambda: manager(state, toolstack, verify="if-signed",
                                       keyring=pki.cert("root")).create(path, "fuzz"))
        for outcome in (extracted, listed, packed):
            assert outcome.ok or errors(checked), (outcome.error, done)
            assert outcome.ok or not must_accept, (outcome.error, done)
        assert made.ok == must_accept, (made.error, checked, verified, done)
        event(f"signed={signed} check={'errors' if errors(checked) else 'ok'} "
              f"manager={'accepts' if made.ok else 'refuses'}")
        if signed:
            trusted = attempt(lambda: verify(path, pki.cert("root")))
            assert trusted.ok or errors(verified), (trusted.error, verified, done)

        # 4. a failed operation changes nothing.
        if not extracted.ok:
            assert os.listdir(out) == [], done
        if not packed.ok:
            assert not os.path.exists(packed_path), done
        else:
            TarIndex.open(packed_path).close()
        if not made.ok:
            assert not os.path.exists(os.path.join(state, "guests", "fuzz")), done
            assert toolstack.calls == [], done
        before = set(os.listdir(tmp))
        updated = attempt(lambda: operations.update(path, [("--xen-memory", "128")]))
        if updated.ok:
            TarIndex.open(path).close()
        else:
            with open(path, "rb") as f:
                assert f.read() == image, (updated.error, done)
        assert set(os.listdir(tmp)) == before, done

"""Helpers of the xenguest-manager tests: images, tar payloads, toolstack test doubles.

There is no Xen hypervisor on a test machine: the toolstack is the system
boundary, and these doubles stand in for it (and only for it):

* :class:`RecordingToolstack` implements the manager's Toolstack interface in
  process and records every call;
* :func:`install_fake_xl` writes a stand-in ``xl`` program that the real
  ``XlToolstack`` drives through its command line (create -p, unpause,
  shutdown, destroy, domid, list), keeping its domains in a JSON file.

Everything else — disk tools, scripts, the state folder — is real.
"""

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
from typing import Dict, List, Optional, Sequence, Tuple

from mkimage_util import write  # noqa: F401  (shared with the manager tests)
from xenguest import operations
from xenguest.manager.config import ManagerConfig
from xenguest.manager.guests import Manager
from xenguest.manager.toolstack import Domain, Toolstack
from xenguest.programs import CommandError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(ROOT, "meta-xenguest", "scripts", "xenguest-manager")
MIB = 1 << 20




def script(path: str, body: str) -> str:
    """An executable shell script."""
    return write(path, "#!/bin/sh\n" + textwrap.dedent(body).lstrip(), 0o755)


def make_image(path: str, edits: Sequence[Tuple[str, Optional[str]]] = ()) -> str:
    """A file image made by the library, with *edits* (xenguest-mkimage options)."""
    operations.create(path, list(edits))
    return path


# -- tar payloads ---------------------------------------------------------------

def tar_entry(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, mode: int = 0o644,
              uid: int = 0, gid: int = 0, mtime: int = 1600000000, linkname: str = "",
              major: int = 0, minor: int = 0) -> Tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = mtime
    info.linkname = linkname
    info.devmajor, info.devminor = major, minor
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def zstd(data: bytes) -> bytes:
    """*data* compressed by the real zstd program."""
    return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def make_tar(path: str, entries: List[Tuple[tarfile.TarInfo, bytes]],
             compression: str = "") -> str:
    """Write a tar of *entries* compressed as *compression* ("", gz, bz2, xz or zst)."""
    python = "" if compression == "zst" else compression
    with tarfile.open(path, "w:" + python if python else "w",
                      format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    if compression == "zst":
        with open(path, "rb") as f:
            data = zstd(f.read())
        with open(path, "wb") as f:
            f.write(data)
    return path


ROOTFS = [
    tar_entry("./", kind=tarfile.DIRTYPE, mode=0o755),
    tar_entry("./lost+found", kind=tarfile.DIRTYPE, mode=0o700),
    tar_entry("./etc", kind=tarfile.DIRTYPE, mode=0o755, mtime=1500000000),
    tar_entry("./etc/hostname", b"guest\n"),
    tar_entry("./etc/shadow", b"root:*:1:0:99999:7:::\n", mode=0o640, uid=0, gid=42),
    tar_entry("./home", kind=tarfile.DIRTYPE, mode=0o755),
    tar_entry("./home/user", kind=tarfile.DIRTYPE, mode=0o700, uid=1000, gid=1000),
    tar_entry("./home/user/notes.txt", b"hello from the disk\n", mode=0o600, uid=1000,
              gid=1000),
    tar_entry("./bin", kind=tarfile.DIRTYPE, mode=0o755),
    tar_entry("./bin/busybox", b"\x7fELF" + bytes(range(256)) * 40, mode=0o4755),
    tar_entry("./bin/sh", kind=tarfile.SYMTYPE, linkname="busybox", mode=0o777),
    tar_entry("./bin/ls", kind=tarfile.LNKTYPE, linkname="./bin/busybox"),
    tar_entry("./dev", kind=tarfile.DIRTYPE, mode=0o755),
    tar_entry("./dev/console", kind=tarfile.CHRTYPE, mode=0o600, major=5, minor=1),
    tar_entry("./run", kind=tarfile.DIRTYPE, mode=0o755),
    tar_entry("./run/initctl", kind=tarfile.FIFOTYPE, mode=0o600),
    tar_entry("./with space/it's \"quoted\".txt", b"odd name\n"),
]


# -- toolstack doubles ---------------------------------------------------------------

class RecordingToolstack(Toolstack):
    """An in-process Toolstack: domains in a dict, every call in ``calls``.

    *fail* maps an operation (create, unpause, shutdown, destroy) to an error
    message; ``create_leaves_domain`` makes a failing create leave a domain
    behind; ``shutdown_polls`` is how many domid polls a shut-down domain
    survives (-1: it never goes away).
    """

    def __init__(self) -> None:
        self.domains_by_name: Dict[str, Domain] = {}
        self.calls: List[Tuple[str, str]] = []
        self.configs: List[str] = []
        self.fail: Dict[str, str] = {}
        self.create_leaves_domain = False
        self.shutdown_polls = 0
        self.bridges = {"xenbr0"}
        #: A file of bridge names (one a line) that also exist: scripts may add to it.
        self.bridges_file: Optional[str] = None
        #: A file that gets "xl OP NAME" lines, to order calls among init scripts.
        self.trace: Optional[str] = None
        self._closing: Dict[str, int] = {}
        self._next = 1

    def _record(self, op: str, name: str) -> None:
        self.calls.append((op, name))
        if self.trace:
            with open(self.trace, "a") as f:
                f.write(f"xl {op} {name}\n")

    def _maybe_fail(self, op: str) -> None:
        if op in self.fail:
            raise CommandError(f"xl failed (exit status 1): {self.fail[op]}")

    def create_paused(self, config_path: str) -> None:
        with open(config_path, encoding="utf-8") as f:
            text = f.read()
        self.configs.append(text)
        name = [line.split("=", 1)[1].strip().strip('"') for line in text.splitlines()
                if line.startswith("name =")][-1]
        self._record("create", name)
        if "create" in self.fail and not self.create_leaves_domain:
            self._maybe_fail("create")
        self.domains_by_name[name] = Domain(name, self._next, "--p---")
        self._next += 1
        self._maybe_fail("create")

    def unpause(self, name: str) -> None:
        self._record("unpause", name)
        self._maybe_fail("unpause")
        domain = self.domains_by_name[name]
        self.domains_by_name[name] = Domain(name, domain.domid, "-b----")

    def shutdown(self, name: str) -> None:
        self._record("shutdown", name)
        self._maybe_fail("shutdown")
        self._closing[name] = self.shutdown_polls

    def destroy(self, name: str) -> None:
        self._record("destroy", name)
        self._maybe_fail("destroy")
        self.domains_by_name.pop(name, None)
        self._closing.pop(name, None)

    def domid(self, name: str) -> Optional[int]:
        if name in self._closing:
            if self._closing[name] == 0:
                del self._closing[name]
                self.domains_by_name.pop(name, None)
            elif self._closing[name] > 0:
                self._closing[name] -= 1
        domain = self.domains_by_name.get(name)
        return domain.domid if domain else None

    def domains(self) -> List[Domain]:
        return list(self.domains_by_name.values())

    def bridge_exists(self, bridge: str) -> bool:
        self._record("bridge?", bridge)
        if self.bridges_file and os.path.exists(self.bridges_file):
            with open(self.bridges_file) as f:
                if bridge in f.read().split():
                    return True
        return bridge in self.bridges


FAKE_XL = r'''#!{python} -S
"""A stand-in for xl (no hypervisor on test machines): domains live in a JSON file."""
import fcntl, json, os, re, sys

STATE = {state!r}

def main(argv):
    with open(STATE + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(STATE) as f:
            st = json.load(f)
        st["calls"].append(argv)
        rc = run(st, argv)
        with open(STATE, "w") as f:
            json.dump(st, f)
    return rc

def fail(st, op):
    msg = st["fail"].get(op)
    if msg is not None:
        print(msg, file=sys.stderr)
        return True
    return False

def run(st, argv):
    doms = st["domains"]
    op = argv[0] if argv else ""
    if op == "create" and argv[1] == "-p":
        text = open(argv[2]).read()
        st["configs"].append(text)
        names = re.findall(r'^name = "(.*)"$', text, re.M)
        name = names[-1]
        print("Parsing config from " + argv[2], file=sys.stderr)
        if name in doms:
            print("domain " + name + " already exists", file=sys.stderr)
            return 1
        if fail(st, "create"):
            return 3
        st["next"] += 1
        doms[name] = {{"id": st["next"], "state": "--p---", "closing": None}}
        return 0
    name = argv[1] if len(argv) > 1 else ""
    if op == "list":
        print("Name                                        ID   Mem VCPUs\tState\tTime(s)")
        print("Domain-0                                     0  1024     2     r-----      10.0")
        for n, d in sorted(doms.items()):
            print("%-40s %5d   256     1     %s       0.1" % (n, d["id"], d["state"]))
        return 0
    if op == "domid":
        d = doms.get(name)
        if d and d["closing"] is not None:
            if d["closing"] == 0:
                del doms[name]
                d = None
            elif d["closing"] > 0:
                d["closing"] -= 1
        if d is None:
            print("Can't get domid of domain name '%s', maybe this domain does not exist."
                  % name, file=sys.stderr)
            return 1
        print(d["id"])
        return 0
    if name not in doms:
        print("xl: domain %s does not exist" % name, file=sys.stderr)
        return 1
    if fail(st, op):
        return 1
    if op == "unpause":
        doms[name]["state"] = "-b----"
    elif op == "shutdown":
        doms[name]["closing"] = st["shutdown_polls"]
        doms[name]["state"] = "---s--"
    elif op == "destroy":
        del doms[name]
    else:
        print("fake xl: unsupported " + " ".join(argv), file=sys.stderr)
        return 2
    return 0

sys.exit(main(sys.argv[1:]))
'''


class FakeXl:
    """The stand-in ``xl`` program and its state file."""

    def __init__(self, folder: str) -> None:
        self.state_path = os.path.join(folder, "fake-xl.json")
        self.path = os.path.join(folder, "xl")
        write(self.path, FAKE_XL.format(python=sys.executable, state=self.state_path), 0o755)
        self.save({"domains": {}, "calls": [], "configs": [], "fail": {}, "next": 0,
                   "shutdown_polls": 0})

    def load(self) -> dict:
        with open(self.state_path) as f:
            return json.load(f)

    def save(self, state: dict) -> None:
        with open(self.state_path, "w") as f:
            json.dump(state, f)

    def update(self, **values) -> None:
        state = self.load()
        state.update(values)
        self.save(state)

    def domains(self) -> Dict[str, dict]:
        return self.load()["domains"]

    def ops(self) -> List[List[str]]:
        """The xl calls other than the read-only domid/list polls."""
        return [c for c in self.load()["calls"] if c[0] not in ("domid", "list")]


# -- manager set-up -----------------------------------------------------------------

def config_file(folder: str, state: str, xl: str = "", guest_folders: str = "",
                host_scripts: str = "", extra: str = "") -> str:
    """A manager.conf for tests: everything below *folder*."""
    text = textwrap.dedent(f"""\
        [manager]
        guest_folders = {guest_folders}
        state_folder = {state}
        runtime_folder = {os.path.join(folder, 'run')}
        host_scripts = {host_scripts}
        stop_timeout = 2
        lock_timeout = 1
        [log]
        file = {os.path.join(folder, 'manager.log')}
        level = debug
        """)
    if xl:
        text += f"[commands]\nxl = {xl}\n"
    return write(os.path.join(folder, "manager.conf"), text + extra)


def manager(state: str, toolstack: Toolstack, **settings) -> Manager:
    """A Manager on *state* with an in-process toolstack double."""
    settings.setdefault("runtime_folder", os.path.join(os.path.dirname(state), "run"))
    config = ManagerConfig(state_folder=state, guest_folders=[], host_scripts="",
                           log_file="", stop_timeout=2, lock_timeout=1, **settings)
    result = Manager(config, toolstack=toolstack)
    result.poll_interval = 0.01
    return result


def tree(path: str) -> List[str]:
    """Every file and folder below *path* (relative), sorted; [] if it does not exist."""
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            found.append(os.path.relpath(os.path.join(dirpath, name), path))
    return sorted(found)


def lines(path: str) -> List[str]:
    """The lines of a text file (a trace), trailing blanks stripped."""
    with open(path) as f:
        return [line.rstrip() for line in f.read().splitlines()]


def is_executable(path: str) -> bool:
    return bool(os.stat(path).st_mode & stat.S_IXUSR)


FAKE_LVM = r'''#!{python} -S
"""A stand-in for the lvm2 commands (no device mapper on test machines).

Volume groups are folders of ROOT, logical volumes regular files in them, made
the size lvcreate asks for, rounded up to 4 MiB extents and filled with 0xAA
(a real volume holds old data, not zeros).  Tags (lvcreate --addtag) are kept
in ROOT/.tags/VG/LV, one a line.  lvs prints the -o fields (lv_path, lv_tags
comma-separated, lv_size in bytes with --units b --nosuffix) joined by
--separator (default: a space), indented by two spaces, as lvm2 does.
lvresize -L SIZE (m: MiB, b: bytes) rounds up to extents like lvcreate, fills
what it adds with 0xAA, refuses a reduction without --force and a size that
matches the volume's ("New size ... matches existing size", exit 5).
"""
import os, sys

ROOT = {root!r}
EXTENT = 4 << 20


def option(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def extents(size):
    """A -L size (NUMm or NUMb) in bytes, rounded up to whole extents."""
    number = int(size[:-1])
    wanted = number << 20 if size.endswith("m") else number
    return -(-wanted // EXTENT) * EXTENT

def main(tool, args):
    with open(os.path.join(ROOT, "calls.log"), "a") as log:
        log.write(" ".join([tool] + args) + "\n")
    target = args[-1]
    if tool == "vgs":
        if os.path.isdir(os.path.join(ROOT, target)):
            print("  " + target)
            return 0
        print('  Volume group "%s" not found' % target, file=sys.stderr)
        return 5
    path = os.path.join(ROOT, target)
    tags = os.path.join(ROOT, ".tags", target)
    if tool == "lvs":
        if os.path.isfile(path):
            held = open(tags).read().split() if os.path.exists(tags) else []
            names = option(args, "-o", "lv_path").split(",")
            if "lv_size" in names and ("--nosuffix" not in args or
                                       option(args, "--units") != "b"):
                print("  (the stand-in shows sizes with --units b --nosuffix only)",
                      file=sys.stderr)
                return 3
            fields = {{"lv_path": path, "lv_tags": ",".join(held),
                       "lv_size": str(os.path.getsize(path))}}
            print("  " + option(args, "--separator", " ").join(fields[n] for n in names))
            return 0
        print("  Failed to find logical volume " + target, file=sys.stderr)
        return 5
    if tool == "lvremove":
        os.unlink(path)
        if os.path.exists(tags):
            os.unlink(tags)
        return 0
    if tool == "lvresize":
        if not os.path.isfile(path):
            print("  Failed to find logical volume " + target, file=sys.stderr)
            return 5
        size, old = extents(option(args, "-L")), os.path.getsize(path)
        if size == old:
            print("  New size (%d extents) matches existing size (%d extents)."
                  % (size // EXTENT, old // EXTENT), file=sys.stderr)
            return 5
        if size < old and "--force" not in args and "-f" not in args:
            print("  Do you really want to reduce %s? [y/n]: n" % target, file=sys.stderr)
            return 5
        with open(path, "r+b") as f:
            f.truncate(min(size, old))
            f.seek(0, 2)
            f.write(b"\xaa" * max(0, size - old))
        return 0
    if tool == "lvcreate":
        size = extents(option(args, "-L"))
        name = option(args, "-n")
        path = os.path.join(ROOT, target, name)
        if os.path.exists(path):
            print("  Logical Volume %s already exists" % name, file=sys.stderr)
            return 5
        with open(path, "wb") as f:
            f.write(b"\xaa" * size)
        if "--addtag" in args:
            os.makedirs(os.path.join(ROOT, ".tags", target), exist_ok=True)
            with open(os.path.join(ROOT, ".tags", target, name), "w") as f:
                f.write(option(args, "--addtag") + "\n")
        return 0
    return 2

sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))
'''


def install_fake_lvm(folder: str, groups: Sequence[str]) -> Dict[str, str]:
    """The stand-in lvm2 commands below *folder*, with empty volume *groups*;
    returns the [commands] settings that select them."""
    root = os.path.join(folder, "lvm")
    for group in groups:
        os.makedirs(os.path.join(root, group))
    tool = write(os.path.join(root, "lvm-tool"), FAKE_LVM.format(python=sys.executable,
                                                                 root=root), 0o755)
    commands = {}
    for name in ("vgs", "lvs", "lvcreate", "lvremove", "lvresize"):
        os.symlink(tool, os.path.join(root, name))
        commands[name] = os.path.join(root, name)
    return commands


def peak_memory_growth(statement: str, setup: str = "", env: Optional[Dict[str, str]] = None
                       ) -> Tuple[int, str]:
    """Run *setup* then *statement* in a new Python process (the library importable);
    return how much its peak RSS grew during *statement* (KiB) and what it printed."""
    code = "\n".join([
        "import resource, sys",
        f"sys.path.insert(0, {os.path.join(ROOT, 'meta-xenguest', 'lib')!r})",
        setup,
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss",
        statement,
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)",
    ])
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=full_env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode().splitlines()
    return int(out[-1]), "\n".join(out[:-1])

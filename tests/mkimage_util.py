"""Helpers for tests of xenguest-mkimage: run the CLI, make inputs, read images back."""

import hashlib
import io
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MKIMAGE = os.path.join(ROOT, "meta-xenguest", "scripts", "xenguest-mkimage")


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run_process(*args: str, env: Dict[str, str] = None) -> Result:
    """Run the real xenguest-mkimage launcher as a separate process, as users do."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, MKIMAGE] + list(args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
    )
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                  proc.stderr.decode("utf-8", "replace"))


def mkimage(*args: str, env: Dict[str, str] = None) -> Result:
    """Run xenguest-mkimage's entry point in this process, its fds 1 and 2 captured.

    Same code path as the command (the launcher only calls ``main``), without a
    Python start-up per call; tests of the launcher itself use run_process.
    """
    from xenguest.cli.mkimage import main

    saved_env = dict(os.environ)
    os.environ.update(env or {})
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        real_streams = sys.stdout, sys.stderr
        sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), encoding="utf-8",
                                      line_buffering=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), encoding="utf-8",
                                      line_buffering=True)
        try:
            rc = main(list(args))
        finally:
            sys.stdout.close()
            sys.stderr.close()
            sys.stdout, sys.stderr = real_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            os.environ.clear()
            os.environ.update(saved_env)
        out.seek(0)
        err.seek(0)
        return Result(rc, out.read().decode("utf-8", "replace"),
                      err.read().decode("utf-8", "replace"))


def ok(*args: str, env: Dict[str, str] = None) -> Result:
    """Run xenguest-mkimage and require success with nothing on stderr."""
    result = mkimage(*args, env=env)
    assert result.rc == 0 and result.err == "", (args, result)
    return result


def fails(*args: str, rc: int = 1) -> str:
    """Run xenguest-mkimage, require failure with exit status *rc* and one clean stderr line."""
    result = mkimage(*args)
    assert result.rc == rc, (args, result)
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    assert lines[0].startswith("xenguest-mkimage"), lines[0]
    return lines[0]


def write(path: str, data, mode: int = 0o644) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tar_names(path: str) -> List[str]:
    """Member names as GNU tar lists them."""
    return subprocess.run(["tar", "-tf", path], check=True,
                          stdout=subprocess.PIPE).stdout.decode().splitlines()


def tar_member(path: str, name: str) -> bytes:
    """A member's content as GNU tar extracts it (last occurrence wins)."""
    return subprocess.run(["tar", "-xOf", path, name], check=True,
                          stdout=subprocess.PIPE).stdout


def tree(root: str) -> Dict[str, bytes]:
    """{relative path: content} of every file below root (directories as b'<dir>')."""
    result: Dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            result[os.path.normpath(os.path.join(rel, d))] = b"<dir>"
        for f in filenames:
            with open(os.path.join(dirpath, f), "rb") as fh:
                result[os.path.normpath(os.path.join(rel, f))] = fh.read()
    return result


def real_xl_confirms(image: str, config: dict) -> dict:
    """Check the image's merged xl configuration with the real ``xl -N create``.

    xl must accept it (exit 0, nothing on stderr) and its domain JSON must show
    the values of *config* (the settings our parser merged).  A name and a
    kernel are added when the image has none, as the host does.
    """
    from xl_tool import have_xl, unavailable, xl_dry_run

    if not have_xl():
        unavailable("xl (xen-utils-4.17)")
    text = mkimage("dump-xenconfig", image).out
    if "name" not in config:
        text += '\nname = "xenguest-test"\n'
    if "kernel" not in config and "bootloader" not in config:
        text += '\nkernel = "files/kernel"\n'
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "merged.cfg")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        rc, domain, err = xl_dry_run(path)
    assert rc == 0 and err == "", (text, rc, err)
    c_info, b_info = domain["c_info"], domain["b_info"]
    expected = {
        "name": (c_info["name"], config.get("name")),
        "type": (c_info["type"], config.get("type")),
        "memory": (b_info["max_memkb"], config["memory"] * 1024 if "memory" in config else None),
        "vcpus": (b_info["max_vcpus"], config.get("vcpus")),
        "kernel": (b_info.get("kernel"), config.get("kernel")),
        "ramdisk": (b_info.get("ramdisk"), config.get("ramdisk")),
    }
    words = [f"root={config['root']}"] if "root" in config else []
    words += [config["extra"]] if config.get("extra") else []
    cmdline = config.get("cmdline", " ".join(words) or None)
    expected["cmdline"] = (b_info.get("cmdline"), cmdline)
    for key, (seen, wanted) in expected.items():
        if wanted is not None:
            assert seen == wanted, (key, seen, wanted, text)
    return domain


def patch_header(path: str, member: str, start: int, data: bytes, checksum: bool = True) -> None:
    """Overwrite bytes *start*.. of the header of *member* (a logical name) in the
    file image *path*, then set the header's checksum right (unless not *checksum*)."""
    from xenguest.format.archive import TarIndex

    with TarIndex.open(path) as index:
        offset = index.members[member].header_offset
    with open(path, "r+b") as f:
        f.seek(offset)
        block = bytearray(f.read(512))
        block[start:start + len(data)] = data
        if checksum:
            block[148:156] = b" " * 8
            block[148:156] = b"%06o\0 " % sum(block)
        f.seek(offset)
        f.write(block)

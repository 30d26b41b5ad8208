"""Writers of one image against each other and against interruptions.

Real processes run the real command: concurrent writers (update, pack),
kill -9 at chosen moments of a write (:mod:`interrupt_util`).  The image
must hold every reported success, and nothing a killed writer left may stay.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys

import pytest

from interrupt_util import run_interrupted, steps
from mkimage_util import ok, sha256, write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "meta-xenguest", "lib")

#: Says it is ready, then runs xenguest-mkimage once it reads a byte from stdin.
AT_ONCE = """\
import os, sys
sys.path.insert(0, {lib!r})
from xenguest.cli.mkimage import main
os.write(1, b"ready\\n")
os.read(0, 1)
sys.exit(main(sys.argv[1:]))
"""


def params(image):
    return json.loads(ok("dump-paramsconfig", image, "--json").out)


def run_at_once(tmp_path, commands):
    """Start one process per argument list; let them all go at the same moment."""
    go, start = os.pipe()
    code = AT_ONCE.format(lib=LIB)
    procs = [subprocess.Popen([sys.executable, "-c", code] + args, stdin=go,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in commands]
    os.close(go)
    for proc in procs:
        assert proc.stdout.readline() == b"ready\n"
    os.write(start, bytes(len(procs)))
    os.close(start)
    return [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]


def new_image(tmp_path, kind):
    image = str(tmp_path / "img")
    if kind == "directory":
        os.mkdir(image)
    ok("create", image, "--disk-size=1")
    return image


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_concurrent_writers_lose_nothing(tmp_path, kind):
    """Every writer that reports success has its change in the image."""
    image = new_image(tmp_path, kind)
    blob = write(str(tmp_path / "blob"), os.urandom(4 << 20))
    for round_ in range(3):
        commands = [["update", image, f"--set-param=P{round_}_{i}={i}",
                     f"--xen-add-file={blob}:blob{i}"] for i in range(5)]
        if kind == "file":
            commands.append(["pack", image, image])
        results = run_at_once(tmp_path, commands)
        assert [rc for rc, _ in results] == [0] * len(commands), results
    assert params(image) == dict({"GUEST_AUTOBOOT": "1"}, **{
        f"P{r}_{i}": str(i) for r in range(3) for i in range(5)})
    ok("check", "--verify", image)


def hidden(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


@pytest.mark.parametrize("operation", ["create", "pack", "rewriting update"])
def test_a_killed_writers_temporary_file_goes_with_the_next_write(tmp_path, operation):
    """kill -9 just before the new image is renamed into place: a full-size hidden file
    is left; the next writer of the image, whichever, removes it."""
    blob = write(str(tmp_path / "src" / "blob"), os.urandom(1 << 20))
    image = str(tmp_path / "g.xenguest")
    ok("create", image, f"--xen-add-file={blob}", f"--xen-add-file={blob}:other")
    before = sha256(image)
    args = {"create": ["create", image, f"--xen-add-file={blob}"],
            "pack": ["pack", image, image],
            "rewriting update": ["update", image, "--xen-rm-file=blob"]}[operation]
    keep = shutil.copy(image, str(tmp_path / "src" / "keep"))
    trace = steps("mkimage", args, str(tmp_path), str(tmp_path) + ".trace")
    shutil.copy(keep, image)
    renames = [i for i, s in enumerate(trace, 1) if s.startswith("os.rename") and "tmp-" in s]
    assert renames, trace
    rc, err = run_interrupted("mkimage", args, str(tmp_path), renames[-1])
    assert rc == -9, err
    assert sha256(image) == before
    [left] = hidden(str(tmp_path))
    assert os.path.getsize(str(tmp_path / left)) > 1 << 20
    ok("update", image, "--xen-memory=128")  # an append: no temporary file of its own
    assert hidden(str(tmp_path)) == []


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    image = str(tmp_path / "g.xenguest")
    ok("create", image)
    live = str(tmp_path / ".g.xenguest.xenguest-tmp-live0001")
    dead = write(str(tmp_path / ".g.xenguest.xenguest-tmp-dead0001"), b"half an image")
    with open(write(live, b"being written"), "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        ok("update", image, "--xen-memory=100")
        assert hidden(str(tmp_path)) == [os.path.basename(live)]
    ok("pack", image, image)
    assert hidden(str(tmp_path)) == [] and not os.path.exists(dead)


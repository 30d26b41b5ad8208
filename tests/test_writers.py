"""Writers of one image against each other and against interruptions.

Real processes run the real command: concurrent writers (update, pack).
The image must hold every reported success.
"""

import json
import os
import subprocess
import sys

import pytest

from mkimage_util import ok, write

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


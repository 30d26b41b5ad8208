"""Interrupting a real command at a chosen moment: kill -9, Ctrl-C, or a file
changed under its feet.

The command (xenguest-mkimage or xenguest-manager) runs in its own Python
process with an audit hook (``sys.addaudithook``) that watches what it does
to files below a folder — opens, renames, new folders, removals — and the
programs it starts.  At the N-th such step the process sends itself SIGKILL
(nothing of the command runs after it: a real kill -9), gets a
KeyboardInterrupt instead of the step (Ctrl-C at that very moment), or a
file is changed as another process would change it (renamed over, or
overwritten in place) before the step goes on.  Nothing
of the command is replaced; the hook only picks a moment that does not
depend on timing, so that every step of a command can be tried in turn.
"""

import json
import os
import subprocess
import sys
from typing import Any, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "meta-xenguest", "lib")

HARNESS = r'''
import json, os, signal, sys
sys.path.insert(0, {lib!r})
from xenguest.cli.{tool} import main
from xenguest.manager import deploy  # noqa: F401  (loaded now: no import among the steps)

spec = json.loads(sys.argv[1])
under, nth, how, trace = os.path.join(spec["under"], ""), spec["nth"], spec["how"], spec["trace"]
count = 0
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def step(event, args):
    """A description of a watched step, or None."""
    if event == "subprocess.Popen":
        return " ".join(["run", os.path.basename(str(args[1][0]))] + [str(a) for a in args[1][1:2]])
    if event == "open" and isinstance(args[0], str) and isinstance(args[2], int):
        kind = "write" if args[2] & WRITE else "read"
        return f"open-{{kind}} {{args[0]}}" if args[0].startswith(under) else None
    if event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
        paths = [os.fsdecode(a) for a in args[:2 if event == "os.rename" else 1]
                 if isinstance(a, (str, bytes))]
        return f"{{event}} {{' '.join(paths)}}" if paths and paths[0].startswith(under) \
            else None
    return None


def hook(event, args):
    global count
    what = step(event, args)
    if what is None:
        return
    count += 1
    if trace:
        with open(trace, "a") as f:
            f.write(what + "\n")
    if count != nth:
        return
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "ctrl-c":
        raise KeyboardInterrupt
    action, path, *rest = how
    if action == "rename":
        os.rename(rest[0], path)
    else:  # pwrite: the bytes (hex) at the offset, in place
        fd = os.open(path, os.O_WRONLY)
        os.pwrite(fd, bytes.fromhex(rest[1]), rest[0])
        os.close(fd)


sys.addaudithook(hook)
sys.exit(main(sys.argv[2:]))
'''


def _run(tool: str, args: List[str], spec: dict, env: dict = None
         ) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run([sys.executable, "-c", HARNESS.format(lib=LIB, tool=tool),
                           json.dumps(spec)] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=dict(os.environ, **(env or {})),
                          timeout=300)


def run_interrupted(tool: str, args: List[str], under: str, nth: int, how: Any = "kill",
                    env: dict = None) -> Tuple[int, str]:
    """Run ``xenguest-TOOL ARGS``, interrupted at its *nth* step below the folder
    *under*; return (exit status, stderr).  *how*: ``kill``, ``ctrl-c``,
    ``["rename", PATH, NEW]`` (NEW renamed over PATH) or ``["pwrite", PATH,
    OFFSET, HEX]``."""
    proc = _run(tool, args, {"under": under, "nth": nth, "how": how, "trace": ""}, env)
    return proc.returncode, proc.stderr.decode()


def steps(tool: str, args: List[str], under: str, trace: str, env: dict = None) -> List[str]:
    """The steps below *under* of an uninterrupted run (which must succeed); *trace*
    is a scratch file outside *under*."""
    proc = _run(tool, args, {"under": under, "nth": 0, "how": "", "trace": trace}, env)
    assert proc.returncode == 0, proc.stderr.decode()
    with open(trace) as f:
        found = f.read().splitlines()
    os.unlink(trace)
    return found

"""The start sequence: init.pre, the checks of the host (its bridges), ``xl create -p``,
init.d, ``xl unpause``, init.post.

Scripts of a stage come from the host-wide folder (``HOST_SCRIPTS/STAGE``, if
it exists) and then from the guest (``guests/NAME/STAGE``), each folder in
sorted name order.  Each script is executed — never sourced — with the guest
name as ``$1``, the guest folder as working directory, standard input from
/dev/null, and this environment (nothing else of the manager's leaks in):

* ``PATH``, ``HOME``, ``LANG``, ``LANGUAGE``, ``TZ``, ``TMPDIR`` and ``LC_*``
  from the manager's own environment, when set;
* every params.cfg entry (read without a shell; reserved names are refused);
* ``XENGUEST_MANAGER_GUEST_NAME`` — the guest name;
* ``XENGUEST_MANAGER_GUEST_DIR`` — the guest folder;
* ``XENGUEST_MANAGER_XL_CONFIG`` — the xl configuration file (init.pre scripts
  may append to it: ``xl create`` reads it after them);
* ``XENGUEST_MANAGER_STAGE`` — ``init.pre``, ``init.d`` or ``init.post``;
* ``XENGUEST_MANAGER_DOMID`` — the domain ID (init.d and init.post only);
* ``guestname``, ``guestdir``, ``guestcfgfile`` — the same three values under
  the names the earlier (sourcing) manager's scripts used.

A script's output goes to the log as it comes, line by line (a line longer
than :data:`MAX_LINE` bytes in several pieces); it is never held in memory.
A script that fails (non-zero exit, killed,
not executable, or running longer than the script timeout) stops the sequence:
a domain already created is destroyed, and the error names the script and its
exit status.  Nothing paused or half-configured is left behind.
"""

import logging
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from ..errors import XenguestError
from ..format import layout
from . import ManagerError
from .toolstack import Toolstack

log = logging.getLogger("xenguest.manager")

STAGES = layout.INIT_STAGES
NAME_VAR = "XENGUEST_MANAGER_GUEST_NAME"
DIR_VAR = "XENGUEST_MANAGER_GUEST_DIR"
CONFIG_VAR = "XENGUEST_MANAGER_XL_CONFIG"
STAGE_VAR = "XENGUEST_MANAGER_STAGE"
DOMID_VAR = "XENGUEST_MANAGER_DOMID"
#: The earlier manager's variable names, kept for its users' scripts.
COMPAT_VARS = ("guestname", "guestdir", "guestcfgfile")
#: Every variable the manager sets (a parameter may not use these names).
MANAGER_VARS = (NAME_VAR, DIR_VAR, CONFIG_VAR, STAGE_VAR, DOMID_VAR) + COMPAT_VARS
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Longest piece of a script's output logged as one line (bytes).
MAX_LINE = 4096
#: Seconds between two looks at a running script's output.
OUTPUT_POLL = 0.1
_CHUNK = 64 * 1024


class ScriptError(ManagerError):
    """An init script failed."""


class ScriptTimeout(ScriptError):
    """An init script did not finish in its time and was killed."""


@dataclass(frozen=True)
class Script:
    """One init script: its path and how messages name it."""

    path: str
    display: str


def find_scripts(stage: str, guest_dir: str, host_scripts: str) -> List[Script]:
    """The scripts of *stage*: the host-wide folder's first, then the guest's; sorted."""
    found: List[Script] = []
    sources: List[Tuple[str, str]] = []
    if host_scripts:
        folder = os.path.join(host_scripts, stage)
        sources.append((folder, folder))
    sources.append((os.path.join(guest_dir, stage), stage))
    for folder, shown in sources:
        try:
            names = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                found.append(Script(path, f"{shown}/{name}"))
    return found


def base_environment(environ: Mapping[str, str]) -> Dict[str, str]:
    """What init scripts inherit from the manager's environment."""
    env = {k: v for k, v in environ.items() if k in PASSED_THROUGH or k.startswith("LC_")}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


@dataclass
class StartPlan:
    """Everything the start sequence needs for one guest."""

    name: str
    guest_dir: str
    config_path: str
    params: List[Tuple[str, str]]
    scripts: Dict[str, List[Script]]
    timeout: float
    base_env: Dict[str, str] = field(default_factory=dict)

    def environment(self, stage: str, domid: Optional[int]) -> Dict[str, str]:
        env = dict(self.base_env)
        env.update(self.params)
        env.update({
            NAME_VAR: self.name, DIR_VAR: self.guest_dir, CONFIG_VAR: self.config_path,
            STAGE_VAR: stage,
            "guestname": self.name, "guestdir": self.guest_dir,
            "guestcfgfile": self.config_path,
        })
        if domid is not None:
            env[DOMID_VAR] = str(domid)
        return env


class OutputLog:
    """Passes a script's output to the log line by line, holding at most one line."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.last = ""
        self._partial = b""

    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._log(line)
        while len(self._partial) > MAX_LINE:
            self._log(self._partial[:MAX_LINE])
            self._partial = self._partial[MAX_LINE:]

    def close(self) -> None:
        if self._partial:
            self._log(self._partial)
            self._partial = b""

    def _log(self, line: bytes) -> None:
        for start in range(0, max(len(line), 1), MAX_LINE):
            text = line[start:start + MAX_LINE].rstrip(b"\r").decode("utf-8", "replace")
            log.info("%s: %s", self.display, text)
            self.last = text.strip()


def _pass_on(output: "tempfile._TemporaryFileWrapper[bytes]", done: int, end: int,
             lines: OutputLog) -> int:
    """Log the output file's bytes from *done* to *end*; return the new position.

    pread leaves the file position, which the script writes at, alone.
    """
    while done < end:
        data = os.pread(output.fileno(), min(_CHUNK, end - done), done)
        if not data:
            break
        lines.feed(data)
        done += len(data)
    return done


def _size(output: "tempfile._TemporaryFileWrapper[bytes]") -> int:
    return os.fstat(output.fileno()).st_size


def run_script(script: Script, name: str, env: Dict[str, str], cwd: str,
               timeout: float) -> None:
    """Execute one script with *name* as $1; raise ScriptError when it fails.

    Its output goes through a temporary file, read while it runs, so that a
    background process it leaves behind cannot hold the manager up.
    """
    log.info("running %s", script.display)
    lines = OutputLog(script.display)
    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen([script.path, name], stdin=subprocess.DEVNULL,
                                    stdout=output, stderr=subprocess.STDOUT, env=env,
                                    cwd=cwd, start_new_session=True)
        except OSError as e:
            hint = " (no '#!' line?)" if e.strerror and "format" in e.strerror else ""
            raise ScriptError(f"cannot run {script.display}: {e.strerror}{hint}") from None
        deadline = time.monotonic() + timeout
        done = 0
        returncode: Optional[int] = None
        try:
            while True:
                try:
                    returncode = proc.wait(timeout=min(OUTPUT_POLL, max(
                        0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    done = _pass_on(output, done, _size(output), lines)
                    if time.monotonic() >= deadline:
                        _kill_group(proc)
                        break
        except BaseException:
            _kill_group(proc)
            raise
        _pass_on(output, done, _size(output), lines)
        lines.close()
    last = f": {lines.last}" if lines.last else ""
    if returncode is None:
        raise ScriptTimeout(f"{script.display} did not finish within {timeout:g} s")
    if returncode < 0:
        raise ScriptError(f"{script.display} was killed by signal {-returncode}{last}")
    if returncode != 0:
        raise ScriptError(f"{script.display} failed with exit status {returncode}{last}")


def _kill_group(proc: "subprocess.Popen[bytes]") -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def run_stage(plan: StartPlan, stage: str, domid: Optional[int]) -> None:
    """Run the scripts of *stage* in order; the first failure stops it."""
    for script in plan.scripts.get(stage, []):
        run_script(script, plan.name, plan.environment(stage, domid), plan.guest_dir,
                   plan.timeout)


#: Destroys domain NAME if it exists and waits until it is gone; True if there was one.
Cleanup = Callable[[str], bool]


def start_sequence(toolstack: Toolstack, plan: StartPlan, cleanup: Cleanup,
                   before_create: Callable[[], None] = lambda: None) -> int:
    """Run the whole start sequence of *plan*; return the domain ID.

    *before_create* runs after the init.pre scripts, right before ``xl
    create`` (the checks of what init.pre scripts may prepare, such as a
    bridge); an error it raises stops the start.  On any failure after ``xl
    create`` (or during it, if a domain was left), *cleanup(name)* destroys
    the domain and waits until it is gone; the error then says so.
    """
    run_stage(plan, layout.INIT_PRE, None)
    before_create()
    created = False
    try:
        log.info("creating domain %s (paused) from %s", plan.name, plan.config_path)
        created = True
        toolstack.create_paused(plan.config_path)
        domid = toolstack.domid(plan.name)
        if domid is None:
            raise ManagerError(f"xl create reported success but domain {plan.name} "
                               "does not exist")
        run_stage(plan, layout.INIT_D, domid)
        log.info("unpausing domain %s (ID %d)", plan.name, domid)
        toolstack.unpause(plan.name)
        run_stage(plan, layout.INIT_POST, domid)
        return domid
    except BaseException as error:
        if not created:
            raise
        note = _cleanup_note(cleanup, plan.name)
        if isinstance(error, XenguestError):
            kind = type(error) if isinstance(error, ManagerError) else ManagerError
            raise kind(f"{error.message}; {note}") from None
        raise


def _cleanup_note(cleanup: Cleanup, name: str) -> str:
    """Destroy what the failed start left; describe the outcome for the error message."""
    try:
        destroyed = cleanup(name)
    except XenguestError as e:
        log.error("could not destroy domain %s: %s", name, e.message)
        return f"destroying domain {name} failed too: {e.message}"
    return f"domain {name} was destroyed" if destroyed else "no domain was left"


def script_stages(guest_dir: str, host_scripts: str) -> Dict[str, List[Script]]:
    """The scripts of every stage."""
    return {stage: find_scripts(stage, guest_dir, host_scripts) for stage in STAGES}

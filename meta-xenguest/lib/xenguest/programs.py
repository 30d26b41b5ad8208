"""External commands of the host: looked up once, run with their output captured.

Every command is named by its program name (``sfdisk``, ``mke2fs``, ``xl``); the
settings may give an absolute path for any of them (``[commands]``), else PATH
is searched.  A failure becomes one :class:`CommandError` line naming the
command, its exit status and the last line it printed.  Commands run with
``LC_ALL=C`` so that their output can be read.  Their output goes to
temporary files, of which at most :data:`OUTPUT_LIMIT` bytes are read back.
"""

import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, Callable, Dict, Iterable, List, Mapping, Optional

from .errors import CommandError

log = logging.getLogger("xenguest.manager")

#: Where each command comes from, for "not found" messages.
PROVIDERS: Dict[str, str] = {
    "sfdisk": "util-linux (sfdisk)",
    "mkswap": "util-linux (mkswap)",
    "fallocate": "util-linux (fallocate)",
    "mke2fs": "e2fsprogs (mke2fs)",
    "debugfs": "e2fsprogs (debugfs)",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mmd": "mtools",
    "xl": "the Xen tools (xl)",
    "lvcreate": "lvm2",
    "lvremove": "lvm2",
    "lvs": "lvm2",
    "lvresize": "lvm2",
    "vgs": "lvm2",
    "zstd": "zstd",
    "ip": "iproute2 (ip)",
    "nft": "nftables (nft)",
    "dnsmasq": "dnsmasq",
    "dhcp_release": "dnsmasq (dhcp_release; Debian: dnsmasq-utils)",
    "udhcpc": "busybox (udhcpc)",
    "networkctl": "systemd (networkctl)",
    "xenstore-read": "the Xen tools (xenstore-read)",
}


#: Most bytes of a command's output (stdout, stderr) read into memory: a longer
#: output keeps its beginning and its end (where the last line is).
OUTPUT_LIMIT = 1 << 20
_TAIL = 4096


def read_output(output: BinaryIO) -> str:
    """The text of a command's output file, shortened in its middle past OUTPUT_LIMIT."""
    fd = output.fileno()
    size = os.fstat(fd).st_size
    if size <= OUTPUT_LIMIT:
        data = os.pread(fd, size, 0)
    else:
        head = os.pread(fd, OUTPUT_LIMIT - _TAIL, 0)
        tail = os.pread(fd, _TAIL, size - _TAIL)
        data = b"%s\n[... %d bytes left out ...]\n%s" % (head, size - len(head) - len(tail),
                                                         tail)
    return data.decode("utf-8", "replace")


@dataclass
class Result:
    """What a finished command returned and printed."""

    returncode: int
    stdout: str
    stderr: str


def last_line(*texts: str) -> str:
    """The last non-blank line of the first text that has one."""
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""


class Host:
    """Finds and runs the host's commands.  *commands* maps names to absolute paths."""

    def __init__(self, commands: Optional[Mapping[str, str]] = None) -> None:
        self.commands = dict(commands or {})
        self._found: Dict[str, str] = {}

    def which(self, name: str) -> str:
        """The path of command *name*; CommandError if it cannot be found."""
        if name in self._found:
            return self._found[name]
        path = self.commands.get(name) or shutil.which(name)
        if not path or not os.access(path, os.X_OK):
            provider = PROVIDERS.get(name, name)
            where = f" at {self.commands[name]}" if name in self.commands else " on PATH"
            raise CommandError(f"command {name} not found{where} (install {provider})")
        self._found[name] = path
        return path

    def require(self, names: Iterable[str]) -> None:
        """Check that every command in *names* is available; one error lists the missing."""
        missing = []
        for name in sorted(set(names)):
            try:
                self.which(name)
            except CommandError:
                missing.append(f"{name} ({PROVIDERS.get(name, name)})")
        if missing:
            raise CommandError("missing command(s): " + ", ".join(missing))

    @staticmethod
    def environment(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        env = dict(os.environ)
        env["LC_ALL"] = "C"
        env.update(extra or {})
        return env

    def run(self, name: str, args: List[str], input: Optional[bytes] = None,
            env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
            check: bool = True) -> Result:
        """Run command *name* with *args*; raise CommandError when it fails and *check*."""
        argv = [self.which(name)] + list(args)
        log.debug("running: %s", shlex.join(argv))
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.run(
                    argv, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                    stdout=out, stderr=err, env=self.environment(env), timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise CommandError(f"{name} did not finish within {timeout:g} s") from None
            except OSError as e:
                raise CommandError(f"cannot run {name}: {e.strerror}") from None
            result = Result(proc.returncode, read_output(out), read_output(err))
        if check and result.returncode != 0:
            raise self.failure(name, result)
        return result

    def run_feeding(self, name: str, args: List[str], feed: Callable[[BinaryIO], None],
                    env: Optional[Mapping[str, str]] = None) -> Result:
        """Run command *name*, streaming its standard input from *feed(pipe)*.

        The command's output goes to temporary files, so it cannot block the writer.
        """
        argv = [self.which(name)] + list(args)
        log.debug("running: %s < (stream)", shlex.join(argv))
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                        env=self.environment(env))
            except OSError as e:
                raise CommandError(f"cannot run {name}: {e.strerror}") from None
            assert proc.stdin is not None
            broken = False
            try:
                try:
                    feed(proc.stdin)
                except BrokenPipeError:
                    broken = True
                finally:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        broken = True
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            returncode = proc.wait()
            result = Result(returncode, read_output(out), read_output(err))
        if returncode != 0 or broken:
            raise self.failure(name, result)
        return result

    @staticmethod
    def failure(name: str, result: Result) -> CommandError:
        detail = last_line(result.stderr, result.stdout)
        status = (f"killed by signal {-result.returncode}" if result.returncode < 0
                  else f"exit status {result.returncode}")
        return CommandError(f"{name} failed ({status})" + (f": {detail}" if detail else ""))

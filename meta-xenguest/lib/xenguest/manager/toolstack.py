"""The interface to Xen's toolstack, and its implementation with ``xl``.

:class:`Toolstack` is the boundary between the manager and the hypervisor:
everything the manager asks of Xen goes through it (tests use a test double
of this interface; nothing else of the manager is replaced).

Facts the waiting helpers rely on: ``xl shutdown`` only asks the guest to shut
down; the domain disappears later, and even after ``xl shutdown -w`` returns
the hotplug scripts are still releasing its devices.  A domain is gone when
``xl domid NAME`` fails, and only then may its disk be freed or re-created.
"""

import abc
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

from ..digits import whole_number
from ..programs import CommandError, Host

log = logging.getLogger("xenguest.manager")

#: Seconds between two polls while waiting for a domain to go away.
POLL_INTERVAL = 0.25


@dataclass(frozen=True)
class Domain:
    """One domain as the toolstack lists it; *flags* is xl's state column (``-b----``)."""

    name: str
    domid: int
    flags: str = "------"

    @property
    def state(self) -> str:
        """running, paused, shutting-down, crashed or dying."""
        flags = self.flags
        if "c" in flags:
            return "crashed"
        if "d" in flags:
            return "dying"
        if "s" in flags:
            return "shutting-down"
        if "p" in flags:
            return "paused"
        return "running"


class Toolstack(abc.ABC):
    """What the manager needs from Xen.  Names are domain (guest) names."""

    @abc.abstractmethod
    def create_paused(self, config_path: str) -> None:
        """Create the domain described by *config_path*, paused (``xl create -p``)."""

    @abc.abstractmethod
    def unpause(self, name: str) -> None:
        """Let a paused domain run."""

    @abc.abstractmethod
    def shutdown(self, name: str) -> None:
        """Ask the domain to shut down; returns at once."""

    @abc.abstractmethod
    def destroy(self, name: str) -> None:
        """Stop the domain at once (no graceful shutdown)."""

    @abc.abstractmethod
    def domid(self, name: str) -> Optional[int]:
        """The domain ID of *name*, or None when no such domain exists."""

    @abc.abstractmethod
    def domains(self) -> List[Domain]:
        """Every domain but dom0."""

    def domain(self, name: str) -> Optional[Domain]:
        """The domain called *name*, or None."""
        for domain in self.domains():
            if domain.name == name:
                return domain
        return None

    def bridge_exists(self, bridge: str) -> bool:
        """Whether the network bridge *bridge* exists on the host."""
        return os.path.isdir(os.path.join("/sys/class/net", bridge, "bridge"))


class XlToolstack(Toolstack):
    """The toolstack through the ``xl`` command."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def _xl(self, *args: str) -> str:
        return self.host.run("xl", list(args)).stdout

    def create_paused(self, config_path: str) -> None:
        self._xl("create", "-p", config_path)

    def unpause(self, name: str) -> None:
        self._xl("unpause", name)

    def shutdown(self, name: str) -> None:
        self._xl("shutdown", name)

    def destroy(self, name: str) -> None:
        self._xl("destroy", name)

    def domid(self, name: str) -> Optional[int]:
        result = self.host.run("xl", ["domid", name], check=False)
        domid = whole_number(result.stdout.strip())
        return domid if result.returncode == 0 else None

    def domains(self) -> List[Domain]:
        return parse_xl_list(self._xl("list"))


def parse_xl_list(text: str) -> List[Domain]:
    """Read ``xl list`` output (``Name ID Mem VCPUs State Time(s)``), dom0 left out."""
    domains = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        domid = whole_number(fields[-5]) if len(fields) >= 6 else None
        if not domid:  # not a domain line, or dom0
            continue
        name = " ".join(fields[:-5])
        domains.append(Domain(name, domid, fields[-2]))
    return domains


Clock = Callable[[], float]
Sleep = Callable[[float], None]


def wait_gone(toolstack: Toolstack, name: str, timeout: float,
              clock: Clock = time.monotonic, sleep: Sleep = time.sleep,
              interval: float = POLL_INTERVAL) -> bool:
    """Wait until domain *name* no longer exists; False if it still does after *timeout*."""
    deadline = clock() + timeout
    while True:
        if toolstack.domid(name) is None:
            return True
        if clock() >= deadline:
            return False
        sleep(interval)


def destroy_and_wait(toolstack: Toolstack, name: str, timeout: float,
                     clock: Clock = time.monotonic, sleep: Sleep = time.sleep,
                     interval: float = POLL_INTERVAL) -> bool:
    """Destroy domain *name* (if it exists) and wait until it is gone.

    Return whether there was a domain; raise CommandError when it is still
    there after *timeout*.
    """
    if toolstack.domid(name) is None:
        return False
    log.info("destroying domain %s", name)
    try:
        toolstack.destroy(name)
    except CommandError:
        if toolstack.domid(name) is None:  # it went away by itself meanwhile
            return True
        raise
    if not wait_gone(toolstack, name, timeout, clock, sleep, interval):
        raise CommandError(f"domain {name} still exists {timeout:g} s after xl destroy")
    return True

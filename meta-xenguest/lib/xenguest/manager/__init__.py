"""xenguest-manager: turn xenguest images into Xen guests on a Xen host (dom0).

The package is split by concern:

* :mod:`.config` — the settings file (``/etc/xenguest/manager.conf``);
* :mod:`.backends` — where a disk lives: a file or an LVM logical volume;
* :mod:`.toolstack` — the interface to Xen's toolstack (``xl``);
* :mod:`.guestcfg` — the xl configuration a guest is started with;
* :mod:`.initscripts` — the init.pre / init.d / init.post start sequence;
* :mod:`.guestnet` — a guest's network: its addresses, its vif, the NAT rules
  and DHCP reservation of its interface (Xen's vif hotplug script);
* :mod:`.hostnet` — the host's guest networks (``network up|down|status``);
* :mod:`.natconf` — the text of the nftables table and dnsmasq configuration;
* :mod:`.state` — the state folder, guest records and per-guest locks;
* :mod:`.base` — what every operation on one guest needs (lock, disk backend,
  start, stop, removing a stopped guest);
* :mod:`.guests` — the operations: create, start, stop, remove, list, ...;
* :mod:`.deploy` — making a guest from an image (verify, check, build,
  roll back), loaded only by the commands that make guests; the disk itself
  is built by :mod:`xenguest.disk.build`;
* :mod:`.switch` — moving a guest to another image (update, rollback),
  journaled step by step, and recovering a switch a killed command left;
* :mod:`.update` — what an update checks before it switches a guest to a new
  image, loaded only by ``update``.

Imports: the foundations, xl, format, disk, operations.
"""

from typing import ContextManager

from .. import errors
from ..errors import XenguestError


class ManagerError(XenguestError):
    """A guest operation failed: the message says which step and why."""


def step(what: str) -> ContextManager[None]:
    """Name the step that failed: any user error or OS error becomes
    ``ManagerError("WHAT: reason")``."""
    return errors.step(what, ManagerError)

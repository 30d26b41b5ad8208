"""xenguest-manager: turn xenguest images into Xen guests on a Xen host (dom0).

The package is split by concern:

* :mod:`.config` — the settings file (``/etc/xenguest/manager.conf``);
* :mod:`.host` — running external commands (sfdisk, mke2fs, xl, ...);
* :mod:`.provision` and :mod:`.populate` — building a guest disk from
  ``disk.cfg`` and the ``disk/`` payload, without mounting anything;
* :mod:`.backends` — where a disk lives: a file or an LVM logical volume;
* :mod:`.toolstack` — the interface to Xen's toolstack (``xl``);
* :mod:`.guestcfg` — the xl configuration a guest is started with;
* :mod:`.initscripts` — the init.pre / init.d / init.post start sequence;
* :mod:`.guestnet` — a guest's network: its addresses, its vif, the NAT rules
  and DHCP reservation of its interface (Xen's vif hotplug script);
* :mod:`.hostnet` — the host's guest networks (``network up|down|status``);
* :mod:`.natconf` — the text of the nftables table and dnsmasq configuration;
* :mod:`.state` — the state folder, guest records and per-guest locks;
* :mod:`.guests` — the operations: create, start, stop, remove, list, ...;
* :mod:`.deploy` — making a guest from an image (verify, check, build,
  roll back), loaded only by the commands that make guests.
"""

from contextlib import contextmanager
from typing import Iterator

from ..errors import XenguestError


class ManagerError(XenguestError):
    """A guest operation failed: the message says which step and why."""


@contextmanager
def step(what: str) -> Iterator[None]:
    """Name the step that failed: any user error or OS error becomes ``WHAT: reason``."""
    try:
        yield
    except XenguestError as e:
        raise ManagerError(f"{what}: {e.message}") from None
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise ManagerError(f"{what}: {where}{e.strerror or e}") from None

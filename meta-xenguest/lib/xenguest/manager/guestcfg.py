"""What a guest is started with: its parameters and its final xl configuration.

The xl configuration is the image's, made final by
:mod:`xenguest.xl.final`: ``name`` the guest name, ``disk`` the
provisioned disk, ``files/`` paths the files in the guest folder, and the
network following ``XENGUEST_NETWORK_TYPE`` in params.cfg: ``bridge`` and
``nat`` set ``vif`` to the one interface :mod:`.guestnet` describes (on the
guest bridge or the NAT bridge, with the guest's stable MAC address); ``none``
— or no such parameter — adds nothing (the image's own ``vif``, if any, is kept).
"""

import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from ..errors import XenguestError
from ..format import layout
from ..format.netparams import FORWARD_PARAM, TYPE_PARAM, PortForward, check_network
from ..shellvars import ShellVarFile, is_reserved
from ..xl import config as xlcfg
from ..xl.final import final_values, render_config
from . import ManagerError

AUTOBOOT_PARAM = "GUEST_AUTOBOOT"


@dataclass
class GuestParams:
    """params.cfg, read without a shell and checked."""

    items: List[Tuple[str, str]]
    network: str
    autoboot: bool
    forwards: List[PortForward]


def read_params(params: ShellVarFile, manager_names: Iterable[str]) -> GuestParams:
    """Check the parameters; *manager_names* are variables the manager sets itself."""
    taken = set(manager_names)
    items = params.items()
    for key, _ in items:
        if is_reserved(key):
            raise ManagerError(f"params.cfg: {key} is reserved: parameters become the "
                               "environment of init scripts run as root")
        if key in taken:
            raise ManagerError(f"params.cfg: {key} is set by xenguest-manager for init "
                               "scripts and cannot be a parameter")
    try:
        network, forwards = check_network(params.get(TYPE_PARAM), params.get(FORWARD_PARAM))
    except XenguestError as e:
        raise ManagerError(f"params.cfg: {e.message}") from None
    autoboot = params.get(AUTOBOOT_PARAM)
    if autoboot not in (None, "", "0", "1"):
        raise ManagerError(f"params.cfg: {AUTOBOOT_PARAM} is {autoboot!r}, not 0 or 1")
    return GuestParams(items, network, autoboot == "1", forwards)


def _read_text(folder: str, name: str) -> str:
    path = os.path.join(folder, *name.split("/"))
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ManagerError(f"{path}: cannot read it: {e}") from None


def read_xl_documents(guest_dir: str) -> List[xlcfg.XlConfig]:
    """guest.cfg then every guest.d/ file, in the library's (sorted name) order."""
    names = [layout.GUEST_CFG]
    fragments = []
    top = os.path.join(guest_dir, layout.GUEST_D)
    for dirpath, _, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, guest_dir).replace(os.sep, "/")
        fragments += [f"{rel}/{n}" for n in filenames
                      if os.path.isfile(os.path.join(dirpath, n))]
    names += sorted(fragments)
    return [xlcfg.XlConfig.parse(_read_text(guest_dir, n), n) for n in names]


def read_params_file(guest_dir: str) -> ShellVarFile:
    """The guest's params.cfg (never sourced)."""
    return ShellVarFile.parse(_read_text(guest_dir, layout.PARAMS), layout.PARAMS)


def read_disk_file(guest_dir: str) -> ShellVarFile:
    """The guest's disk.cfg (never sourced)."""
    return ShellVarFile.parse(_read_text(guest_dir, layout.DISK_CFG), layout.DISK_CFG)


def build_config(documents: List[xlcfg.XlConfig], name: str, guest_dir: str,
                 disk_target: Optional[str], vif: Optional[str]) -> str:
    """The text of the xl configuration guest *name* is started with; *vif* is its
    one network interface (None: the image's own ``vif``, if any)."""
    values = final_values(documents, name, lambda path: os.path.join(guest_dir, *path.split("/")),
                          disk_target, vif)
    sources = ", ".join(doc.source for doc in documents)
    return render_config(values, "xl.cfg",
                         f"# xl configuration of guest {name}, written by xenguest-manager at "
                         f"each start\n# from {sources or 'nothing'}; init.pre scripts may "
                         "append to it.\n")

"""Updating a guest to a new image: what ``xenguest-manager update`` checks, then the
switch (:mod:`.switch`) that installs it.

Everything is checked before anything is changed, as for a create (the
signature policy, the image, its parameters, the commands), and then against
the guest: the image must be for the same product (its compatible string)
unless forced; the guest must keep having a disk, or keep having none, in the
same volume group; the partitions the image keeps must be where the guest has
them, the same size and filesystem; and a partition the guest keeps that the
image does not would be re-provisioned — its data lost — only when forced.

The new configuration comes from the verified image, like a create's; the
disk is rewritten in place from it except for the kept partitions; the guest
keeps its name, its network addresses and its creation time.
"""

import logging
import os
from typing import Optional

from ..disk.build import plan_disk
from ..disk.config import DiskConfig
from ..disk.keep import KeptLayout, compare
from ..format import layout
from ..format.identity import Identity, identity_of
from ..format.image_copy import copy_tree_out
from ..fsutil import require_path
from ..operations import open_image
from ..operations.checks import update_refusals
from ..operations.editor import GuestEditor
from ..operations.render import write_disk
from . import ManagerError, step
from .backends import LvmBackend
from .deploy import Deployer, refuse_invalid
from .guestcfg import read_disk_file, read_params, read_params_file
from .initscripts import MANAGER_VARS
from .state import GuestRecord, check_guest_name
from .switch import Health, Switch, Target, now

log = logging.getLogger("xenguest.manager")


class Updater(Deployer):
    """Updates guests on a :class:`~.base.GuestHost`."""

    def update(self, name: str, image_path: str, force: bool = False, start: bool = False,
               health: Optional[Health] = None, timeout: Optional[float] = None) -> Identity:
        """Switch guest *name* to the image at *image_path*; return the image's identity.

        *force* accepts an image of another compatible string, or one that drops a
        kept partition; *start* starts (and checks) the new guest even if the guest
        was not running; *health* says when it is up; *timeout* bounds the shutdown.
        """
        check_guest_name(name)
        image_path = os.path.abspath(require_path(image_path, "image"))
        with open_image(image_path) as image:
            signer = self._verify(image)
            refuse_invalid(image)
            editor = GuestEditor(image)
            params = read_params(editor.params, MANAGER_VARS)
            new_identity = identity_of(editor.params)
            plan = plan_disk(editor.disk)
            with self.manager.lock(name):
                old = self.state.load(name)
                guest_dir = self.state.guest_dir(name)
                with step(f"read the configuration of guest {name}"):
                    old_identity = identity_of(read_params_file(guest_dir))
                    old_disk = DiskConfig.from_vars(read_disk_file(guest_dir))
                refusals = update_refusals((old_identity, old_disk),
                                           (new_identity, editor.disk), f"guest {name}")
                for refusal in sorted(refusals, key=lambda r: r.forced):
                    if not (refusal.forced and force):
                        more = " (--force updates it anyway)" if refusal.forced else ""
                        raise ManagerError(f"{image_path}: refused: {refusal.message}{more}")
                kept = self._kept(name, old, old_disk, editor.disk)
                if plan is not None and old.disk is not None:
                    backend = self.manager.backend(old.disk)
                    self.host.require(plan.commands() | backend.commands()
                                      | backend.switch_commands())
                record = GuestRecord(name=name, image=image_path, network=params.network,
                                     created=old.created, nic=old.nic, updated=now(),
                                     disk=dict(old.disk, size=plan.size) if old.disk and plan
                                     else None)
                if signer is not None:
                    record.extra["signer"] = signer.as_dict()

                def stage(folder: str) -> None:
                    os.mkdir(folder, 0o755)
                    copy_tree_out(image, folder, lambda n: layout.folder_of(n) != layout.DISK)
                    self.state.save(folder, record)

                def install(disk: str, zeroed: bool) -> None:
                    assert plan is not None
                    write_disk(image, editor.disk, plan, disk, self.host,
                               self.state.switch_dir(name), zeroed, keep=kept.numbers)

                log.info("updating guest %s from %s to %s", name, old_identity.describe(),
                         new_identity.describe())
                target = Target("update", stage, install, plan.size if plan else 0,
                                kept.ranges)
                Switch(self.manager, name).run(
                    target, start, health or Health(),
                    self.config.stop_timeout if timeout is None else timeout)
        log.info("guest %s updated to %s", name, new_identity.describe())
        return new_identity

    def _kept(self, name: str, old: GuestRecord, old_disk: DiskConfig,
              new_disk: DiskConfig) -> KeptLayout:
        """What the update keeps of the guest's disk (the layouts are known to agree);
        ManagerError if its backend cannot take the new one."""
        if old.disk is None:
            return KeptLayout()
        backend = self.manager.backend(old.disk)
        if isinstance(backend, LvmBackend):
            group = backend.group_for(new_disk)
            if group != old.disk["vg"]:
                raise ManagerError(f"guest {name}'s disk is in volume group {old.disk['vg']}, "
                                   f"the image's DISK_DEVICE selects {group}")
        return compare(old_disk, new_disk)


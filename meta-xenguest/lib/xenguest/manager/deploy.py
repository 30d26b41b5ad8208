"""Making a guest from an image: what ``create`` (and ``autostart``) do.

Everything is checked before anything is made: the signature policy, the
image (the library's ``check``), the name, the parameters, the disk layout,
the backend and the commands it needs.  The guest is then built in a hidden
folder, renamed into place only at the end; any failure undoes everything.

Only the commands that make guests load this module, and with it the image
library (archives, checks, signatures); list, status, start and stop do not.
"""

import datetime
import logging
import os
from typing import Optional

from ..disk.build import DiskPlan, plan_disk
from ..errors import XenguestError
from ..format import layout, signing
from ..format.image import Image
from ..format.image_copy import copy_tree_out
from ..fsutil import require_path
from ..operations import open_image
from ..operations.checks import check_image
from ..operations.editor import GuestEditor
from ..operations.render import write_disk
from ..problems import ERROR, WARNING
from . import ManagerError, step
from .backends import DiskBackend
from .base import IMAGE_SUFFIX, GuestHost
from .guestcfg import GuestParams, read_params
from .initscripts import MANAGER_VARS
from .state import GuestRecord, check_guest_name, discard, read_record_if_any

log = logging.getLogger("xenguest.manager")


class Deployer:
    """Creates guests on a :class:`~.base.GuestHost` (its settings, host, toolstack,
    state)."""

    def __init__(self, manager: GuestHost) -> None:
        self.manager = manager
        self.config = manager.config
        self.host = manager.host
        self.toolstack = manager.toolstack
        self.state = manager.state

    def create(self, image_path: str, name: Optional[str] = None,
               replace: bool = False) -> str:
        """Make guest *name* (default: from the image file name) from an image."""
        image_path = os.path.abspath(require_path(image_path, "image"))
        if name is not None:
            check_guest_name(name)
        with open_image(image_path) as image:
            signer = self._verify(image)
            refuse_invalid(image)
            editor = GuestEditor(image)
            name = name or default_name(image_path, editor)
            params = read_params(editor.params, MANAGER_VARS)
            plan = plan_disk(editor.disk)
            backend = self.manager.backend(None)
            if plan:
                self.host.require(plan.commands() | backend.commands())
            with self.manager.lock(name):
                old = self.state.load(name) if self.state.exists(name) else None
                if old is not None and not replace:
                    raise ManagerError(f"guest {name} exists already (remove it first, "
                                       "or create it with --replace)")
                if old is not None and self.toolstack.domid(name) is not None:
                    raise ManagerError(f"guest {name} is running: stop it before "
                                       "replacing it")
                self._clean_leftovers(name)
                if plan:
                    backend.check(name, editor.disk, old.disk if old else None)
                if old is not None:
                    log.info("replacing guest %s", name)
                    self.manager.remove_locked(name)
                log.info("creating guest %s from %s", name, image_path)
                self._build(image, editor, name, params, plan, backend, signer)
        log.info("guest %s created", name)
        return name

    def _verify(self, image: Image) -> Optional[signing.Signer]:
        """Apply the signature policy to *image*; the verified signer, if any.

        Runs before anything is extracted or provisioned; ManagerError names the
        reason an image is refused.
        """
        policy = self.config.verify
        if policy == "off":
            return None
        if policy == "if-signed" and not signing.signature_members(image):
            log.info("%s: unsigned image accepted (verify = if-signed)", image.path)
            return None
        try:
            verified = signing.verify_signed(image, self.config.keyring)
        except XenguestError as e:
            raise ManagerError(f"{image.path}: refused (verify = {policy}): "
                               f"{getattr(e, 'detail', e.message)}") from None
        log.info("%s: signed by %s (SHA-256 fingerprint %s)", image.path,
                 verified.signer.subject, verified.signer.fingerprint)
        return verified.signer

    def _clean_leftovers(self, name: str) -> None:
        """Remove what an interrupted create or remove of *name* left behind."""
        for folder in (self.state.partial_dir(name), self.state.removing_dir(name)):
            if os.path.lexists(folder):
                log.warning("cleaning up %s left by an interrupted command", folder)
                record = read_record_if_any(folder)
                if record is not None:
                    self.manager.free_disk(record, folder)
                discard(folder)

    def _build(self, image: Image, editor: GuestEditor, name: str, params: GuestParams,
               plan: Optional[DiskPlan], backend: DiskBackend,
               signer: Optional[signing.Signer]) -> None:
        self.state.prepare()
        staging = self.state.partial_dir(name)
        record = GuestRecord(name=name, image=image.path, network=params.network,
                             created=datetime.datetime.now().astimezone().isoformat(
                                 timespec="seconds"))
        if signer is not None:
            record.extra["signer"] = signer.as_dict()
        current = "prepare the guest folder"
        try:
            os.mkdir(staging, 0o755)
            current = "install the configuration"
            with step(current):
                copy_tree_out(image, staging,
                              lambda n: layout.folder_of(n) != layout.DISK)
                self.state.save(staging, record)
            if plan is not None:
                current = f"allocate the disk ({backend.name} backend)"
                with step(current):
                    # recorded before it exists: whenever this command is killed, the
                    # next create of the name finds what to free (_clean_leftovers)
                    record.disk = backend.reserve(name, editor.disk, plan.size)
                    self.state.save(staging, record)
                    allocation = backend.allocate(record.disk, staging)
                    self.state.save(staging, record)
                current = "provision the disk"
                with step(current):
                    write_disk(image, editor.disk, plan, allocation.path, self.host, staging,
                               allocation.zeroed)
            current = "install the guest"
            os.rename(staging, self.state.guest_dir(name))
        except BaseException as error:
            undone = self._undo_create(record, staging)
            if isinstance(error, XenguestError):
                message = error.message if isinstance(error, ManagerError) else \
                    f"{current}: {error.message}"
                raise ManagerError(f"guest {name}: {message} ({undone})") from None
            if isinstance(error, OSError):
                raise ManagerError(f"guest {name}: {current}: {error} ({undone})") from None
            raise

    def _undo_create(self, record: GuestRecord, staging: str) -> str:
        try:
            self.manager.free_disk(record, staging)
            discard(staging)
        except (XenguestError, OSError) as e:
            log.error("rollback of guest %s incomplete: %s", record.name, e)
            return f"rollback incomplete: {e}"
        return "nothing was kept"


def refuse_invalid(image: Image) -> None:
    """Refuse an image with errors; log its warnings."""
    problems = check_image(image)
    for problem in problems:
        if problem.severity != ERROR:
            level = logging.WARNING if problem.severity == WARNING else logging.INFO
            log.log(level, "%s: %s", image.path, problem)
    errors = [p for p in problems if p.severity == ERROR]
    if errors:
        more = f" (and {len(errors) - 1} more: run 'xenguest-mkimage check')" \
            if len(errors) > 1 else ""
        raise ManagerError(f"{image.path}: invalid image: {errors[0].location}: "
                           f"{errors[0].message}{more}")


def default_name(image_path: str, editor: GuestEditor) -> str:
    """The guest name of an image: its file name without ``.xenguest``, else its xl name."""
    base = os.path.basename(image_path.rstrip("/"))
    stem = base[:-len(IMAGE_SUFFIX)] if base.endswith(IMAGE_SUFFIX) else base
    return name_for_image(image_path, stem, editor)


def name_for_image(image_path: str, stem: str, editor: Optional[GuestEditor] = None) -> str:
    """*stem* when it is a valid guest name, else the image's own xl ``name``."""
    try:
        return check_guest_name(stem)
    except ManagerError:
        pass
    if editor is None:
        with open_image(image_path) as image:
            return name_for_image(image_path, stem, GuestEditor(image))
    xl_name = editor.xl_merged().get("name")
    if isinstance(xl_name, str) and xl_name:
        return check_guest_name(xl_name)
    raise ManagerError(f"{image_path}: {stem!r} is not a valid guest name and the image "
                       "names no guest: give a NAME")


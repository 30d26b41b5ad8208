"""The guest operations: create, start, stop, destroy, remove, list, status,
autostart and shutdown-all.

Every operation on one guest holds that guest's lock.  ``create`` checks
everything it can before it makes anything (the image with the library's
``check``, the name, the parameters, the disk layout, the backend, the
commands it will need); it then builds the guest in a hidden folder, renamed
into place only at the end, and undoes everything on any failure.
"""

import datetime
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .. import layout, signing
from ..check import check_image
from ..editor import GuestEditor
from ..errors import XenguestError
from ..image import Image
from ..image_copy import copy_tree_out
from ..operations import open_image
from ..problems import ERROR, WARNING
from . import ManagerError, step
from .backends import DiskBackend, backend_named
from .config import ManagerConfig
from .guestcfg import (GuestParams, build_config, read_params, read_params_file,
                       read_xl_documents)
from .host import Host
from .initscripts import MANAGER_VARS, StartPlan, base_environment, script_stages, start_sequence
from .provision import DiskPlan, Provisioner, plan_disk
from .state import (CONFIG_FILE, MANAGER_FILES, GuestRecord, StateStore, check_guest_name,
                    discard, read_record_if_any, write_atomic)
from .toolstack import Domain, Toolstack, XlToolstack, destroy_and_wait, wait_gone

log = logging.getLogger("xenguest.manager")

IMAGE_SUFFIX = ".xenguest"


@dataclass
class GuestStatus:
    """One guest as ``list`` and ``status`` show it."""

    name: str
    state: str
    domid: Optional[int]
    autoboot: Optional[bool]
    image: str
    created: str
    network: str
    disk: Optional[Dict[str, Any]]
    #: The verified signer of the image ({"subject", "fingerprint"}), None if unsigned.
    signer: Optional[Dict[str, str]] = None

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    """What a command over many guests did; *failed* holds (guest, message)."""

    done: List[str] = field(default_factory=list)
    started: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)


class Manager:
    """The operations, with the settings, the host's commands and a toolstack."""

    #: Seconds between polls of the toolstack while waiting.
    poll_interval = 0.25

    def __init__(self, config: ManagerConfig, toolstack: Optional[Toolstack] = None,
                 host: Optional[Host] = None) -> None:
        self.config = config
        self.host = host or Host(config.commands)
        self.toolstack = toolstack or XlToolstack(self.host)
        self.state = StateStore(config.state_folder)

    # -- helpers ---------------------------------------------------------------

    def _lock(self, name: str) -> Any:
        return self.state.lock(name, self.config.lock_timeout)

    def _wait_gone(self, name: str, timeout: float) -> bool:
        return wait_gone(self.toolstack, name, timeout, interval=self.poll_interval)

    def _destroy(self, name: str) -> bool:
        return destroy_and_wait(self.toolstack, name, self.config.stop_timeout,
                                interval=self.poll_interval)

    def _backend(self, record_disk: Optional[Dict[str, Any]]) -> DiskBackend:
        name = record_disk["backend"] if record_disk else self.config.disk_backend
        return backend_named(name, self.config, self.host)

    def _free_disk(self, record: GuestRecord, folder: str) -> None:
        if record.disk:
            self._backend(record.disk).free(record.disk, folder)

    # -- create ----------------------------------------------------------------

    def create(self, image_path: str, name: Optional[str] = None,
               replace: bool = False) -> str:
        """Make guest *name* (default: from the image file name) from an image."""
        image_path = os.path.abspath(image_path)
        if name is not None:
            check_guest_name(name)
        with open_image(image_path) as image:
            signer = self._verify(image)
            _refuse_invalid(image)
            editor = GuestEditor(image)
            name = name or default_name(image_path, editor)
            params = read_params(editor.params, MANAGER_VARS)
            plan = plan_disk(editor.disk)
            clash = [n for n in MANAGER_FILES if image.exists(n)]
            if clash:
                raise ManagerError(f"{image_path}: {clash[0]} is a name xenguest-manager "
                                   "uses in a guest folder; the image may not hold it")
            backend = self._backend(None)
            if plan:
                self.host.require(plan.commands() | backend.commands())
            with self._lock(name):
                old = self.state.load(name) if self.state.exists(name) else None
                if old is not None and not replace:
                    raise ManagerError(f"guest {name} exists already (remove it first, "
                                       "or create it with --replace)")
                if old is not None and self.toolstack.domid(name) is not None:
                    raise ManagerError(f"guest {name} is running: stop it before "
                                       "replacing it")
                if plan:
                    backend.check(name, editor.disk, old.disk if old else None)
                if old is not None:
                    log.info("replacing guest %s", name)
                    self._remove_locked(name)
                self._clean_leftovers(name)
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
                    self._free_disk(record, folder)
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
                    allocation = backend.allocate(name, editor.disk, plan.size, staging)
                    record.disk = allocation.record
                    self.state.save(staging, record)
                current = "provision the disk"
                with step(current):
                    Provisioner(self.host, image, staging, allocation.zeroed).provision(
                        plan, allocation.path)
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
            self._free_disk(record, staging)
            discard(staging)
        except (XenguestError, OSError) as e:
            log.error("rollback of guest %s incomplete: %s", record.name, e)
            return f"rollback incomplete: {e}"
        return "nothing was kept"

    # -- start -----------------------------------------------------------------

    def start(self, name: str) -> int:
        """Start guest *name* through the init sequence; return its domain ID."""
        with self._lock(name):
            record = self.state.load(name)
            domid = self.toolstack.domid(name)
            if domid is not None:
                raise ManagerError(f"guest {name} is already running (domain ID {domid})")
            guest_dir = self.state.guest_dir(name)
            with step(f"read the configuration of guest {name}"):
                documents = read_xl_documents(guest_dir)
                params = read_params(read_params_file(guest_dir), MANAGER_VARS)
            if params.network == "bridge" and not self.toolstack.bridge_exists(
                    self.config.bridge):
                raise ManagerError(f"guest {name} needs network bridge {self.config.bridge}, "
                                   "which does not exist on this host")
            target = None
            if record.disk:
                target = self._backend(record.disk).target(record.disk, guest_dir)
                if not os.path.exists(target):
                    raise ManagerError(f"the disk of guest {name} is missing: {target}")
            config_path = os.path.join(guest_dir, CONFIG_FILE)
            with step("write the xl configuration"):
                text = build_config(documents, name, guest_dir, target, params.network,
                                    self.config.bridge)
                write_atomic(config_path, text)
            plan = StartPlan(name, guest_dir, config_path, params.items,
                             script_stages(guest_dir, self.config.host_scripts),
                             self.config.script_timeout, base_environment(os.environ))
            log.info("starting guest %s", name)
            domid = start_sequence(self.toolstack, plan, self._destroy)
        log.info("guest %s started (domain ID %d)", name, domid)
        return domid

    # -- stop, destroy, remove -------------------------------------------------

    def stop(self, name: str, timeout: Optional[float] = None, kill: bool = False,
             wait: bool = True) -> None:
        """Shut guest *name* down; *kill*: destroy it if that fails or takes too long."""
        timeout = self.config.stop_timeout if timeout is None else timeout
        with self._lock(name):
            self.state.load(name)
            self._stop_locked(name, timeout, kill, wait)

    def _stop_locked(self, name: str, timeout: float, kill: bool, wait: bool = True) -> None:
        if self.toolstack.domid(name) is None:
            raise ManagerError(f"guest {name} is not running")
        log.info("shutting down guest %s", name)
        try:
            self.toolstack.shutdown(name)
        except XenguestError as e:
            if not kill:
                raise ManagerError(f"xl shutdown {name}: {e.message} (--kill destroys it)")
            log.warning("graceful shutdown of %s failed (%s): destroying it", name, e.message)
            self._destroy(name)
            return
        if not wait:
            return
        if self._wait_gone(name, timeout):
            log.info("guest %s stopped", name)
            return
        if not kill:
            raise ManagerError(f"guest {name} did not shut down within {timeout:g} s "
                               "(use --kill to destroy it)")
        log.warning("guest %s did not shut down within %g s: destroying it", name, timeout)
        self._destroy(name)

    def destroy(self, name: str) -> None:
        """Stop guest *name* at once (``xl destroy``)."""
        with self._lock(name):
            self.state.load(name)
            if not self._destroy(name):
                raise ManagerError(f"guest {name} is not running")

    def remove(self, name: str, timeout: Optional[float] = None) -> None:
        """Stop guest *name* if needed, free its disk and delete its state."""
        with self._lock(name):
            self.state.load(name)
            if self.toolstack.domid(name) is not None:
                self._stop_locked(name, self.config.stop_timeout if timeout is None
                                  else timeout, kill=True)
            self._remove_locked(name)
        log.info("guest %s removed", name)

    def _remove_locked(self, name: str) -> None:
        record = self.state.load(name)
        if not self._wait_gone(name, self.config.stop_timeout):
            raise ManagerError(f"domain {name} still exists: its disk cannot be freed")
        with step(f"free the disk of guest {name}"):
            self._free_disk(record, self.state.guest_dir(name))
        with step(f"delete the state of guest {name}"):
            self.state.delete_guest(name)

    # -- list, status ----------------------------------------------------------

    def _domains(self) -> Optional[Dict[str, Domain]]:
        try:
            return {d.name: d for d in self.toolstack.domains()}
        except XenguestError as e:
            log.warning("cannot list domains: %s", e.message)
            return None

    def status(self, name: Optional[str] = None) -> List[GuestStatus]:
        """The status of guest *name*, or of every guest."""
        names = [name] if name else self.state.names()
        domains = self._domains()
        result = []
        for guest in names:
            record = self.state.load(guest)
            domain = None if domains is None else domains.get(guest)
            state = "unknown" if domains is None else domain.state if domain else "stopped"
            result.append(GuestStatus(
                guest, state, domain.domid if domain else None,
                self._autoboot(guest), record.image, record.created, record.network,
                record.disk, record.extra.get("signer")))
        return result

    def _autoboot(self, name: str) -> Optional[bool]:
        try:
            params = read_params_file(self.state.guest_dir(name))
            return read_params(params, MANAGER_VARS).autoboot
        except XenguestError as e:
            log.warning("guest %s: %s", name, e.message)
            return None

    # -- boot integration ------------------------------------------------------

    def discover(self) -> List[Tuple[str, str]]:
        """(guest name, image path) of every image in the guest folders, first one wins."""
        found: Dict[str, str] = {}
        for folder in self.config.guest_folders:
            try:
                entries = sorted(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if not entry.endswith(IMAGE_SUFFIX) or entry.startswith("."):
                    continue
                path = os.path.join(folder, entry)
                stem = entry[:-len(IMAGE_SUFFIX)]
                if stem in found:
                    log.warning("%s: ignored, guest %s comes from %s", path, stem, found[stem])
                    continue
                found[stem] = path
        return sorted(found.items())

    def autostart(self) -> Report:
        """Create every image of the guest folders not yet a guest, then start every
        stopped guest whose GUEST_AUTOBOOT is 1."""
        report = Report()
        existing = set(self.state.names())
        for stem, path in self.discover():
            try:
                name = name_for_image(path, stem)
                if name in existing:
                    continue
                report.done.append(self.create(path, name))
                existing.add(name)
            except XenguestError as e:
                log.error("create %s: %s", path, e.message)
                report.failed.append((stem, e.message))
        for status in self.status():
            if not status.autoboot or status.state not in ("stopped", "unknown"):
                continue
            try:
                self.start(status.name)
                report.started.append(status.name)
            except XenguestError as e:
                log.error("start %s: %s", status.name, e.message)
                report.failed.append((status.name, e.message))
        return report

    def shutdown_all(self, timeout: Optional[float] = None, kill: bool = False) -> Report:
        """Shut every running guest down together; *kill* destroys the late ones."""
        timeout = self.config.stop_timeout if timeout is None else timeout
        report = Report()
        domains = self._domains() or {}
        running = [n for n in self.state.names() if n in domains]
        waiting = []
        for name in running:
            log.info("shutting down guest %s", name)
            try:
                self.toolstack.shutdown(name)
                waiting.append(name)
            except XenguestError as e:
                if kill:
                    waiting.append(name)
                else:
                    report.failed.append((name, e.message))
        deadline = time.monotonic() + timeout
        while waiting:
            waiting = [n for n in waiting if self.toolstack.domid(n) is not None]
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval)
        for name in running:
            if any(n == name for n, _ in report.failed):
                continue
            if name in waiting:
                if not kill:
                    report.failed.append((name, f"did not shut down within {timeout:g} s"))
                    continue
                try:
                    self._destroy(name)
                except XenguestError as e:
                    report.failed.append((name, e.message))
                    continue
            report.done.append(name)
        for name, message in report.failed:
            log.error("shutdown %s: %s", name, message)
        return report


def _refuse_invalid(image: Image) -> None:
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

"""Validation of a whole image: every problem found, as errors and warnings.

``check`` never changes the image and needs only read access.  It reports
structure, configuration syntax (xl, shell variables), referenced files,
the disk description and init scripts, each problem with its location, and
compares the manifest with the members' names, sizes and modes (no content is
read).  :func:`verify_content` (``check --verify``) also recomputes every
digest and checks that each signature is over the current manifest.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from ..disk.config import PREBUILT_KEY, DiskConfig, disk_bytes
from ..disk.prebuilt import ZSTD_HEADER_MAX, zstd_content_size
from ..errors import ImageError, XenguestError
from ..format import dircommit, identity, layout, manifest, manifest_check, netparams, signing
from ..format.image import Image
from ..problems import ERROR, Problem, error, note, warning
from ..shellvars import ShellVarFile, is_reserved
from ..xl import config as xlcfg
from ..xl import keys as xlkeys
from .diskdesc import image_description
from .editor import PAYLOAD_KEYS, strings_in

#: xl keys whose value must be a positive whole number.
POSITIVE_NUMBERS = ("memory", "maxmem", "vcpus", "maxvcpus")


def check_image(image: Image, complete: bool = True) -> List[Problem]:
    """Every problem of *image*; *complete* = False skips what a partial image may lack."""
    problems: List[Problem] = []
    problems += _check_structure(image, complete)
    problems += _check_params(image)
    problems += _check_xl(image, complete)
    problems += _check_disk(image, complete)
    problems += _check_init_scripts(image)
    problems += _check_manifest(image)
    return problems


def refuse_errors(problems: Iterable[Problem], before: Iterable[Problem] = ()) -> None:
    """Raise for the errors in *problems* that were not already in *before*."""
    old = set(before)
    new = [p for p in problems if p.severity == ERROR and p not in old]
    if new:
        more = f" (and {len(new) - 1} more error(s): see 'check')" if len(new) > 1 else ""
        raise XenguestError(f"{new[0].location}: {new[0].message}{more}")


def require_image(image: Image) -> None:
    """Refuse what is no xenguest image, or lacks one of its mandatory files."""
    if not any(image.exists(n) for n in layout.MANDATORY):
        raise ImageError(f"{image.path}: not a xenguest image (no guest.cfg, params.cfg or disk.cfg)")
    for name in layout.MANDATORY:
        if not image.exists(name):
            raise ImageError(f"{image.path}: damaged xenguest image: {name} is missing")


def open_image(path: str, write: bool = False, allow_trailing: bool = False) -> Image:
    """Open an existing, complete image for reading, or with *write* for
    committing changes (close it after use); *allow_trailing*: see :meth:`Image.open`."""
    image = Image.open(path, write, allow_trailing)
    try:
        require_image(image)
    except XenguestError:
        image.close()
        raise
    return image


def _findings(findings: List[manifest.Finding], severity: Callable[[str, str], Problem]
              ) -> List[Problem]:
    return [severity(f.name, f"{f.kind}: {f.detail}") for f in findings]


def _read_manifest(image: Image, problems: List[Problem]
                   ) -> Tuple[bool, Optional[Dict[str, manifest.Line]]]:
    """(readable, lines): lines is None without a manifest; a damaged one is an error."""
    found: List[Optional[Dict[str, manifest.Line]]] = []
    readable = _guarded(layout.MANIFEST_MEMBER, problems, lambda: found.append(
        manifest_check.read(image, layout.MANIFEST_MEMBER)))
    return readable, found[0] if readable else None


def _check_manifest(image: Image) -> List[Problem]:
    problems: List[Problem] = []
    readable, lines = _read_manifest(image, problems)
    if not readable:
        return problems
    if lines is None:
        return [note(image.path, f"no {layout.MANIFEST_MEMBER} (an image of an earlier "
                                 "tool): its content is unverifiable")]
    return _findings(manifest_check.compare_metadata(image, lines), warning)


def verify_content(image: Image) -> List[Problem]:
    """Recompute every digest (one streaming read per member) and check that each
    signature is over the current manifest (no trust decision: see :mod:`signing`).

    Without a manifest the image is unverifiable: a warning, not an error.
    """
    problems: List[Problem] = []
    readable, lines = _read_manifest(image, problems)
    if not readable:
        return problems
    if lines is None:
        # a signature of no manifest vouches for nothing: the manager refuses it
        return [error(name, f"a signature, but the image has no {layout.MANIFEST_MEMBER}")
                for name in signing.signature_members(image)] or \
            [warning(image.path, f"no {layout.MANIFEST_MEMBER}: the content cannot "
                                 "be verified (write a new image with 'pack')")]
    problems += _findings(manifest_check.verify(image, lines), error)
    for name in signing.signature_members(image):
        try:
            signing.check_matches(image, name)
        except signing.SignatureError as e:
            problems.append(error(name, e.detail))
        except XenguestError as e:  # no openssl: the signature cannot be checked
            problems.append(warning(name, e.message))
    return problems


def _guarded(location: str, problems: List[Problem], step: Callable[[], None]) -> bool:
    """Run *step*; a user error becomes an error problem. Return whether it passed."""
    try:
        step()
        return True
    except XenguestError as e:
        message = e.message
        prefix = location + ":"
        if message.startswith(prefix):
            message = message[len(prefix):].strip()
        problems.append(error(location, message))
        return False


def _check_structure(image: Image, complete: bool) -> List[Problem]:
    problems: List[Problem] = []
    if complete:
        for name in layout.MANDATORY:
            if not image.exists(name):
                problems.append(error(name, "missing: every xenguest image has it"))
    version: List[int] = []
    if _guarded(layout.FORMAT_MEMBER, problems, lambda: version.append(image.format_version())):
        if version[0] > layout.FORMAT_VERSION:
            problems.append(error(
                layout.FORMAT_MEMBER,
                f"format version {version[0]} is newer than this tool's ({layout.FORMAT_VERSION})",
            ))
    known_top = set(layout.CONFIG_FILES) | set(layout.FOLDERS) | {layout.SIGNATURES}
    folders = set(image.folders())
    for name in image.names() + sorted(f for f in folders if "/" not in f):
        top = layout.folder_of(name) or name
        if top not in known_top:
            problems.append(warning(name, "not part of the xenguest image format"))
    problems += [error(name, f"not a signature: {signing.STRAY}")
                 for name in signing.stray_members(image)]
    problems += [error(name, "a folder: the image format needs a file of this name")
                 for name in layout.CONFIG_FILES if name in folders]
    problems += [error(name, "a file: the image format needs a folder of this name")
                 for name in layout.FOLDERS + (layout.SIGNATURES,) if image.exists(name)]
    problems += [error(name, "reserved: xenguest-manager writes it in the guest's folder")
                 for name in layout.HOST_NAMES if image.exists(name) or name in folders]
    for name in image.leftovers:
        if name == dircommit.JOURNAL:
            problems.append(error(name, "an update of this image was interrupted: "
                                        "'xenguest-mkimage update IMAGE' undoes it"))
        else:
            problems.append(note(name, "left by an interrupted update: the next update "
                                       "removes it"))
    superseded = image.superseded()
    if superseded:
        size = sum(s for _, s in superseded)
        problems.append(note(
            image.path,
            f"{len(superseded)} superseded member(s) ({size} bytes) left by updates; "
            "'pack' writes a compact canonical image",
        ))
    return problems


def _check_params(image: Image) -> List[Problem]:
    problems: List[Problem] = []
    if not image.exists(layout.PARAMS):
        return problems
    params: List[ShellVarFile] = []
    if _guarded(layout.PARAMS, problems, lambda: params.append(
            ShellVarFile.parse(image.read_text(layout.PARAMS), layout.PARAMS))):
        for key in params[0].keys():
            if is_reserved(key):
                problems.append(error(
                    layout.PARAMS, f"{key} is reserved: the host exports parameters to init scripts"))
        autoboot = params[0].get("GUEST_AUTOBOOT")
        if autoboot not in (None, "0", "1"):
            problems.append(error(layout.PARAMS, f"GUEST_AUTOBOOT is {autoboot!r}, not 0 or 1"))
        _guarded(layout.PARAMS, problems, lambda: netparams.check_network(
            params[0].get(netparams.TYPE_PARAM), params[0].get(netparams.FORWARD_PARAM)))
        _guarded(layout.PARAMS, problems, lambda: identity.identity_of(params[0]))
    return problems


def _check_xl(image: Image, complete: bool) -> List[Problem]:
    problems: List[Problem] = []
    names = [layout.GUEST_CFG] + image.files_in(layout.GUEST_D)
    documents = []
    for name in names:
        if not image.exists(name):
            continue
        docs: List[xlcfg.XlConfig] = []
        if _guarded(name, problems, lambda: docs.append(
                xlcfg.XlConfig.parse(image.read_text(name), name))):
            documents.append(docs[0])
            for statement in docs[0].statements():
                if statement.op == "+=" and statement.key in POSITIVE_NUMBERS:
                    problems.append(error(
                        f"{name}:{statement.lineno}",
                        f"'{statement.key} +=': xl cannot add to a number",
                    ))
                if not xlkeys.is_known(statement.key):
                    problems.append(warning(
                        f"{name}:{statement.lineno}",
                        f"unknown xl key {statement.key!r}: xl ignores it silently",
                    ))
    merged: List[dict] = []
    if not _guarded(layout.GUEST_CFG, problems, lambda: merged.append(xlcfg.merge(documents))):
        return problems
    config = merged[0]
    for key in POSITIVE_NUMBERS:
        value = config.get(key)
        if value is not None and not (isinstance(value, int) and value > 0):
            problems.append(error("xl config", f"{key} must be a positive number, not {value!r}"))
    for key, value in config.items():
        for text in strings_in(value):
            if text.startswith(layout.FILES + "/") and not image.exists(text):
                problems.append(error("xl config", f"{key} refers to {text}, which is not in the image"))
    for key in PAYLOAD_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value.startswith("/"):
            problems.append(warning(
                "xl config", f"{key} is the host path {value}: the image does not carry it"))
    if complete and "kernel" not in config and "bootloader" not in config \
            and config.get("type") != "hvm":
        problems.append(warning("xl config", "no kernel: the guest has nothing to boot"))
    return problems


def _check_disk(image: Image, complete: bool) -> List[Problem]:
    problems: List[Problem] = []
    if not image.exists(layout.DISK_CFG):
        return problems
    disk: List[DiskConfig] = []

    def load() -> None:
        variables = ShellVarFile.parse(image.read_text(layout.DISK_CFG), layout.DISK_CFG)
        disk.append(DiskConfig.from_vars(variables))

    if _guarded(layout.DISK_CFG, problems, load):
        disk_files = [n[len(layout.DISK) + 1:] for n in image.files_in(layout.DISK)]
        problems += disk[0].problems(disk_files if complete else None)
        if disk[0].prebuilt and image.exists(f"{layout.DISK}/{disk[0].prebuilt}"):
            problems += _check_prebuilt(image, disk[0])
        for part in disk[0].partitions.values():
            member = f"{layout.DISK}/{part.content}"
            if part.content.endswith(".img") and image.exists(member):
                size = image.entry(member).size
                if size > part.size_mib << 20:
                    problems.append(error(
                        f"{layout.DISK_CFG}: {part.key}",
                        f"{part.content} holds {size} bytes, more than the partition's "
                        f"{part.size_mib}M",
                    ))
    return problems


def _check_prebuilt(image: Image, disk: DiskConfig) -> List[Problem]:
    """The prebuilt disk has the described disk's size and was built from the
    description and content the image holds now."""
    where = f"{layout.DISK_CFG}: {PREBUILT_KEY}"
    member = f"{layout.DISK}/{disk.prebuilt}"
    problems: List[Problem] = []
    expected = disk_bytes(disk)
    size: Optional[int] = image.entry(member).size
    if disk.prebuilt.endswith(".zst"):
        size = None
        if not image.pinned:  # a pinned image reads only whole, verified members:
            try:              # its size is checked while it is written
                with image.open_member(member) as f:
                    size = zstd_content_size(f.read(ZSTD_HEADER_MAX))
            except XenguestError as e:
                return [error(where, f"{disk.prebuilt}: {e.message}")]
            if size is None:
                problems.append(warning(where, f"{disk.prebuilt}: its zstd header does not "
                                               "record its size: it is checked only when "
                                               "the disk is written"))
    if size is not None and size != expected:
        problems.append(error(where, f"{disk.prebuilt} holds a disk of {size} bytes, the "
                                     f"description one of {expected}"))
    if image_description(image, disk) != disk.prebuilt_from:
        problems.append(error(where, f"{disk.prebuilt} was built from another description "
                                     "or content than the image holds: build it again "
                                     "('render-disk --ignore-prebuilt') or remove it "
                                     "(--disk-rm-prebuilt)"))
    return problems


def _check_init_scripts(image: Image) -> List[Problem]:
    problems: List[Problem] = []
    for stage in layout.INIT_STAGES:
        for name in image.files_in(stage):
            entry = image.entry(name)
            if "/" in name[len(stage) + 1:]:
                problems.append(error(name, "init scripts must be directly in their stage folder"))
                continue
            if not entry.mode & 0o100:
                problems.append(error(name, "not executable: the host runs init scripts directly"))
            head: Optional[bytes] = None
            try:
                with image.open_member(name) as f:
                    head = f.read(2)
            except OSError as e:
                problems.append(error(name, f"unreadable: {e.strerror}"))
            if head is not None and head != b"#!":
                problems.append(warning(name, "no '#!' line: the host cannot execute it directly"))
    return problems


@dataclass(frozen=True)
class Refusal:
    """Why an image cannot update a guest; *forced*: ``update --force`` does it anyway."""

    message: str
    forced: bool = False


def update_refusals(old: Tuple[identity.Identity, DiskConfig],
                    new: Tuple[identity.Identity, DiskConfig], what: str) -> List[Refusal]:
    """Why the image of identity and disk *new* cannot replace the one of *old* in a
    guest (``xenguest-manager update``); *what* names the guest or the old image."""
    (old_identity, old_disk), (new_identity, new_disk) = old, new
    found = []
    if old_identity.compatible != new_identity.compatible:
        found.append(Refusal(f"the image is for {new_identity.compatible or 'no product'!r}, "
                             f"{what} for {old_identity.compatible or 'no product'!r}", True))
    if (old_disk.size_mib == 0) != (new_disk.size_mib == 0):
        has, gets = ("no disk", "one") if old_disk.size_mib == 0 else ("a disk", "none")
        found.append(Refusal(f"{what} has {has} and the image describes {gets}: an update "
                             "keeps a guest's disk (make it anew with create --replace)"))
        return found
    if old_disk.size_mib == 0:
        return found
    from ..disk.keep import compare  # it plans disks: loaded only when an update is checked

    kept = compare(old_disk, new_disk, what)
    found += [Refusal(f"{conflict}: its data would not fit; an update cannot move, resize "
                      "or reformat a kept partition") for conflict in kept.conflicts]
    if kept.dropped:
        numbers = ", ".join(str(n) for n in kept.dropped)
        found.append(Refusal(f"{what} keeps the data of partition(s) {numbers} across "
                             "updates, and the image would make them anew: that data would "
                             "be lost", True))
    return found


def check_update_of(image: Image, old: Image) -> List[Problem]:
    """Why *image* cannot update a guest made from image *old*, as errors."""
    def read(which: Image) -> Tuple[identity.Identity, DiskConfig]:
        params = ShellVarFile.parse(which.read_text(layout.PARAMS), layout.PARAMS)
        disk = ShellVarFile.parse(which.read_text(layout.DISK_CFG), layout.DISK_CFG)
        return identity.identity_of(params), DiskConfig.from_vars(disk)

    location = f"update of {old.path}"
    problems: List[Problem] = []
    found: List[Tuple[identity.Identity, DiskConfig]] = []
    # An image whose params.cfg or disk.cfg cannot be read: said, and nothing to compare.
    if not all(_guarded(location, problems, lambda i=i: found.append(read(i)))
               for i in (old, image)):
        return problems
    return [error(location, r.message +
                  (" (xenguest-manager update --force does it anyway)" if r.forced else ""))
            for r in update_refusals(found[0], found[1], "the old image")]

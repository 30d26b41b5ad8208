"""``xenguest-mkimage``: create, inspect and modify xenguest images.

Usage: ``xenguest-mkimage OPERATION XENGUEST [OPTIONS]``.  The editing options
of create, update and partial are applied in command-line order.
"""

import argparse
import sys
from typing import Any, Callable, List, Optional

from .. import operations
from ..format import layout, signing
from ..format.image import Image
from ..fsutil import naming
from ..operations.options import FLAG, GROUPS, OPTIONAL, OPTIONS, Edit
from ..problems import ERROR, WARNING
from . import Command, Help
from . import main as cli_main

PROG = "xenguest-mkimage"
DESCRIPTION = (
    "Create, inspect and modify xenguest images: one Xen guest (xl configuration,\n"
    "kernel, device tree, ramdisk, disk description and content, init scripts and\n"
    "parameters) as one directory or one file.\n\n"
    "Use 'xenguest-mkimage OPERATION --help' for the options of an operation."
)


EDIT_EPILOG = (
    "Options are applied in the order given.  Write values as --option=VALUE (needed\n"
    "when a value starts with '-'); SRC[:DST] splits at the last colon.  Sizes: M is a\n"
    "MiB, G is 1000 M, a bare number is G (4 = 4G = 4000M)."
)


class EditAction(argparse.Action):
    """Records ``(option, value)`` in command-line order in ``args.edits``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        edits: List[Edit] = getattr(namespace, "edits", None) or []
        value = values if isinstance(values, str) or values is None else None
        edits.append((option_string or self.dest, value))
        namespace.edits = edits


def add_edit_options(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(edits=[])
    for group_title in GROUPS:
        group = parser.add_argument_group(group_title)
        for spec in (s for s in OPTIONS if s.group == group_title):
            kwargs: dict = {"action": EditAction, "help": spec.help, "dest": "edits"}
            if spec.value == FLAG:
                kwargs["nargs"] = 0
            elif spec.value == OPTIONAL:
                kwargs.update(nargs="?", const="", metavar=spec.metavar)
            else:
                kwargs["metavar"] = spec.metavar
            group.add_argument(*spec.names, **kwargs)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def print_json(data: Any) -> None:
    import json  # loaded only by the operations that print JSON

    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def human_size(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} bytes"


class EditCommand(Command):
    """create, update and partial: apply the editing options."""

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", metavar="XENGUEST", help=self.image_help)
        add_edit_options(parser)
        parser.epilog = EDIT_EPILOG

    image_help = "the image"


class Create(EditCommand):
    name = "create"
    helpmsg = "create an image (a directory image if XENGUEST is an empty folder)"
    description = (
        "Create a xenguest image with default settings, then apply the options in order.\n"
        "If XENGUEST is an existing empty folder the image is a directory, otherwise a\n"
        "file (an existing file is replaced, atomically)."
    )
    image_help = "the image to create: an empty folder or a file name"

    def run(self, args: argparse.Namespace) -> int:
        operations.create(args.image, args.edits)
        return 0


class Import(Command):
    name = "import"
    helpmsg = "make an image of an existing xl configuration and the files it names"
    description = (
        "Create XENGUEST (as create does) from the xl configuration file XLCFG of a\n"
        "guest not built with this project.  guest.cfg is XLCFG as written, but the\n"
        "files that kernel, ramdisk and device_tree name are stored in files/, and the\n"
        "one disk (a raw image file: a whole disk, or one filesystem such as an ext4\n"
        "file) becomes the prebuilt disk, compressed with zstd: DISK_SIZE is its size\n"
        "(padded to a whole MiB), its partitions described when disk.cfg can say what\n"
        "its msdos table holds.  The host writes the disk as it is, so root= stays\n"
        "right.  Relative paths are relative to XLCFG's folder; every other key (vif,\n"
        "name, memory, ...) stays as written.  Then the options are applied in order."
    )

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", metavar="XLCFG", help="the guest's xl configuration")
        parser.add_argument("image", metavar="XENGUEST",
                            help="the image to create: an empty folder or a file name")
        add_edit_options(parser)
        parser.epilog = EDIT_EPILOG

    def run(self, args: argparse.Namespace) -> int:
        from ..operations.importer import import_guest

        for note in import_guest(args.config, args.image, args.edits):
            print(f"{args.image}: {note}")
        return 0


class Update(EditCommand):
    name = "update"
    helpmsg = "modify an image"
    description = (
        "Apply the options in order to an existing image.  Nothing is written unless\n"
        "every option succeeds and the result is valid.  File images get the changed\n"
        "members appended (the payload is not rewritten; 'pack' compacts them)."
    )

    def run(self, args: argparse.Namespace) -> int:
        operations.update(args.image, args.edits)
        return 0


class Partial(EditCommand):
    name = "partial"
    helpmsg = "modify a directory that need not be a complete image"
    description = (
        "Like update, for a folder that holds only part of an image (created if\n"
        "missing): mandatory files and content references are not required."
    )
    image_help = "the folder"

    def run(self, args: argparse.Namespace) -> int:
        operations.update(args.image, args.edits, partial=True)
        return 0


class Check(Command):
    name = "check"
    helpmsg = "validate an image; exit status 1 if it has errors"
    description = (
        "Validate structure, xl syntax and keys, parameters, referenced files, the disk\n"
        "description, init scripts and the manifest's names, sizes and modes.  Every\n"
        "problem is listed; the exit status is 1 when any is an error.  With --verify,\n"
        "every member's SHA-256 is recomputed and compared with the manifest (each\n"
        "missing, extra or different member is an error) and each signature must be\n"
        "over the current manifest (whom to trust is 'verify's job).  An image\n"
        "without a manifest is unverifiable: a warning.  With --update-of OLD, what\n"
        "keeps xenguest-manager from updating a guest made from image OLD with this one\n"
        "is an error too: another compatible string, a kept partition moved, resized,\n"
        "reformatted or no longer kept, a disk added or removed."
    )

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", metavar="XENGUEST")
        parser.add_argument("--verify", action="store_true",
                            help="also recompute every digest and check the signatures "
                                 "against the manifest")
        parser.add_argument("--update-of", metavar="OLD",
                            help="also check that the image can update a guest made from "
                                 "image OLD")
        add_json(parser)

    def run(self, args: argparse.Namespace) -> int:
        problems = operations.check(args.image, verify=args.verify, update_of=args.update_of)
        errors = sum(p.severity == ERROR for p in problems)
        warnings = sum(p.severity == WARNING for p in problems)
        if args.json:
            print_json({"image": args.image, "valid": errors == 0,
                        "errors": errors, "warnings": warnings,
                        "problems": [p.as_dict() for p in problems]})
        else:
            for problem in problems:
                print(problem)
            verdict = "valid" if errors == 0 else "INVALID"
            print(f"{args.image}: {verdict} ({errors} error(s), {warnings} warning(s))")
        return 1 if errors else 0


class Sign(Command):
    name = "sign"
    helpmsg = "add a signature (detached CMS) over the image's manifest"
    description = (
        "Sign the manifest of XENGUEST with KEY and its certificate CERT (PEM), as a\n"
        "detached CMS signature stored in signatures/<fingerprint>.cms.  Signing again\n"
        "with the same certificate replaces its signature; other signers' signatures\n"
        "stay (key rotation) unless they are over an older manifest (after an update):\n"
        "those are removed.  A file image gets the signature appended (rewritten when\n"
        "signatures are removed).  KEY is only passed to openssl; it must not be\n"
        "protected by a passphrase."
    )

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", metavar="XENGUEST")
        parser.add_argument("--key", required=True, metavar="KEY",
                            help="the signing key (PEM)")
        parser.add_argument("--cert", required=True, metavar="CERT",
                            help="the signer's certificate (PEM)")
        parser.add_argument("--chain", metavar="FILE",
                            help="intermediate certificates (PEM) to carry in the signature")

    def run(self, args: argparse.Namespace) -> int:
        member, signer = signing.sign(args.image, args.key, args.cert, args.chain)
        print(f"{args.image}: signed by {signer.subject} ({member})")
        return 0


class Verify(Command):
    name = "verify"
    helpmsg = "check the image's signature against a keyring, then every digest"
    description = (
        "Check that a signature of XENGUEST was made by a certificate that chains to a\n"
        "CA certificate of KEYRING (PEM) and is valid now, and that it is over the\n"
        "manifest, as every other signature must be (whoever made it); then recompute\n"
        "every digest.  Exit status 0 when all holds, else 1 with one line naming the\n"
        "failure: no signature, not a signature (anything in signatures/ but\n"
        "signatures), unknown signer, expired certificate, certificate not yet valid,\n"
        "manifest tampered, invalid signature, digest mismatch (naming the member) or\n"
        "no manifest."
    )

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", metavar="XENGUEST")
        parser.add_argument("--keyring", required=True, metavar="CA.pem",
                            help="the trusted CA certificates (PEM)")
        add_json(parser)

    def run(self, args: argparse.Namespace) -> int:
        with Image.open(args.image) as image:
            try:
                verified = signing.verify_signed(image, args.keyring)
            except signing.SignatureError as e:
                if not args.json:
                    raise
                print_json({"image": args.image, "valid": False, "kind": e.kind,
                            "message": e.message})
                return 1
        if args.json:
            print_json({"image": args.image, "valid": True,
                        "signature": verified.signature, **verified.signer.as_dict()})
        else:
            print(f"{args.image}: verified: signed by {verified.signer.subject} "
                  f"(SHA-256 fingerprint {verified.signer.fingerprint})")
        return 0


class Pack(Command):
    name = "pack"
    helpmsg = "write an image as a new canonical file image"
    description = (
        "Write the image XENGUEST (a directory or a file) as the new file image FILE,\n"
        "canonical and reproducible.  FILE may be XENGUEST itself to compact an updated\n"
        "file image."
    )

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", metavar="XENGUEST")
        parser.add_argument("dest", metavar="FILE")

    def run(self, args: argparse.Namespace) -> int:
        operations.pack(args.image, args.dest)
        return 0


class Extract(Command):
    name = "extract"
    helpmsg = "extract an image into an existing folder"
    config_only = False
    description = (
        "Extract every member of XENGUEST into the existing folder DIR.  Nothing is\n"
        "overwritten; on failure DIR is left as it was."
    )

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", metavar="XENGUEST")
        parser.add_argument("dest", metavar="DIR")

    def run(self, args: argparse.Namespace) -> int:
        operations.extract(args.image, args.dest, config_only=self.config_only)
        return 0


class ExtractConfig(Extract):
    name = "extract-config"
    helpmsg = "extract all but the disk content into an existing folder"
    description = (
        "Extract every member of XENGUEST except the disk content (disk/) into the\n"
        "existing folder DIR.  Nothing is overwritten; on failure DIR is left as it was."
    )
    config_only = True


class ExtractDiskFile(Command):
    name = "extract-disk-file"
    helpmsg = "write one disk content file to standard output"

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", metavar="XENGUEST")
        parser.add_argument("file", metavar="NAME", help="a file of the image's disk/ folder")

    def run(self, args: argparse.Namespace) -> int:
        sys.stdout.flush()
        with naming("standard output"):
            operations.extract_disk_file(args.image, args.file, sys.stdout.fileno())
        return 0


class RenderDisk(Command):
    name = "render-disk"
    helpmsg = "write the guest disk the image describes into a raw disk file"
    description = (
        "Write the disk that disk.cfg describes as the sparse raw disk file DISK:\n"
        "an msdos partition table (1 MiB alignment), each partition formatted and filled\n"
        "from its content, with this machine's tools (sfdisk, mke2fs and debugfs,\n"
        "mkfs.vfat and mtools, mkswap; no root, no mounts) -- the very code\n"
        "xenguest-manager builds guest disks with.  An image with a prebuilt disk gets\n"
        "that disk written.  DISK ending in .zst is written zstd-compressed, its size\n"
        "in the header: what --disk-add-prebuilt takes.  The same image and\n"
        "SOURCE_DATE_EPOCH (default 1980-01-01) give the same bytes: identifiers are\n"
        "derived from the description and content, times are SOURCE_DATE_EPOCH.\n"
        "DISK is replaced atomically; on failure it is left as it was."
    )

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", metavar="XENGUEST")
        parser.add_argument("output", metavar="DISK", help="the disk file to write")
        parser.add_argument("--ignore-prebuilt", action="store_true",
                            help="build the disk from its partitions even when the image "
                                 "has a prebuilt disk")

    def run(self, args: argparse.Namespace) -> int:
        from ..operations.render import render_disk

        render_disk(args.image, args.output, ignore_prebuilt=args.ignore_prebuilt)
        return 0


class Dump(Command):
    """A read-only operation: open the image, print text or (--json) data."""

    def __init__(self, name: str, helpmsg: str, data: Callable[[Image], Any],
                 text: Callable[[Image], str]) -> None:
        self.name, self.helpmsg, self.data, self.text = name, helpmsg, data, text

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", metavar="XENGUEST")
        add_json(parser)

    def run(self, args: argparse.Namespace) -> int:
        with operations.open_image(args.image) as image:
            if args.json:
                print_json(self.data(image))
            else:
                sys.stdout.write(self.text(image))
        return 0


def _ensure_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def xen_config_text(image: Image) -> str:
    """guest.cfg, then each guest.d fragment under a comment naming it: valid xl."""
    parts = []
    for i, doc in enumerate(operations.xen_config(image)["files"]):
        header = "" if i == 0 else f"# --- {doc['name']}\n"
        parts.append(header + _ensure_newline(doc["text"]))
    return "".join(parts)


def file_text(name: str) -> Callable[[Image], str]:
    return lambda image: _ensure_newline(image.read_text(name))


def init_text(image: Image) -> str:
    out = []
    for stage, scripts in operations.init_scripts(image).items():
        out.append(f"### {stage}\n")
        if not scripts:
            out.append("(no scripts)\n")
        for script in scripts:
            out.append(f"--- {stage}/{script['name']} ({script['mode']})\n")
            out.append(_ensure_newline(script["text"]))
    return "".join(out)


def info_text(image: Image) -> str:
    data = operations.info(image)
    rows = [("image", f"{data['image']} ({data['kind']} image, format "
                      f"{data['format_version']}, {human_size(data['total_size'])})")]
    for key in ("name", "compatible", "version", "type", "memory", "vcpus"):
        value = data[key]
        rows.append((key, "-" if value is None else f"{value}{' MB' if key == 'memory' else ''}"))
    for key in ("kernel", "device_tree", "ramdisk"):
        item = data[key]
        size = "" if not item or item["size"] is None else f" ({human_size(item['size'])})"
        rows.append((key.replace("_", " "), f"{item['path']}{size}" if item else "-"))
    rows.append(("cmdline", data["cmdline"] if data["cmdline"] is not None else "-"))
    rows.append(("root", data["root"] or "-"))
    disk = data["disk"]
    if disk["size_mib"]:
        rows.append(("disk", f"{disk['size']} ({disk['device'] or 'device chosen by the host'})"))
        for part in disk["partitions"]:
            rows.append((f"  partition {part['number']}",
                         f"{part['size']} {part['fs'] or '(no filesystem)'} "
                         f"{part['content'] or '(empty)'}"
                         + (" (kept across updates)" if part["keep"] else "")))
    else:
        rows.append(("disk", "none"))
    for stage, scripts in data["init"].items():
        rows.append((stage, " ".join(scripts) or "-"))
    rows.append(("params", " ".join(f"{k}={v}" for k, v in data["params"].items()) or "-"))
    if data["superseded"]["members"]:
        rows.append(("superseded", f"{data['superseded']['members']} member(s), "
                                   f"{human_size(data['superseded']['bytes'])} "
                                   "(run 'pack' to compact)"))
    width = max(len(k) for k, _ in rows) + 1
    return "".join(f"{k + ':':<{width}} {v}\n" for k, v in rows)


def list_text(image: Image) -> str:
    lines = []
    for row in operations.members(image):
        mark = "  (superseded)" if row["superseded"] else ""
        lines.append(f"{row['mode'] or '-':>6} {row['size']:>12} {row['name']}{mark}\n")
    return "".join(lines)


DUMPS: List[Command] = [
    Dump("dump-xenconfig", "print the xl configuration (guest.cfg, then guest.d/ in order)",
         operations.xen_config, xen_config_text),
    Dump("dump-diskconfig", "print the disk description (disk.cfg)",
         operations.disk_config, file_text(layout.DISK_CFG)),
    Dump("dump-paramsconfig", "print the parameters (params.cfg)",
         operations.params_config, file_text(layout.PARAMS)),
    Dump("dump-init", "print the init scripts of each stage",
         operations.init_scripts, init_text),
    Dump("info", "summarise the guest: name, memory, kernel, disk, scripts, size",
         operations.info, info_text),
    Dump("list", "list the files of an image", operations.members, list_text),
]


COMMANDS: List[Command] = [
    Create(), Import(), Update(), Partial(), Check(), Sign(), Verify(), Pack(), Extract(), ExtractConfig(),
    ExtractDiskFile(), RenderDisk(), *DUMPS, Help(),
]


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``xenguest-mkimage``."""
    return cli_main(PROG, DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())

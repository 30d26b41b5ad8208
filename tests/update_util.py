"""A guest to update, for the tests of xenguest-manager update, rollback and commit.

Guest ``web`` runs (the stand-in ``xl`` of manager_util) with a 24 MiB disk:
partition 1 (10 MiB ext4) is the root file system, made from a tarball whose
``/etc/version`` names the image's version; partition 2 (8 MiB ext4) is
kept across updates.  Images ``web-N.xenguest`` (version N of product
``acme/web``) share that layout unless a test asks otherwise.  The disks are
real: sfdisk, mke2fs and debugfs made them, debugfs reads and writes them
here; the file backend keeps them in the state folder, the lvm backend in
the stand-in lvm2's volumes (no device mapper on a test machine).
"""

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from typing import Dict, List, Optional, Sequence, Tuple

from manager_util import (FakeXl, config_file, install_fake_lvm, make_image, make_tar,
                          tar_entry, tree)
from xenguest.cli.manager import main

MIB = 1 << 20
#: (offset, size) of the partitions of the standard layout.
ROOT_PART = (1 * MIB, 10 * MIB)
DATA_PART = (11 * MIB, 8 * MIB)
LVM = "[disk]\nbackend = lvm\nvolume_group = vg0\n"


def layout(disk="24M", root="1:10M:ext4:rootfs.tar", data="2:8M:ext4::keep",
           more: Sequence[str] = ()) -> List[Tuple[str, str]]:
    edits = [("--disk-size", disk), ("--disk-add-part", root)]
    if data:
        edits.append(("--disk-add-part", data))
    return edits + [("--disk-add-part", part) for part in more]


class World:
    """Settings, stand-ins, images and the guest, below one folder."""

    def __init__(self, folder: str, backend: str = "file", extra: str = "") -> None:
        self.folder = folder
        self.backend = backend
        self.xl = FakeXl(folder)
        self.state = os.path.join(folder, "state")
        self.volumes = os.path.join(folder, "lvm", "vg0")
        settings = extra
        if backend == "lvm":
            commands = install_fake_lvm(folder, ["vg0"])
            settings = "".join(f"{k} = {v}\n" for k, v in commands.items()) + LVM + extra
        self.config = config_file(folder, self.state, xl=self.xl.path, extra=settings)
        os.environ["XENGUEST_MANAGER_CONFIG"] = self.config

    # -- images and commands ----------------------------------------------------------

    def image(self, version: str, edits: Sequence[Tuple[str, Optional[str]]] = (),
              compatible: str = "acme/web", disk: Optional[List[Tuple[str, str]]] = None,
              name: str = "") -> str:
        """Image version *version* of *compatible*, its rootfs saying the version."""
        tar = make_tar(os.path.join(self.folder, f"rootfs-{version}.tar"), [
            tar_entry("./etc", kind=tarfile.DIRTYPE, mode=0o755),
            tar_entry("./etc/version", f"{version}\n".encode())])
        identity = [("--guest-version", version)] + (
            [("--guest-compatible", compatible)] if compatible else [])
        return make_image(os.path.join(self.folder, name or f"web-{version}.xenguest"),
                          [("--disk-add-file", f"{tar}:rootfs.tar")] + identity
                          + (layout() if disk is None else disk) + list(edits))

    def guest(self, version: str = "1", **image_args) -> None:
        """Create guest web from image *version* and start it."""
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["create", self.image(version, **image_args), "web"]) == 0
            assert main(["start", "web"]) == 0

    # -- the disk ---------------------------------------------------------------------

    def disk(self) -> str:
        if self.backend == "lvm":
            return os.path.join(self.volumes, "xenguest-web")
        return os.path.join(self.state, "guests", "web", "disk.img")

    def debugfs(self, part: Tuple[int, int], request: str, write: bool = False) -> str:
        proc = subprocess.run(["debugfs"] + (["-w"] if write else []) + [
            "-R", request, f"{self.disk()}?offset={part[0]}"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, universal_newlines=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def version_on_disk(self) -> str:
        """What the root file system's /etc/version says."""
        return self.debugfs(ROOT_PART, "cat /etc/version").strip()

    def write_data(self, name: str, text: str) -> None:
        """Write a file into the kept partition, as the guest would."""
        source = os.path.join(self.folder, "data-" + name)
        with open(source, "w") as f:
            f.write(text)
        self.debugfs(DATA_PART, f"write {source} {name}", write=True)

    def data(self, name: str) -> str:
        return self.debugfs(DATA_PART, f"cat /{name}")

    def read(self, start: int, size: int) -> bytes:
        with open(self.disk(), "rb") as f:
            f.seek(start)
            return f.read(size)

    def disk_digest(self) -> str:
        digest = hashlib.sha256()
        with open(self.disk(), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    # -- what the host holds ------------------------------------------------------

    def status(self) -> dict:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["status", "web", "--json"]) == 0
        return json.loads(out.getvalue())

    def entries(self) -> List[str]:
        """The state folder's guest entries and the volumes: what exists."""
        found = os.listdir(os.path.join(self.state, "guests"))
        if self.backend == "lvm":
            found += [f"lv:{v}" for v in os.listdir(self.volumes)]
        return sorted(found)

    def fingerprint(self) -> Dict[str, object]:
        """Everything a switch may change, but the domain and the xl configuration it
        writes at each start: the guest's files, its record, its disk, what exists."""
        folder = os.path.join(self.state, "guests", "web")
        files = {}
        for name in tree(folder):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and name not in ("xl.cfg", "disk.img"):
                with open(path, "rb") as f:
                    files[name] = hashlib.sha256(f.read()).hexdigest()
        return {"files": files, "disk": self.disk_digest(),
                "size": os.path.getsize(self.disk()), "entries": self.entries()}

    def running(self) -> bool:
        domain = self.xl.domains().get("web")
        return domain is not None and domain["state"] == "-b----"

    # -- snapshots of the whole world (kill tests) ------------------------------------

    def snapshot(self, name: str) -> None:
        """Copy the state, the stand-ins' state and the volumes aside."""
        target = os.path.join(self.folder, "snapshots", name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        for part in ("state", "lvm", "fake-xl.json"):
            source = os.path.join(self.folder, part)
            if os.path.isdir(source):
                subprocess.run(["cp", "-a", "--sparse=always", source, target + "-" + part],
                               check=True)
            elif os.path.exists(source):
                shutil.copy2(source, target + "-" + part)

    def restore(self, name: str) -> None:
        target = os.path.join(self.folder, "snapshots", name)
        for part in ("state", "lvm", "fake-xl.json"):
            source = os.path.join(self.folder, part)
            copy = target + "-" + part
            if os.path.isdir(copy):
                shutil.rmtree(source)
                subprocess.run(["cp", "-a", "--sparse=always", copy, source], check=True)
            elif os.path.exists(copy):
                shutil.copy2(copy, source)

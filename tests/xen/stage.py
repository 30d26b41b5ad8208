"""Put files of unpacked Debian packages into an initramfs, with what they need to run.

Paths inside the initramfs are merged-/usr (/bin, /sbin, /lib, /lib64 are links into /usr).
Symbolic links are kept as links, rewritten to absolute merged-/usr targets, and their
targets are added too; ELF files bring their interpreter and NEEDED libraries, recursively.
"""

import os
from typing import List, Optional

from . import elf
from .cpio import Staging
from .debs import MERGED_DIRS, DebianTree, HarnessError, canonical


class Stager:
    """An initramfs under construction from one DebianTree."""

    def __init__(self, tree: DebianTree) -> None:
        self.tree = tree
        self.staging = Staging()
        for top in MERGED_DIRS:
            self.staging.add_dir("/usr/" + top)
            self.staging.add_symlink("/" + top, "usr/" + top)

    def add(self, path: str, package: Optional[str] = None) -> None:
        """Add canonical PATH (from PACKAGE if given), following links and library needs."""
        path = canonical(path)
        if path in self.staging.entries:
            return
        host = self.tree.locate(path, package)
        if host is None and package is not None:
            host = self.tree.locate(path)
        if host is None:
            raise HarnessError("%s is in no unpacked %s package" % (
                path, package or self.tree.arch))
        if os.path.islink(host):
            original = self._original(host)
            resolved = canonical(os.path.join(os.path.dirname(original), os.readlink(host)))
            self.staging.add_symlink(path, resolved)
            self.add(resolved, package)
        elif os.path.isdir(host):
            self.staging.add_dir(path)
        else:
            self.staging.add_file(path, host)
            if elf.is_elf(host):
                self._add_needs(path, host)

    def _original(self, host: str) -> str:
        """The path HOST had in its package (before merging /usr)."""
        pkgs = os.path.join(self.tree.folder, "pkgs") + os.sep
        rest = host[len(pkgs):]
        return "/" + rest.split(os.sep, 1)[1]

    def _add_needs(self, path: str, host: str) -> None:
        needed, runpaths, interp = elf.dynamic_info(host)
        if interp:
            self.add(interp)
        for soname in needed:
            found = None
            for folder in runpaths:
                folder = folder.replace("$ORIGIN", os.path.dirname(path))
                candidate = canonical(os.path.join(folder, soname))
                if self.tree.locate(candidate):
                    found = candidate
                    break
            found = found or self.tree.library(soname)
            if found is None:
                raise HarnessError("%s needs %s, which no unpacked package provides" % (
                    path, soname))
            self.add(found)

    def add_package(self, package: str, under: str, exclude: Optional[List[str]] = None) -> None:
        """Add everything PACKAGE ships below canonical UNDER, except paths with an
        EXCLUDE component (e.g. "test")."""
        skip = set(exclude or [])
        for path in self.tree.files(package, under):
            if skip.intersection(path.split("/")):
                continue
            self.add(path, package)

    def add_modules(self, names: List[str]) -> List[str]:
        """Add kernel modules NAMES with their dependencies; their paths in load order."""
        paths = self.tree.module_closure(names)
        for path in paths:
            self.add(path)
        return paths

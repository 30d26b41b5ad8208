"""Safe extraction of file images: no link followed, nothing overwritten, no debris."""

import contextlib
import os
import stat
from typing import Callable, Dict, List, Optional, Set, Tuple

from ..errors import ArchiveError, XenguestError
from ..fsutil import naming
from .archive import Member, TarIndex, _check_logical
from .streams import copy_fd


def _everything(name: str) -> bool:
    return True


def _extract_plan(index: TarIndex, dest_dir: str, select: Callable[[str], bool],
                  rename: Optional[Callable[[str], str]]) -> List[Tuple[str, Member]]:
    """Selected members with their destination, checked against dest_dir."""
    plan: List[Tuple[str, Member]] = []
    origin: Dict[str, str] = {}
    for member in sorted(index.members.values(), key=lambda m: m.header_offset):
        if not select(member.name):
            continue
        rel = rename(member.name) if rename else member.name
        _check_logical(rel, "destination path")
        if not rel and not member.is_dir:
            raise ArchiveError(f"unsafe destination path '' for member {member.name!r}")
        if rel in origin:
            raise ArchiveError(f"{index.path}: members {origin[rel]!r} and {member.name!r} "
                               f"both extract to {rel!r}")
        origin[rel] = member.name
        if rel:
            plan.append((rel, member))
    files = {rel for rel, member in plan if not member.is_dir}
    checked: Set[str] = set()
    for rel, member in plan:
        parts = rel.split("/")
        for depth in range(1, len(parts) + 1):
            sub = "/".join(parts[:depth])
            is_dir = depth < len(parts) or member.is_dir
            if is_dir and sub in files:
                raise ArchiveError(f"{index.path}: {sub!r} is both a file and a directory")
            if sub in checked:
                continue
            checked.add(sub)
            target = os.path.join(dest_dir, sub)
            try:
                mode = os.lstat(target).st_mode
            except FileNotFoundError:
                continue
            if not is_dir:
                raise ArchiveError(f"cannot extract {member.name!r}: {target} exists already")
            if not stat.S_ISDIR(mode):
                what = "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"
                raise ArchiveError(f"cannot extract {member.name!r}: {target} is {what}")
    return plan


def _open_dirs(root: int, rel: str, dest_dir: str, dir_modes: Dict[str, int],
               created: List[str]) -> int:
    """fd of directory *rel* under *root*, made as needed, never through a symlink."""
    fd = os.dup(root)
    try:
        parts = rel.split("/") if rel else []
        for depth, part in enumerate(parts, 1):
            sub = "/".join(parts[:depth])
            made = False
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
                created.append(sub)
                made = True
            except FileExistsError:
                pass
            try:
                new = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                raise ArchiveError(f"{os.path.join(dest_dir, sub)} is not a directory "
                                   "(or is a symbolic link)") from None
            os.close(fd)
            fd = new
            if made:
                os.fchmod(fd, dir_modes.get(sub, 0o755))
        return fd
    except BaseException:
        os.close(fd)
        raise


def extract(index: TarIndex, dest_dir: str, select: Callable[[str], bool] = _everything,
            rename: Optional[Callable[[str], str]] = None) -> List[str]:
    """Extract the selected members into the existing directory *dest_dir*.

    Returns the destination paths (relative to *dest_dir*) of the members
    extracted, in archive order. *rename* maps a logical name to its destination.
    Nothing existing is overwritten (checked first) and no symbolic link is
    followed; on failure everything created is removed again.
    """
    plan = _extract_plan(index, dest_dir, select, rename)
    try:
        root = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise XenguestError(f"cannot extract into {dest_dir}: {exc.strerror}") from None
    dir_modes = {rel: m.mode & 0o755 | 0o700 for rel, m in plan if m.is_dir}
    files: List[str] = []
    dirs: List[str] = []
    try:
        for rel, member in plan:
            parent, _, leaf = rel.rpartition("/")
            fd = _open_dirs(root, rel if member.is_dir else parent, dest_dir, dir_modes, dirs)
            try:
                if not member.is_dir:
                    _extract_file(index, member, fd, leaf, dest_dir, rel, files)
            finally:
                os.close(fd)
        for rel, member in reversed(plan):
            if member.is_dir and rel in dirs:
                os.utime(rel, (member.mtime, member.mtime), dir_fd=root,
                         follow_symlinks=False)
    except BaseException:
        for rel in reversed(files):
            with contextlib.suppress(OSError):
                os.unlink(rel, dir_fd=root)
        for rel in reversed(dirs):
            with contextlib.suppress(OSError):
                os.rmdir(rel, dir_fd=root)
        raise
    finally:
        os.close(root)
    return [rel for rel, _ in plan]


def _extract_file(index: TarIndex, member: Member, dir_fd: int, leaf: str, dest_dir: str,
                  rel: str, created: List[str]) -> None:
    mode = member.mode & 0o755
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        out = os.open(leaf, flags, 0o600, dir_fd=dir_fd)
    except FileExistsError:
        raise ArchiveError(f"cannot extract {member.name!r}: "
                           f"{os.path.join(dest_dir, rel)} exists already") from None
    created.append(rel)
    try:
        with naming(os.path.join(dest_dir, rel)):
            copy_fd(index.fd, out, member.size, offset=member.data_offset, what=index.path)
        os.fchmod(out, mode)
        os.utime(out, (member.mtime, member.mtime))
    finally:
        os.close(out)

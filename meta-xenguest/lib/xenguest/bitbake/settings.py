"""Reading the build variables of the meta-xenguest classes: one wrong value stops
the parse with one line naming the variable and the value.

BitBake's ``bb`` is imported inside the functions that need it, so that this
module can be imported (and shipped with the library) without BitBake.
"""

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Tuple

from ..digits import whole_number
from ..errors import XenguestError
from ..operations.editor import split_source

FILE_FORMS = "file://NAME (looked up in FILESPATH like a SRC_URI entry) or an absolute path"


class SettingError(XenguestError):
    """A build variable has a wrong value; the message names it and the value."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        super().__init__(f'{variable} = "{value}": {reason}')
        self.variable = variable


@dataclass
class Source:
    """A file an image or a host rootfs takes from the build."""

    variable: str
    entry: str                  # as written in the variable
    path: str                   # where the file is, or will be once produced
    dest: Optional[str] = None  # name in the image (SRC:DST entries)
    produced: bool = False      # made by another task: checked when the task runs
    checksums: List[str] = field(default_factory=list)  # file-checksums entries

    def check_exists(self) -> None:
        if not os.path.isfile(self.path):
            raise SettingError(self.variable, self.entry, f"{self.path} does not exist")


def setting(d: Any, name: str) -> str:
    """The value of variable *name*, stripped (empty if unset)."""
    return (d.getVar(name) or "").strip()


def _under(path: str, folder: Optional[str]) -> bool:
    if not folder:
        return False
    folder = os.path.normpath(folder)
    return os.path.normpath(path).startswith(folder + os.sep)


def resolve_file(d: Any, variable: str, entry: str, deployed: bool = False,
                 with_dest: bool = False) -> Source:
    """Find the file an entry of *variable* names.

    ``file://NAME`` is searched in ``FILESPATH`` (as a SRC_URI entry is); an
    absolute path is taken as is (one inside ``TMPDIR`` is made by another task
    and checked when the task runs); with *deployed*, a plain name is a file in
    ``DEPLOY_DIR_IMAGE``.  *with_dest* accepts a ``:DST`` suffix.
    """
    import bb.utils

    text, dest = entry, None
    if with_dest:
        scheme = "file://" if entry.startswith("file://") else ""
        text, dest = split_source(entry[len(scheme):])
        text = scheme + text
        if dest is not None and not dest:
            raise SettingError(variable, entry, "empty name after ':'")
    if "${" in text:
        raise SettingError(variable, entry, "holds an unexpanded variable (is it set?)")
    if ";" in text:
        raise SettingError(variable, entry, f"parameters are not supported: use {FILE_FORMS}")
    if text.startswith("file://"):
        name = text[len("file://"):]
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise SettingError(variable, entry, "file:// needs a relative name")
        found, searched = bb.utils.which(d.getVar("FILESPATH"), name, history=True)
        checksums = [f"{p}:{os.path.exists(p)}" for p in searched]
        if not found or not os.path.isfile(found):
            raise SettingError(variable, entry, f"no file {name} in FILESPATH "
                               f"({', '.join(searched[:4])}{', ...' if len(searched) > 4 else ''})")
        return Source(variable, entry, found, dest, False, checksums)
    if os.path.isabs(text):
        if _under(text, d.getVar("TMPDIR")):
            return Source(variable, entry, text, dest, True)
        if not os.path.isfile(text):
            raise SettingError(variable, entry, f"{text} does not exist")
        return Source(variable, entry, text, dest, False, [f"{text}:True"])
    if deployed and text and "/" not in text and text not in (".", ".."):
        return Source(variable, entry, os.path.join(d.getVar("DEPLOY_DIR_IMAGE"), text),
                      dest, True)
    forms = "a file name in DEPLOY_DIR_IMAGE, " + FILE_FORMS if deployed else FILE_FORMS
    raise SettingError(variable, entry, f"expected {forms}")


def checked(variable: str, value: str, check: Any, *args: Any) -> Any:
    """Call a library check; turn its error into a SettingError on *variable*."""
    try:
        return check(*args)
    except SettingError:
        raise
    except XenguestError as e:
        raise SettingError(variable, value, str(e)) from None


def positive(d: Any, variable: str, what: str) -> str:
    """Variable *variable* as a whole number above 0 (*what* names it in the error)."""
    value = setting(d, variable)
    number = whole_number(value)
    if number is None or number <= 0:
        raise SettingError(variable, value, f"expected {what}, a whole number above 0")
    return str(number)


def choice(d: Any, variable: str, choices: Tuple[str, ...], empty: bool = False) -> str:
    """Variable *variable*, one of *choices* (or, with *empty*, nothing)."""
    value = setting(d, variable)
    if value not in choices and not (empty and not value):
        none = " or nothing" if empty else ""
        raise SettingError(variable, value, f"expected one of {', '.join(choices)}{none}")
    return value


@contextlib.contextmanager
def build_time(d: Any) -> Iterator[None]:
    """Within the block, the environment's SOURCE_DATE_EPOCH is the build's (the
    library reads the time it writes from there)."""
    value = setting(d, "SOURCE_DATE_EPOCH")
    old = os.environ.get("SOURCE_DATE_EPOCH")
    if value:
        os.environ["SOURCE_DATE_EPOCH"] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old

"""The one family of user errors of the xenguest library.

Anything raised as a :class:`XenguestError` is a problem with the user's input
(a bad option, a broken image, a missing file) and is turned into one line on
stderr and an exit status by the command-line front ends, in one place.
Everything else is a bug and may show a traceback.
"""


from contextlib import contextmanager
from typing import Iterator, Type


class XenguestError(Exception):
    """A user error: the message is shown as is, the exit status is 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def prefixed(self, prefix: str) -> "XenguestError":
        """Return a copy of this error whose message starts with *prefix*."""
        return type(self)(f"{prefix}: {self.message}")


class UsageError(XenguestError):
    """The command line itself is wrong: exit status 2."""

    exit_code = 2


class ImageError(XenguestError):
    """The image is missing, not a xenguest image, or damaged."""


class ArchiveError(ImageError):
    """A file image (tar) is unreadable, truncated or holds unsafe members."""


class XlSyntaxError(XenguestError):
    """An xl configuration does not parse, or a value cannot be written in xl syntax."""


class ShellVarsError(XenguestError):
    """A shell-variable file (params.cfg, disk.cfg) is unsafe or malformed."""


class DiskConfigError(XenguestError):
    """A disk description (size, partition, content) is invalid."""


class DiskError(XenguestError):
    """A guest disk cannot be built as its description says."""


class CommandError(XenguestError):
    """An external program failed or could not be run."""


@contextmanager
def step(what: str, error: Type[XenguestError] = XenguestError) -> Iterator[None]:
    """Name the step that failed: any user error or OS error inside becomes
    ``error("WHAT: reason")``."""
    try:
        yield
    except XenguestError as e:
        raise error(f"{what}: {e.message}") from None
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise error(f"{what}: {where}{e.strerror or e}") from None

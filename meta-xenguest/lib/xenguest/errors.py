"""The one family of user errors of the xenguest library.

Anything raised as a :class:`XenguestError` is a problem with the user's input
(a bad option, a broken image, a missing file) and is turned into one line on
stderr and an exit status by the command-line front ends, in one place.
Everything else is a bug and may show a traceback.
"""


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

"""Command-line front ends: a small plugin framework shared by every command.

Each operation is a :class:`Command` with ``name``, ``helpmsg``,
``setup_parser`` and ``run``.  :func:`main` builds the parser, runs the chosen
command and turns every :class:`~xenguest.errors.XenguestError` into one line
on stderr and its exit status — the only place where the program exits.

Imports: everything below: the foundations, xl, format, disk, operations,
bitbake, manager.
"""

import abc
import argparse
import signal
import sys
from typing import List, NoReturn, Optional, Sequence

from ..errors import UsageError, XenguestError

HELP_WIDTH = 80


class Command(abc.ABC):
    """One operation of a command-line tool."""

    name = ""
    helpmsg = ""
    description = ""

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        """Add the operation's arguments."""

    @abc.abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Run the operation; return the exit status."""


class Help(Command):
    """``help [OPERATION]``: the same text as ``--help`` and ``OPERATION --help``."""

    name = "help"
    helpmsg = "show this help, or the help of OPERATION"

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("topic", metavar="OPERATION", nargs="?")

    def run(self, args: argparse.Namespace) -> int:
        try:
            args.root_parser.parse_args([args.topic, "--help"] if args.topic else ["--help"])
        except SystemExit as e:
            return int(e.code or 0)
        return 0


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help text at a fixed width, so that it is the same everywhere (and in the docs)."""
    return argparse.RawDescriptionHelpFormatter(prog, width=HELP_WIDTH, max_help_position=32)


def build_parser(prog: str, description: str, commands: Sequence[Command]) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description=description, formatter_class=formatter)
    sub = parser.add_subparsers(dest="operation", metavar="OPERATION", parser_class=ArgumentParser)
    for command in commands:
        child = sub.add_parser(
            command.name, help=command.helpmsg,
            description=command.description or command.helpmsg,
            formatter_class=formatter,
        )
        command.setup_parser(child)
        child.set_defaults(command=command, root_parser=parser)
    return parser


def main(prog: str, description: str, commands: Sequence[Command],
         argv: Optional[List[str]] = None) -> int:
    """Parse *argv*, run the command, report user errors in one line."""
    if argv is None and hasattr(signal, "SIGPIPE"):
        # as a command: a closed pipe ends the output quietly, like other tools
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = build_parser(prog, description, commands)
    args_list = sys.argv[1:] if argv is None else argv
    operation = args_list[0] if args_list and not args_list[0].startswith("-") else ""
    where = f"{prog} {operation}" if operation else prog
    try:
        try:
            args = parser.parse_args(args_list)
        except SystemExit as e:  # --help printed its text
            return int(e.code or 0)
        command = getattr(args, "command", None)
        if command is None:
            parser.print_help()
            return 2 if not args_list else 0
        return command.run(args)
    except XenguestError as e:
        print(f"{where}: {e.message}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 1
    except OSError as e:  # the system refused: disk full, permission denied, ...
        subject = f"{e.filename}: " if e.filename else ""
        print(f"{where}: {subject}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130

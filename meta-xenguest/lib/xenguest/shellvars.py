"""Shell-sourceable variable files (``params.cfg``, ``disk.cfg``), read without a shell.

Hosts ``source`` these files with a shell, as root.  This module therefore:

* reads them with a strict subset of POSIX ``sh`` word syntax and never executes
  anything: a line is a comment, a blank line or ``KEY=VALUE``, where VALUE is a
  concatenation of double-quoted parts (no unescaped ``$`` or backtick inside),
  single-quoted parts, backslash-escaped characters and bare characters from a
  small safe set.  Anything a shell would expand, run or redirect is refused with
  a :class:`ShellVarsError` naming ``file:line``;
* writes values so that sourcing the file assigns exactly the value and runs
  nothing: ``KEY="VALUE"`` when every character is inert inside double quotes,
  ``KEY='VALUE'`` otherwise (an embedded ``'`` is written ``'\\''``).  Values with a
  newline, carriage return or NUL cannot be held by a line-based file and are refused;
* edits in place: comments, order and untouched lines stay byte-identical.
"""

import re
from typing import Dict, List, Optional, Tuple

from .errors import ShellVarsError

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ASSIGN_RE = re.compile(r"([ \t]*)([A-Za-z_][A-Za-z0-9_]*)=")

#: Characters that may appear unquoted in a value.
SAFE_BARE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-./:,+=@%"
)
# Characters that keep a special meaning inside double quotes (``!`` only in an
# interactive bash, but it costs nothing to avoid it).
_DQ_ACTIVE = frozenset('"$`\\!')
# Characters a line-based file cannot hold.
_UNWRITABLE = {"\n": "a newline", "\r": "a carriage return", "\0": "a NUL character"}
# Backslash escapes that are honoured inside double quotes (backslash-newline aside).
_DQ_ESCAPABLE = frozenset('$`"\\')

#: Names that must not be set through params: hosts export params to root scripts.
RESERVED_NAMES = frozenset(
    [
        "PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "CDPATH", "PS4",
        "HOME", "SHELL", "PYTHONPATH", "PYTHONHOME",
        # glibc reads these in every program (gconv modules are loaded as code)
        "GCONV_PATH", "GLIBC_TUNABLES",
    ]
)
#: Name prefixes that must not be set through params.
RESERVED_PREFIXES = ("LD_", "BASH_FUNC", "XENGUEST_MANAGER_")


def valid_name(key: str) -> bool:
    """Tell whether *key* is a valid variable name (``[A-Za-z_][A-Za-z0-9_]*``)."""
    return bool(_NAME_RE.match(key))


def is_reserved(key: str) -> bool:
    """Tell whether *key* must not be set as a parameter (it would steer root scripts)."""
    return key in RESERVED_NAMES or key.startswith(RESERVED_PREFIXES)


def quote(value: str) -> str:
    """Return *value* as the right-hand side of an assignment, quotes included.

    Raises :class:`ShellVarsError` for a value holding a newline, carriage return or NUL.
    """
    for char, what in _UNWRITABLE.items():
        if char in value:
            raise ShellVarsError(
                f"value {_show(value)} contains {what}, which a line-based file cannot hold"
            )
    if not any(c in _DQ_ACTIVE for c in value):
        return f'"{value}"'
    return "'" + value.replace("'", "'\\''") + "'"


def _show(value: str, limit: int = 40) -> str:
    """A short printable rendering of a value for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class _Line:
    """One line of the file; *key* is None for comments and blank lines."""

    __slots__ = ("text", "key", "value", "indent", "trailer")

    def __init__(self, text: str, key: Optional[str] = None, value: str = "",
                 indent: str = "", trailer: str = "") -> None:
        self.text = text
        self.key = key
        self.value = value
        self.indent = indent
        self.trailer = trailer


class _ValueReader:
    """Reads the VALUE of one ``KEY=VALUE`` line; *where* is ``file:line``."""

    def __init__(self, line: str, start: int, where: str, key: str) -> None:
        self.line = line
        self.pos = start
        self.where = where
        self.key = key

    def fail(self, message: str) -> ShellVarsError:
        return ShellVarsError(f"{self.where}: {message}")

    def read(self) -> Tuple[str, str]:
        """Return (value, trailer): the trailer is trailing blanks and an optional comment."""
        line, parts = self.line, []
        while self.pos < len(line):
            char = line[self.pos]
            if char == '"':
                parts.append(self._double_quoted())
            elif char == "'":
                parts.append(self._single_quoted())
            elif char == "\\":
                if self.pos + 1 >= len(line):
                    raise self.fail(
                        f"value of {self.key} continues on the next line (backslash at the "
                        "end of the line): multi-line values are not supported"
                    )
                parts.append(line[self.pos + 1])
                self.pos += 2
            elif char in SAFE_BARE:
                parts.append(char)
                self.pos += 1
            elif char in " \t":
                return "".join(parts), self._trailer()
            else:
                raise self._unsafe_bare(char)
        return "".join(parts), ""

    def _trailer(self) -> str:
        rest = self.line[self.pos:]
        stripped = rest.lstrip(" \t")
        if stripped and not stripped.startswith("#"):
            raise self.fail(
                f"unquoted blank in the value of {self.key} followed by {_show(stripped)}: "
                "a shell sourcing this file would run it as a command (quote the value)"
            )
        return rest

    def _unsafe_bare(self, char: str) -> ShellVarsError:
        if char == "$":
            return self.fail(self._dollar_message("unquoted"))
        if char == "`":
            return self.fail(
                f"unquoted backtick in the value of {self.key}: a shell sourcing this "
                "file would run the command in it"
            )
        if char == "\r":
            return self.fail(_cr_message(self.key))
        return self.fail(
            f"unquoted {char!r} in the value of {self.key}: not allowed outside quotes "
            "(a shell could treat it as an operator or expand it; quote the value)"
        )

    def _dollar_message(self, how: str) -> str:
        after = self.line[self.pos + 1:self.pos + 2]
        if after == "(":
            return (f"{how} command substitution '$(' in the value of {self.key}: "
                    "a shell sourcing this file would run it")
        return (f"{how} '$' in the value of {self.key}: a shell sourcing this file "
                "would expand it (write '\\$' or use single quotes)")

    def _double_quoted(self) -> str:
        line, out = self.line, []
        self.pos += 1
        while self.pos < len(line):
            char = line[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\" and self.pos + 1 < len(line):
                nxt = line[self.pos + 1]
                out.append(nxt if nxt in _DQ_ESCAPABLE else "\\" + nxt)
                self.pos += 2
                continue
            if char == "\\":
                break
            if char == "$":
                raise self.fail(self._dollar_message("unescaped"))
            if char == "`":
                raise self.fail(
                    f"unescaped backtick inside double quotes in the value of {self.key}: "
                    "a shell sourcing this file would run the command in it"
                )
            out.append(char)
            self.pos += 1
        raise self.fail(
            f"unterminated double quote in the value of {self.key} "
            "(multi-line values are not supported)"
        )

    def _single_quoted(self) -> str:
        end = self.line.find("'", self.pos + 1)
        if end < 0:
            raise self.fail(
                f"unterminated single quote in the value of {self.key} "
                "(multi-line values are not supported)"
            )
        text = self.line[self.pos + 1:end]
        self.pos = end + 1
        return text


def _cr_message(key: str) -> str:
    return (f"carriage return in the value of {key} (DOS line endings?): "
            "a shell sourcing this file would keep it in the value")


def _parse_line(text: str, where: str) -> _Line:
    stripped = text.lstrip(" \t")
    if not stripped or stripped.startswith("#"):
        return _Line(text)
    match = _ASSIGN_RE.match(text)
    if not match:
        words = stripped.split()
        word = words[0] if words else ""
        if word in ("export", "readonly", "local", "declare", "typeset"):
            raise ShellVarsError(
                f"{where}: '{word}' is not supported: write plain KEY=VALUE lines"
            )
        if "\r" in stripped:
            raise ShellVarsError(f"{where}: carriage return (DOS line endings?): "
                                 "a shell sourcing this file would run it as a command")
        raise ShellVarsError(
            f"{where}: expected KEY=VALUE, a comment or a blank line, found {_show(stripped)}"
        )
    indent, key = match.group(1), match.group(2)
    value, trailer = _ValueReader(text, match.end(), where, key).read()
    if "\r" in value:
        raise ShellVarsError(f"{where}: {_cr_message(key)}")
    return _Line(text, key, value, indent, trailer)


class ShellVarFile:
    """An editable shell-variable file that keeps its layout.

    *source* is the name used in error messages (``params.cfg``).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._lines: List[_Line] = []
        self._final_newline = True

    @classmethod
    def parse(cls, text: str, source: str) -> "ShellVarFile":
        """Read *text*; raises :class:`ShellVarsError` naming ``source:line`` on unsafe input."""
        result = cls(source)
        if "\0" in text:
            number = text[: text.index("\0")].count("\n") + 1
            raise ShellVarsError(f"{source}:{number}: contains a NUL character")
        raw = text.split("\n")
        if raw and raw[-1] == "":
            raw.pop()
        else:
            result._final_newline = False
        for number, line in enumerate(raw, 1):
            result._lines.append(_parse_line(line, f"{source}:{number}"))
        return result

    @classmethod
    def new(cls, source: str, header: str = "") -> "ShellVarFile":
        """Make an empty file; each line of *header* becomes a comment line.

        A header line that already starts with ``#`` is kept as is, others get ``# ``.
        """
        result = cls(source)
        for line in header.splitlines():
            if line.startswith("#"):
                comment = line
            else:
                comment = f"# {line}".rstrip()
            result._lines.append(_Line(comment))
        return result

    def _assignments(self, key: str) -> List[int]:
        return [i for i, line in enumerate(self._lines) if line.key == key]

    def get(self, key: str) -> Optional[str]:
        """The value of *key* (the last assignment wins), or None when it is not set."""
        found = self._assignments(key)
        return self._lines[found[-1]].value if found else None

    def __contains__(self, key: object) -> bool:
        return any(line.key == key for line in self._lines)

    def set(self, key: str, value: str) -> None:
        """Set *key* to *value*: replace its last assignment in place, or append one.

        Other assignments of *key* are dropped.  Raises :class:`ShellVarsError` for an
        invalid name or a value a line-based file cannot hold.
        """
        if not valid_name(key):
            raise ShellVarsError(
                f"{self.source}: invalid variable name {_show(key)} "
                "(letters, digits and '_', not starting with a digit)"
            )
        try:
            rhs = quote(value)
        except ShellVarsError as exc:
            raise exc.prefixed(f"{self.source}: {key}") from None
        found = self._assignments(key)
        if not found:
            self._lines.append(_Line(f"{key}={rhs}", key, value))
            self._final_newline = True
            return
        last = self._lines[found[-1]]
        last.text = f"{last.indent}{key}={rhs}{last.trailer}"
        last.value = value
        for index in reversed(found[:-1]):
            del self._lines[index]

    def remove(self, key: str) -> bool:
        """Remove every assignment of exactly *key*; tell whether there was one."""
        found = self._assignments(key)
        for index in reversed(found):
            del self._lines[index]
        return bool(found)

    def items(self) -> List[Tuple[str, str]]:
        """(key, effective value) pairs, in the order keys first appear."""
        values: Dict[str, str] = {}
        for line in self._lines:
            if line.key is not None:
                values[line.key] = line.value  # an existing key keeps its position
        return list(values.items())

    def keys(self) -> List[str]:
        """The keys, in the order they first appear."""
        return [key for key, _ in self.items()]

    def render(self) -> str:
        """The file text; an untouched file renders byte-identical to what was parsed."""
        if not self._lines:
            return ""
        text = "\n".join(line.text for line in self._lines)
        return text + "\n" if self._final_newline else text

"""Read, edit and write xl domain configurations (Xen 4.17 libxlu grammar), keeping layout.

Facts about the grammar, checked against the real libxlutil 4.17 (tests/test_xl_real.py):

- A statement is ``KEY = VALUE`` or ``KEY += VALUE``, ended by a newline, ``;`` or the end of
  the file. Blank lines and lone ``;`` are empty statements; two statements on one line need
  a ``;``. The value must start on the key's line.
- KEY is ``[a-z][._0-9a-z]*``. Whitespace is space and tab only: CR (so CRLF files), form
  feed, vertical tab and any other character outside strings and comments are errors.
- ``#`` starts a comment that runs to the newline and counts as one; so comments may sit
  inside lists, and a comment at the end of the file without its newline is an error.
- A VALUE is a string, a number or a list. Strings use ``'`` or ``"`` (same rules for both),
  cannot hold a raw newline but may hold other raw control characters. Escapes:
  ``\\" \\' \\\\ \\a \\b \\f \\n \\r \\t \\v``; libxlu rejects ``\\x..`` and silently drops octal
  ``\\NNN``, so both are refused here; any other escape is an error. NUL is refused anywhere
  (libxlu truncates at it), and so is a stray character that is the very last byte of the
  file (libxlu's lexer forgets to report it: ``a = 1 #`` without a newline passes there).
- A number token is ``[0-9][0-9a-fx]*`` and libxlu keeps it as text (reading it later with
  strtol base 0). Here a token strtol reads completely, within 0..LONG_MAX, becomes an int
  that remembers its text (an XlNumber: ``010`` == 8, ``0x10`` == 16); any other number token
  (``08``, ``1e3``, ``12abc``) stays a str, which is what xl sees when it reads a string.
- Lists: ``[ ]`` around comma-separated values, nested lists, an optional trailing comma,
  newlines and comments anywhere inside; ``[,]`` and ``[1,,2]`` are errors.
- The last setting of a key wins. ``+=`` after an earlier setting concatenates strings (no
  separator; numbers contribute their text) or lists; a list added to a string or vice versa
  is an error; with no earlier setting ``+=`` is ``=``. xl warns when a number is read from
  a ``+=`` setting.

set() writes ``key = value`` with strings in double quotes, lists as ``["a", "b"]`` and
numbers in decimal.
"""

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

from ..errors import XlSyntaxError

Value = Union[str, int, List["Value"]]

LONG_MAX = 2 ** 63 - 1

_KEY_RE = re.compile(r"[a-z][._0-9a-z]*")
_NUMBER_RE = re.compile(r"[0-9][0-9a-fx]*")
_STRING_RE = {q: re.compile(q + r"(?:[^" + q + r"\\\n]|\\.)*" + q) for q in ("'", '"')}
_STRTOL_RE = re.compile(r"0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*")
_READ_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b", "f": "\f",
                 "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_WRITE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\a": "\\a", "\b": "\\b", "\f": "\\f",
                  "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


class _Error(Exception):
    """A parse error at a line, before it is given its source name."""

    def __init__(self, line: int, what: str) -> None:
        super().__init__(what)
        self.line = line
        self.what = what


class XlNumber(int):
    """An int read from an xl number token; *text* is the token as written (``010``)."""

    text: str

    def __new__(cls, value: int, text: Optional[str] = None) -> "XlNumber":
        obj = super().__new__(cls, value)
        obj.text = str(value) if text is None else text
        return obj

    def __getnewargs__(self) -> Tuple[int, str]:  # keeps copy/pickle working
        return (int(self), self.text)


class _Token(NamedTuple):
    kind: str      # ident number string = += [ ] , ; newline eof
    text: str
    start: int
    end: int
    line: int


@dataclass
class Statement:
    """One assignment as parsed: ``key op value`` on line *lineno*, from ``text[span]``."""

    key: str
    op: str
    value: Value
    lineno: int
    span: Tuple[int, int] = field(default=(0, 0), compare=False, repr=False)


def _tokenize(text: str) -> List[_Token]:
    if "\0" in text:
        raise _Error(text.count("\n", 0, text.index("\0")) + 1, "NUL character")
    tokens: List[_Token] = []
    pos, line, size = 0, 1, len(text)
    while pos < size:
        ch = text[pos]
        if ch in " \t":
            pos += 1
            continue
        if ch == "\n" or ch == "#":
            end = text.find("\n", pos)
            if end < 0:
                raise _Error(line, "comment at end of file without a final newline")
            tokens.append(_Token("newline", text[pos:end + 1], pos, end + 1, line))
            pos, line = end + 1, line + 1
            continue
        if ch == "+" and text.startswith("+=", pos):
            match_end, kind = pos + 2, "+="
        elif ch in "=[],;":
            match_end, kind = pos + 1, ch
        elif "a" <= ch <= "z":
            match_end, kind = _KEY_RE.match(text, pos).end(), "ident"
        elif "0" <= ch <= "9":
            match_end, kind = _NUMBER_RE.match(text, pos).end(), "number"
        elif ch in _STRING_RE:
            match = _STRING_RE[ch].match(text, pos)
            if match is None:
                raise _Error(line, "unterminated string (strings end on their line)")
            match_end, kind = match.end(), "string"
        elif ch == "\r":
            raise _Error(line, "carriage return: xl accepts only \\n line ends")
        else:
            hint = " (keys are lower case)" if "A" <= ch <= "Z" else ""
            raise _Error(line, f"unexpected character {ch!r}{hint}")
        tokens.append(_Token(kind, text[pos:match_end], pos, match_end, line))
        pos = match_end
    last_line = line - 1 if text.endswith("\n") else line    # the file's last line
    tokens.append(_Token("eof", "", size, size, last_line))
    return tokens


def _dequote(token: _Token) -> str:
    out: List[str] = []
    body = token.text[1:-1]
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _READ_ESCAPES:
            out.append(_READ_ESCAPES[nxt])
        elif nxt == "x":
            raise _Error(token.line, "\\x escapes in strings are not supported by xl")
        elif "0" <= nxt <= "7":
            raise _Error(token.line, "octal escapes in strings are not supported by xl")
        else:
            raise _Error(token.line, "invalid escape %r in a string" % ("\\" + nxt))
        i += 2
    return "".join(out)


def _number(text: str) -> Value:
    if _STRTOL_RE.fullmatch(text):
        base = 16 if text.startswith("0x") else 8 if text.startswith("0") else 10
        value = int(text, base)
        if value <= LONG_MAX:
            return XlNumber(value, text)
    return text


def _describe(token: _Token) -> str:
    if token.kind == "eof":
        return "end of file"
    if token.kind == "newline":
        return "a comment" if token.text.startswith("#") else "end of line"
    text = token.text if len(token.text) <= 30 else token.text[:27] + "..."
    return repr(text)


class _Parser:
    """Recursive descent over the tokens of one document or one value."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def skip_newlines(self) -> None:
        while self.peek().kind == "newline":
            self.pos += 1

    def document(self) -> List[Statement]:
        statements = []
        while self.peek().kind != "eof":
            token = self.take()
            if token.kind in ("newline", ";"):
                continue
            if token.kind != "ident":
                raise _Error(token.line, f"expected a key, found {_describe(token)}")
            statements.append(self.assignment(token))
            end = self.peek()
            if end.kind not in ("newline", ";", "eof"):
                raise _Error(end.line, f"expected end of line or ';' after the value of "
                                       f"{token.text!r}, found {_describe(end)}")
        return statements

    def assignment(self, key: _Token) -> Statement:
        op = self.take()
        if op.kind not in ("=", "+="):
            raise _Error(op.line, f"expected '=' or '+=' after {key.text!r}, "
                                  f"found {_describe(op)}")
        value = self.value(f" after '{key.text} {op.text}'")
        end = self.tokens[self.pos - 1].end
        return Statement(key.text, op.text, value, key.line, (key.start, end))

    def value(self, where: str) -> Value:
        token = self.take()
        if token.kind == "string":
            return _dequote(token)
        if token.kind == "number":
            return _number(token.text)
        if token.kind == "[":
            return self.list_rest(token)
        hint = " (strings must be quoted)" if token.kind == "ident" else ""
        raise _Error(token.line, f"expected a value{where} (a quoted string, a number or a "
                                 f"[list]), found {_describe(token)}{hint}")

    def list_rest(self, opening: _Token) -> List[Value]:
        items: List[Value] = []
        where = f" in the list opened on line {opening.line}"
        self.skip_newlines()
        while self.peek().kind != "]":
            items.append(self.value(where))
            self.skip_newlines()
            token = self.peek()
            if token.kind == ",":
                self.take()
                self.skip_newlines()
            elif token.kind != "]":
                raise _Error(token.line, f"expected ',' or ']'{where}, "
                                         f"found {_describe(token)}")
        self.take()
        return items


def _text_of(value: Value) -> str:
    return value.text if isinstance(value, XlNumber) else str(value)


class _Effective:
    """Folds statements in order with xl's semantics (last wins, += concatenates)."""

    def __init__(self) -> None:
        self.values: "OrderedDict[str, Value]" = OrderedDict()
        self.origin: Dict[str, str] = {}  # key -> "source:line" of its last setting

    def add(self, statement: Statement, source: str) -> None:
        where = f"{source}:{statement.lineno}"
        prev = self.values.get(statement.key)
        new = statement.value
        if statement.op == "+=" and prev is not None:
            if isinstance(prev, list) != isinstance(new, list):
                kinds = ("a list", "a string") if isinstance(new, list) else ("a string", "a list")
                raise XlSyntaxError(
                    f"{where}: '{statement.key} +=' adds {kinds[0]} to {kinds[1]} "
                    f"(set at {self.origin[statement.key]}); xl cannot do that")
            new = prev + new if isinstance(new, list) else _text_of(prev) + _text_of(new)
        self.values[statement.key] = _copy(new)
        self.origin[statement.key] = where


def _copy(value: Value) -> Value:
    return [_copy(item) for item in value] if isinstance(value, list) else value


def _parse_statements(text: str, source: str) -> List[Statement]:
    try:
        return _Parser(text).document()
    except _Error as err:
        raise XlSyntaxError(f"{source}:{err.line}: {err.what}") from None


class XlConfig:
    """One xl configuration document (guest.cfg or a guest.d fragment) with its layout.

    Make one with parse() or empty(); every edit re-parses the new text, so the statements
    always describe exactly what render() returns.
    """

    def __init__(self, text: str, source: str, statements: List[Statement]) -> None:
        self.source = source
        self._text = text
        self._statements = statements

    @classmethod
    def parse(cls, text: str, source: str = "guest.cfg") -> "XlConfig":
        """Parse *text*; raises XlSyntaxError("SOURCE:LINE: what") as xl would refuse it."""
        statements = _parse_statements(text, source)
        effective = _Effective()
        for statement in statements:
            effective.add(statement, source)
        return cls(text, source, statements)

    @classmethod
    def empty(cls, source: str = "guest.cfg") -> "XlConfig":
        """A document without any text."""
        return cls("", source, [])

    def statements(self) -> List[Statement]:
        """The assignments in document order."""
        return list(self._statements)

    def keys(self) -> List[str]:
        """Keys assigned, in order of first appearance."""
        return list(OrderedDict.fromkeys(s.key for s in self._statements))

    def get(self, key: str) -> Optional[Value]:
        """Effective value of *key* inside this document (+= applied), None if unset."""
        effective = _Effective()
        for statement in self._statements:
            if statement.key == key:
                effective.add(statement, self.source)
        return effective.values.get(key)

    def has(self, key: str) -> bool:
        """True if *key* is assigned (with = or +=)."""
        return any(s.key == key for s in self._statements)

    def set(self, key: str, value: Value) -> None:
        """Replace every assignment of *key* by one ``key = value`` where the first was.

        The first assignment's line keeps its comment; a new key goes at the end.
        """
        if not valid_key(key):
            raise XlSyntaxError(f"{self.source}: invalid xl key {key!r} "
                                "(keys are [a-z] followed by [a-z0-9._])")
        try:
            new = f"{key} = {format_value(value)}"
        except XlSyntaxError as err:
            raise err.prefixed(f"{self.source}: cannot set {key}") from None
        matching = [s for s in self._statements if s.key == key]
        if not matching:
            text = self._text
            if text and not text.endswith("\n"):
                text += "\n"
            self._reload(text + new + "\n")
            return
        start, end = matching[0].span
        self._reload(self._text[:start] + new + self._text[end:])
        while len([s for s in self._statements if s.key == key]) > 1:
            self._delete([i for i, s in enumerate(self._statements) if s.key == key][1])

    def remove(self, key: str) -> bool:
        """Remove every assignment (= and +=) of *key*; True if there was one.

        A statement alone on its line goes with its line (and that line's comment).
        """
        found = False
        while True:
            indexes = [i for i, s in enumerate(self._statements) if s.key == key]
            if not indexes:
                return found
            self._delete(indexes[0])
            found = True

    def render(self) -> str:
        """The document text; ends with a newline unless empty."""
        text = self._text
        return text + "\n" if text and not text.endswith("\n") else text

    def is_empty(self) -> bool:
        """True if the document has no statements (only comments or blank lines)."""
        return not self._statements

    def _reload(self, text: str) -> None:
        self._statements = _parse_statements(text, self.source)
        self._text = text

    def _delete(self, index: int) -> None:
        text, stmts = self._text, self._statements
        start, end = stmts[index].span
        if index + 1 < len(stmts) and "\n" not in text[end:stmts[index + 1].span[0]]:
            end = stmts[index + 1].span[0]          # `a = 1; b = 2`: drop `a = 1; `
        elif index > 0 and "\n" not in text[stmts[index - 1].span[1]:start]:
            start = stmts[index - 1].span[1]        # `b = 2; a = 1;`: drop `; a = 1;`
            scan = end
            while scan < len(text) and text[scan] in " \t;":
                scan += 1
                end = scan if text[scan - 1] == ";" else end
        else:                                       # alone: drop its whole line(s)
            start = text.rfind("\n", 0, start) + 1
            newline = text.find("\n", end)
            end = len(text) if newline < 0 else newline + 1
        self._reload(text[:start] + text[end:])

    def __repr__(self) -> str:
        return f"XlConfig(source={self.source!r}, keys={self.keys()!r})"


def merge(configs: Iterable[XlConfig]) -> "OrderedDict[str, Value]":
    """Effective configuration of *configs* read one after the other, as xl would.

    Keys keep their first-appearance order; raises XlSyntaxError naming the source and line
    of a ``+=`` that mixes a string and a list.
    """
    effective = _Effective()
    for config in configs:
        for statement in config.statements():
            effective.add(statement, config.source)
    return effective.values


def quote_string(text: str) -> str:
    """*text* as a double-quoted xl string; XlSyntaxError for characters xl cannot hold."""
    out = ['"']
    for ch in text:
        if ch in _WRITE_ESCAPES:
            out.append(_WRITE_ESCAPES[ch])
        elif ch < " " or ch == "\x7f" or "\ud800" <= ch <= "\udfff":
            kind = "a lone surrogate" if ch > "\x7f" else "a control character xl has no escape for"
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise XlSyntaxError(f"xl strings cannot hold U+{ord(ch):04X} ({kind}): {shown!r}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_value(value: Value) -> str:
    """xl syntax text of *value* (str, int 0..LONG_MAX, or list/tuple of values)."""
    if isinstance(value, bool):
        raise XlSyntaxError(f"xl has no booleans: write 1 or 0, not {value!r}")
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, int):
        if not 0 <= value <= LONG_MAX:
            raise XlSyntaxError(f"xl numbers are 0..{LONG_MAX}, not {value}")
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    raise XlSyntaxError(f"cannot write {type(value).__name__} {value!r} in xl syntax")


def parse_value(text: str) -> Value:
    """One value in xl syntax, e.g. ``512``, ``"console=hvc0"`` or ``["a", "b"]``."""
    try:
        parser = _Parser(text)
        value = parser.value("")
        parser.skip_newlines()
        if parser.peek().kind != "eof":
            raise _Error(0, f"unexpected {_describe(parser.peek())} after the value")
    except _Error as err:
        raise XlSyntaxError(f"invalid xl value {text!r}: {err.what}") from None
    return value


def valid_key(key: str) -> bool:
    """True if *key* is a name xl accepts on the left of ``=``."""
    return isinstance(key, str) and _KEY_RE.fullmatch(key) is not None

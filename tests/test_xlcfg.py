"""Unit and property tests of the xl configuration grammar (xenguest.xl.config, xenguest.xl.keys)."""

import copy
import pickle
import re
import string
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xenguest.errors import XenguestError, XlSyntaxError
from xenguest.xl.config import (
    LONG_MAX,
    Statement,
    XlConfig,
    XlNumber,
    format_value,
    merge,
    parse_value,
    quote_string,
    valid_key,
)
from xenguest.xl.keys import KNOWN_KEYS, is_known

ANCESTOR_DEFAULT = (
    "# Xen guest configuration\n"
    "memory = 1024\n"
    "vcpus = 1\n"
    'extra = "earlyprintk=xenboot console=hvc0 rw"\n'
    "\n"
    '#name = "guest"\n'
    '#root = "/dev/xvda2"\n'
    "#disk = ['phy:/dev/vg/guest,xvda,w']\n"
)


def parse(text, source="guest.cfg"):
    return XlConfig.parse(text, source)


def triples(config):
    return [(s.key, s.op, s.value) for s in config.statements()]


def syntax_error(text, source="guest.cfg"):
    with pytest.raises(XlSyntaxError) as info:
        XlConfig.parse(text, source)
    return str(info.value)


# --- grammar ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ('a = "x"\n', "x"),
    ("a = 'x'\n", "x"),
    ("a=1\n", 1),
    ("a\t=\t1\n", 1),
    ("  \ta = 1\n", 1),
    ("a = 1", 1),                                   # last statement without newline
    ('a = "x"', "x"),
    ("a = 1;", 1),
    ("a = 010\n", 8),
    ("a = 0x1f\n", 31),
    ("a = 0\n", 0),
    ("a = 00\n", 0),
    ("a = 9223372036854775807\n", LONG_MAX),
    ("a = 08\n", "08"),                             # not a number for strtol: text
    ("a = 1e3\n", "1e3"),
    ("a = 12abc\n", "12abc"),
    ("a = 0x\n", "0x"),
    ("a = 9223372036854775808\n", "9223372036854775808"),
    ("a = []\n", []),
    ("a = [\n]\n", []),
    ("a = [1,]\n", [1]),
    ('a = [1, "x", [2, []]]\n', [1, "x", [2, []]]),
    ("a = [[]]\n", [[]]),
    ('a = [ # first\n "x", # comment\n\n "y"\n , ]\n', ["x", "y"]),
    ("a = [1\n,2\n,]\n", [1, 2]),
    ("a.b_c.9 = 1\n", 1),
    ("a = 1 #c\n", 1),
    ('a = "x"#c\n', "x"),
    ("a = 1 #c\r\n", 1),                            # CR inside a comment is fine
    ('a = "#;[]=,"\n', "#;[]=,"),
])
def test_values(text, expected):
    config = parse(text)
    key = config.keys()[0]
    assert config.get(key) == expected
    assert type(config.get(key)) is type(expected) or isinstance(expected, int)


def test_number_keeps_its_text():
    value = parse("a = 0x10\nb = 010\n").get("b")
    assert value == 8 and isinstance(value, XlNumber) and value.text == "010"
    assert parse("a = 0x10\n").get("a").text == "0x10"
    assert copy.deepcopy(value).text == "010"
    assert pickle.loads(pickle.dumps(value)).text == "010"


@pytest.mark.parametrize("text, expected", [
    (r'a = "\"\'\\\a\b\f\n\r\t\v"' "\n", "\"'\\\a\b\f\n\r\t\v"),
    (r"a = '\"\'\\\a\b\f\n\r\t\v'" "\n", "\"'\\\a\b\f\n\r\t\v"),
    ("a = 'q\"q'\n", 'q"q'),
    ('a = "q\'q"\n', "q'q"),
    ('a = ""\n', ""),
    ("a = ''\n", ""),
    ('a = "tab\there"\n', "tab\there"),            # raw tab
    ('a = "x\ry"\n', "x\ry"),                      # raw CR inside a string is accepted
    ('a = "x\x01y\x7f"\n', "x\x01y\x7f"),          # so are other raw control characters
    ('a = "é ☃ 日本"\n', "é ☃ 日本"),
    ('a = "@/&\\\\ %$`!"\n', "@/&\\ %$`!"),
])
def test_strings(text, expected):
    assert parse(text).get("a") == expected


@pytest.mark.parametrize("text", ["", "\n", "   \n\t\n", ";\n", ";;", "# only\n", "\n\n;;\n",
                                  "#\n", "  "])
def test_documents_without_statements(text):
    config = parse(text)
    assert config.is_empty() and config.statements() == [] and config.keys() == []
    assert config.render() == (text if not text or text.endswith("\n") else text + "\n")


@pytest.mark.parametrize("text, line, what", [
    ("A = 1\n", 1, "unexpected character 'A' (keys are lower case)"),
    ("aB = 1\n", 1, "unexpected character 'B'"),
    ("_a = 1\n", 1, "unexpected character '_'"),
    ("a-b = 1\n", 1, "unexpected character '-'"),
    ("9a = 1\n", 1, "expected a key, found '9a'"),
    ("a = 1\r\n", 1, "carriage return"),
    ("a =\x0c1\n", 1, "unexpected character '\\x0c'"),
    ("a =\x0b1\n", 1, "unexpected character '\\x0b'"),
    ("x = 1\na = 1 # c", 2, "comment at end of file without a final newline"),
    ("# c", 1, "comment at end of file"),
    ("a =\n 1\n", 1, "expected a value after 'a =' (a quoted string, a number or a [list]), "
                     "found end of line"),
    ("a = # x\n1\n", 1, "found a comment"),
    ("a\n= 1\n", 1, "expected '=' or '+=' after 'a', found end of line"),
    ("x = 1\n\nb =\n", 3, "expected a value after 'b ='"),
    ("a = [,]\n", 1, "expected a value in the list opened on line 1"),
    ("a = [1,,2]\n", 1, "found ','"),
    ("a = [1 2]\n", 1, "expected ',' or ']' in the list opened on line 1, found '2'"),
    ("a = [1;2]\n", 1, "found ';'"),
    ("a = [1]\nb = [\n", 2, "in the list opened on line 2 (a quoted string, a number or a "
                            "[list]), found end of file"),
    ("a = [1,\n2\n", 2, "expected ',' or ']' in the list opened on line 1, found end of file"),
    ("a = [1]2\n", 1, "expected end of line or ';' after the value of 'a', found '2'"),
    ("a = 1 b = 2\n", 1, "after the value of 'a', found 'b'"),
    ('a = "x" "y"\n', 1, "found '\"y\"'"),
    ("a = b\n", 1, "found 'b' (strings must be quoted)"),
    ("a = true\n", 1, "(strings must be quoted)"),
    ("a = -1\n", 1, "unexpected character '-'"),
    ("a = +1\n", 1, "unexpected character '+'"),
    ("a = 1.5\n", 1, "unexpected character '.'"),
    ("a = 0x1F\n", 1, "unexpected character 'F'"),
    ("a = 1g\n", 1, "found 'g'"),
    ("a + = 1\n", 1, "unexpected character '+'"),
    ('a = "unterminated\n', 1, "unterminated string (strings end on their line)"),
    ('a = "x\ny"\n', 1, "unterminated string"),
    ('a = "x\\\n"\n', 1, "unterminated string"),
    ('a = "x\\"\n', 1, "unterminated string"),
    ('x = 1\na = "\\x41"\n', 2, "\\x escapes in strings are not supported by xl"),
    ('a = "\\101z"\n', 1, "octal escapes in strings are not supported by xl"),
    ("a = '\\0'\n", 1, "octal escapes"),
    ('a = "\\8"\n', 1, "invalid escape '\\\\8' in a string"),
    ('a = "\\q"\n', 1, "invalid escape '\\\\q'"),
    ('a = "\\ "\n', 1, "invalid escape '\\\\ '"),
    ('a = "\\\r"\n', 1, "invalid escape '\\\\\\r'"),
    ("é = 1\n", 1, "unexpected character 'é'"),
    ("a = 1\n\x00", 2, "NUL character"),
    ('a = "x\x00y"\n', 1, "NUL character"),
    ('a = [1]\na += "x"\n', 2, "'a +=' adds a string to a list (set at guest.d/net.cfg:1); "
                              "xl cannot do that"),
    ('a = "x"\n\na += [1]\n', 3, "'a +=' adds a list to a string (set at guest.d/net.cfg:1)"),
    ("b = 1\nb += [1]\n", 2, "adds a list to a string"),
])
def test_syntax_errors(text, line, what):
    message = syntax_error(text, "guest.d/net.cfg")
    assert message.startswith(f"guest.d/net.cfg:{line}: "), message
    assert what in message
    assert "\n" not in message


def test_syntax_error_is_a_user_error():
    with pytest.raises(XenguestError):
        parse("memory = lots\n")


# --- semantics: last wins, += ---------------------------------------------------------------

@pytest.mark.parametrize("text, key, expected", [
    ('a = "x"\na += "y"\n', "a", "xy"),
    ('a += "y"\n', "a", "y"),
    ("a += [1]\n", "a", [1]),
    ("a += 5\n", "a", 5),
    ('a = "x"; a += "y"; a += "z"\n', "a", "xyz"),
    ('a = "x"\nb = 1\na += " z"\n', "a", "x z"),
    ("a = [1]\na += [2]\n", "a", [1, 2]),
    ("a = [1]\na += [[2]]\n", "a", [1, [2]]),
    ("a = []\na += []\n", "a", []),
    ('a = "x"\na += ""\n', "a", "x"),
    ('a = [1]\na = "s"\na += "t"\n', "a", "st"),
    ("a = 1\na = 2\n", "a", 2),
    ('a = 1\na = "two"\n', "a", "two"),
    ("a = 5\na += 1\n", "a", "51"),               # numbers are text in libxlu
    ('a = "x"\na += 010\n', "a", "x010"),
    ("a = 0x10\na += 1\n", "a", "0x101"),
    ("a = 1\n", "b", None),
])
def test_get_applies_xl_semantics(text, key, expected):
    config = parse(text)
    assert config.get(key) == expected
    assert config.has(key) == (expected is not None)


def test_get_returns_a_copy():
    config = parse("vif = ['a']\n")
    config.get("vif").append("b")
    assert config.get("vif") == ["a"]


def test_keys_statements_and_linenos():
    config = parse('# c\nb = 1; a = "x"\n\nb += 2\nc = [\n1]\n')
    assert config.keys() == ["b", "a", "c"]
    assert config.statements() == [Statement("b", "=", 1, 2), Statement("a", "=", "x", 2),
                                   Statement("b", "+=", 2, 4), Statement("c", "=", [1], 5)]
    assert [s.lineno for s in config.statements()] == [2, 2, 4, 5]


def test_merge_concatenates_documents_in_order():
    base = parse(ANCESTOR_DEFAULT)
    kernel = parse('kernel = "files/kernel"\nextra += " quiet"\n', "guest.d/kernel.cfg")
    net = parse('vif = ["bridge=xenbr0"]\nmemory = 512\n', "guest.d/net.cfg")
    more = parse('vif += ["bridge=xenbr1"]\n', "guest.d/zz.cfg")
    merged = merge([base, kernel, net, more])
    assert isinstance(merged, OrderedDict)
    assert list(merged) == ["memory", "vcpus", "extra", "kernel", "vif"]
    assert merged["memory"] == 512
    assert merged["extra"] == "earlyprintk=xenboot console=hvc0 rw quiet"
    assert merged["vif"] == ["bridge=xenbr0", "bridge=xenbr1"]
    assert merge([]) == OrderedDict()
    assert net.get("vif") == ["bridge=xenbr0"]      # merging does not change documents


def test_merge_names_the_source_of_a_mismatch():
    base = parse('extra = "console=hvc0"\n')
    fragment = parse('# add\n\nextra += ["quiet"]\n', "guest.d/extra.cfg")
    with pytest.raises(XlSyntaxError) as info:
        merge([base, fragment])
    assert str(info.value) == ("guest.d/extra.cfg:3: 'extra +=' adds a list to a string "
                               "(set at guest.cfg:1); xl cannot do that")


# --- editing --------------------------------------------------------------------------------

def test_untouched_text_renders_byte_identically():
    text = ('# header\n\n  memory=010   # mem\nvcpus = 2 ; name = \'g\' ;\n'
            'disk = [ "a",   # one\n\t"b" ,\n]\nextra = "x"')
    config = parse(text)
    assert config.render() == text + "\n"
    config.set("vcpus", 4)
    assert config.render() == text.replace("vcpus = 2", "vcpus = 4") + "\n"


def test_set_replaces_first_and_removes_the_rest():
    config = parse('extra = "a" # kernel args\nname = "g"\nextra += " b"\n'
                   'vcpus = 1; extra += " c"; memory = 1\n')
    config.set("extra", "console=hvc0")
    assert config.render() == ('extra = "console=hvc0" # kernel args\nname = "g"\n'
                               "vcpus = 1; memory = 1\n")
    assert config.get("extra") == "console=hvc0"


def test_set_replaces_a_plus_equal_and_appends_new_keys():
    config = parse("# c\nextra += \"a\"\nmemory = 1")
    config.set("extra", "b")
    config.set("kernel", "files/kernel")
    config.set("vif", ["bridge=xenbr0", "mac=00:16:3e:00:00:01"])
    assert config.render() == ('# c\nextra = "b"\nmemory = 1\nkernel = "files/kernel"\n'
                               'vif = ["bridge=xenbr0", "mac=00:16:3e:00:00:01"]\n')


def test_set_on_an_empty_document():
    config = XlConfig.empty("guest.d/kernel.cfg")
    assert config.is_empty() and config.render() == "" and config.source == "guest.d/kernel.cfg"
    config.set("kernel", "files/kernel")
    assert config.render() == 'kernel = "files/kernel"\n'
    assert not config.is_empty()


@pytest.mark.parametrize("text, expected", [
    ("a = 1; b = 2\n", "b = 2\n"),
    ("b = 2; a = 1\n", "b = 2\n"),
    ("b = 2; a = 1;\n", "b = 2\n"),
    ("b = 2; a = 1 ; # c\n", "b = 2 # c\n"),
    ("b = 2 ; a = 1 # c\n", "b = 2 # c\n"),
    ("b = 2; a = 1; c = 3\n", "b = 2; c = 3\n"),
    ("a = 1; a += 2; b = 3\n", "b = 3\n"),
    ("b = 3; a = 1; a += 2\n", "b = 3\n"),
    ("# about a\na = 1 # trailing\nb = 2\n", "# about a\nb = 2\n"),
    ("b = 2\n  a = [\n 1, # x\n]  # y\nc = 3\n", "b = 2\nc = 3\n"),
    ("b = [1,\n2]; a = 1\n", "b = [1,\n2]\n"),
    ("b = 2\na = 1", "b = 2\n"),
    ("; a = 1 ;\nb = 2\n", "b = 2\n"),
    ("a = 1\n", ""),
])
def test_remove(text, expected):
    config = parse(text)
    assert config.remove("a") is True
    assert config.render() == expected
    assert not config.has("a")
    assert config.remove("a") is False
    assert parse(config.render()).statements() == config.statements()


def test_set_with_several_on_one_line():
    config = parse("a = 1; a = 2; a = 3 # three\nb = 1\n")
    config.set("a", 9)
    assert config.render() == "a = 9 # three\nb = 1\n"
    config = parse("b = 0; a = 1; c = 2; a += 3\n")
    config.set("a", [1])
    assert config.render() == "b = 0; a = [1]; c = 2\n"


@pytest.mark.parametrize("value, text", [
    ("console=hvc0 root=/dev/xvda", '"console=hvc0 root=/dev/xvda"'),
    ('a="b c"', r'"a=\"b c\""'),
    ("it's", '"it\'s"'),
    ("C:\\path", r'"C:\\path"'),
    ("@/&\\", r'"@/&\\"'),
    ("line1\nline2\ttab\r", r'"line1\nline2\ttab\r"'),
    ("\a\b\f\v", r'"\a\b\f\v"'),
    ("é ☃ 日本 \u0085", '"é ☃ 日本 \u0085"'),
    ("", '""'),
    (0, "0"),
    (512, "512"),
    (XlNumber(8, "010"), "8"),
    (LONG_MAX, str(LONG_MAX)),
    ([], "[]"),
    (["a", 1, ["b", []]], '["a", 1, ["b", []]]'),
    (("x", "y"), '["x", "y"]'),
])
def test_format_value(value, text):
    assert format_value(value) == text
    assert parse_value(text) == (list(value) if isinstance(value, tuple) else value)


@pytest.mark.parametrize("value, what", [
    ("a\x00b", "U+0000"),
    ("a\x01b", "U+0001"),
    ("\x1b[31m", "U+001B"),
    ("del\x7f", "U+007F"),
    ("\ud800", "U+D800"),
    (-1, "xl numbers are 0.."),
    (LONG_MAX + 1, "xl numbers are 0.."),
    (True, "no booleans"),
    (1.5, "cannot write float"),
    (None, "cannot write NoneType"),
    ({"a": 1}, "cannot write dict"),
    (["ok", "\x02"], "U+0002"),
])
def test_format_value_refuses(value, what):
    with pytest.raises(XlSyntaxError) as info:
        format_value(value)
    assert what in str(info.value)


def test_set_validates_before_editing():
    config = parse("extra = 'a'\n")
    with pytest.raises(XlSyntaxError) as info:
        config.set("extra", "bad\x1b")
    assert str(info.value).startswith("guest.cfg: cannot set extra: ")
    assert "U+001B" in str(info.value)
    for key in ("Extra", "1a", "", "a b", "a-b", "_a", "é"):
        with pytest.raises(XlSyntaxError, match="invalid xl key"):
            config.set(key, "x")
    assert config.render() == "extra = 'a'\n"


def test_quote_string():
    assert quote_string('say "hi"\\') == r'"say \"hi\"\\"'
    with pytest.raises(XlSyntaxError, match=re.escape("U+001F")):
        quote_string("\x1f")


@pytest.mark.parametrize("text, expected", [
    ("512", 512), ("0x200", 512), ('"x"', "x"), ("'x'", "x"), ("  [1, 'a',]  ", [1, "a"]),
    ('["a",\n "b"]', ["a", "b"]), ('"x"\n', "x"),
])
def test_parse_value(text, expected):
    assert parse_value(text) == expected


@pytest.mark.parametrize("text, what", [
    ("pvh", "found 'pvh' (strings must be quoted)"),
    ("", "found end of file"),
    ("1 2", "unexpected '2' after the value"),
    ('"a', "unterminated string"),
    ("[1", "expected ',' or ']' in the list opened on line 1, found end of file"),
    ("-1", "unexpected character '-'"),
    ("a = 1", "found 'a'"),
])
def test_parse_value_errors(text, what):
    with pytest.raises(XlSyntaxError) as info:
        parse_value(text)
    assert str(info.value).startswith(f"invalid xl value {text!r}: ")
    assert what in str(info.value)


def test_valid_key():
    for key in ("a", "memory", "a.b", "a_b9", "vif.default.script", "a."):
        assert valid_key(key)
    for key in ("", "A", "9a", "_a", "a-b", "a b", "é", "a\n", None, 1):
        assert not valid_key(key)


def test_known_keys():
    for key in ("name", "memory", "vcpus", "maxvcpus", "kernel", "ramdisk", "device_tree",
                "extra", "root", "cmdline", "disk", "vif", "type", "dtdev", "iomem", "irqs",
                "gic_version", "tee", "on_crash", "device_model_args_pv"):
        assert is_known(key), key
    for key in ("memroy", "xen_extra", "guest", "vifs", "Name"):
        assert not is_known(key)
    assert all(valid_key(key) for key in KNOWN_KEYS)
    assert isinstance(KNOWN_KEYS, frozenset) and len(KNOWN_KEYS) == 158


# --- properties -------------------------------------------------------------------------------

SPECIAL = list("\"'\\\n\t\r\a\b\f\v#;,[]=+@/&$`% ") + ["é", "☃", "日本", "\\x41", "\\012"]
PRINTABLE = st.characters(blacklist_categories=("Cs", "Cc"))


def texts(chunks):
    """Strings over a wide alphabet, rich in characters that matter to xl."""
    chunk = st.one_of(st.sampled_from(SPECIAL), st.text(PRINTABLE, max_size=8))
    return st.lists(chunk, max_size=chunks).map("".join)


NUMBERS = st.integers(min_value=0, max_value=LONG_MAX)
VALUES = st.recursive(st.one_of(texts(6), NUMBERS),
                      lambda inner: st.lists(inner, max_size=4), max_leaves=8)
# smaller values for whole documents, so that generating them stays fast
DOC_VALUES = st.recursive(st.one_of(texts(3), NUMBERS),
                          lambda inner: st.lists(inner, max_size=3), max_leaves=4)
KEYS = st.builds(str.__add__, st.sampled_from(string.ascii_lowercase),
                 st.text(string.ascii_lowercase + string.digits + "._", max_size=6))


@given(VALUES)
@settings(max_examples=60)
def test_format_parse_round_trip(value):
    assert parse_value(format_value(value)) == value


@given(st.characters(blacklist_categories=("Cs",)))
def test_quote_string_refuses_exactly_unwritable_characters(ch):
    writable = ch >= " " and ch != "\x7f" or ch in "\n\t\r\a\b\f\v"
    if writable:
        assert parse_value(quote_string(ch)) == ch
    else:
        with pytest.raises(XlSyntaxError):
            quote_string(ch)


def _literal(draw, value):
    """Random xl spelling of *value* (quote style, escapes, number base, list layout)."""
    if isinstance(value, list):
        parts = []
        for item in value:
            parts.append(_literal(draw, item) + draw(st.sampled_from(["", " ", "\n", " # c\n"])))
        sep = draw(st.sampled_from([",", ", ", " ,\n", ", # x\n"]))
        trailing = draw(st.sampled_from(["", ","])) if value else ""
        return "[" + draw(st.sampled_from(["", " ", "\n"])) + sep.join(parts) + trailing + "]"
    if isinstance(value, int):
        style = draw(st.sampled_from(["dec", "hex", "oct"]))
        if style == "hex":
            return hex(value)
        return "0" + oct(value)[2:] if style == "oct" and value else str(value)
    quote = draw(st.sampled_from(["'", '"']))
    raw_controls = draw(st.booleans())       # xl accepts raw control characters but \n
    out = []
    for ch in value:
        if ch in "\\" + quote or ch == "\n" or (ch in "\a\b\f\v\r\t" and not raw_controls):
            out.append(quote_string(ch)[1:-1] if ch != "'" else "\\'")
        else:
            out.append(ch)
    return quote + "".join(out) + quote


@st.composite
def documents(draw):
    """(text, expected statements) of a random document with varied layout."""
    pieces, expected = [], []
    for _ in range(draw(st.integers(0, 5))):
        filler = draw(st.sampled_from(["", "\n", "# comment ' \" [\n", "  \t\n", ";\n"]))
        key, op, value = draw(KEYS), draw(st.sampled_from(["=", "+="])), draw(DOC_VALUES)
        pieces.append(filler + key + draw(st.sampled_from(["", " ", "\t"])) + op + " "
                      + _literal(draw, value))
        pieces.append(draw(st.sampled_from(["\n", ";", "; ", " # end\n", ";\n"])))
        expected.append((key, op, value))
    text = "".join(pieces)
    if draw(st.booleans()) and text.endswith("\n") and not text.endswith("# end\n"):
        text = text[:-1]
    return text, expected


def _consistent(expected):
    """True if no += in *expected* mixes a list and a string (xl refuses those)."""
    last = {}
    for key, op, value in expected:
        if op == "+=" and key in last and isinstance(last[key], list) != isinstance(value, list):
            return False
        last[key] = value
    return True


@given(documents())
@settings(max_examples=60)
def test_random_documents_parse_render_parse(doc):
    text, expected = doc
    if not _consistent(expected):
        with pytest.raises(XlSyntaxError, match=r"\+=' adds a"):
            parse(text)
        return
    config = parse(text)
    assert triples(config) == expected
    rendered = config.render()
    assert rendered == (text if not text or text.endswith("\n") else text + "\n")
    assert triples(parse(rendered)) == expected


@given(documents(), KEYS, DOC_VALUES)
@settings(max_examples=40)
def test_random_edits_keep_other_statements(doc, key, value):
    text, expected = doc
    if not _consistent(expected):
        return
    config = parse(text)
    config.set(key, value)
    others = [t for t in expected if t[0] != key]
    after = triples(parse(config.render()))
    assert [t for t in after if t[0] != key] == others
    assert [t for t in after if t[0] == key] == [(key, "=", value)]
    assert config.get(key) == value
    config.remove(key)
    assert triples(parse(config.render())) == others


@given(st.lists(documents(), max_size=3))
@settings(max_examples=30)
def test_merge_matches_concatenation(docs):
    if not _consistent([t for _, exp in docs for t in exp]):
        return
    configs = [parse(text, f"guest.d/{i}.cfg") for i, (text, _) in enumerate(docs)]
    together = parse("".join(c.render() for c in configs))
    assert merge(configs) == OrderedDict((k, together.get(k)) for k in together.keys())


def test_string_alphabet_covers_printables():
    assert parse_value(format_value(string.printable)) == string.printable

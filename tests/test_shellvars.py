"""params.cfg / disk.cfg: read without executing, written so that sourcing runs nothing."""

import os
import shutil
import subprocess
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenguest.errors import ShellVarsError
from xenguest.shellvars import ShellVarFile, is_reserved, quote, valid_name

ANCESTOR_PARAMS = '# Xenguest image parameters\nGUEST_AUTOBOOT="1"\nXENGUEST_NETWORK_TYPE="bridge"\n'
ANCESTOR_DISK = 'DISK_SIZE="4000M"\nDISK_DEVICE=""\nDISK_PART1="4:ext4:rootfs.tar.gz"\n'

SHELLS = [cmd for cmd in (["sh"], ["bash"], ["busybox", "sh"]) if shutil.which(cmd[0])]
MARKER = "pwned"
DANGEROUS = [
    "'", '"', "\\", "!", "$", "`", ";", "&&", "|", "#", " ", "\t", "~", "*", "'\\''",
    f"$(touch {MARKER})", f"`touch {MARKER}`", f"\"; touch {MARKER}; \"", f"'; touch {MARKER}; '",
    "${HOME}", "$HOME", "$((1+1))", "\\$", "\\'", "é", "\u2028", "\x01", "\x7f", "\U0001f600",
]
VALUES = st.lists(
    st.one_of(
        st.sampled_from(DANGEROUS),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\0"),
    ),
    max_size=12,
).map("".join)


def parse(text: str, source: str = "params.cfg") -> ShellVarFile:
    return ShellVarFile.parse(text, source)


def source_in_shell(shell, text: str, key: str) -> bytes:
    """Source *text* with a real shell in a scratch directory, return $key, check no marker."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "params.cfg"), "w", encoding="utf-8") as out:
            out.write(text)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
        done = subprocess.run(
            shell + ["-c", f'. ./params.cfg && printf %s "${key}"'],
            cwd=tmp, env=env, capture_output=True, check=False,
        )
        assert not os.path.exists(os.path.join(tmp, MARKER)), "sourcing ran a command"
        assert done.returncode == 0 and done.stderr == b"", done.stderr
        return done.stdout


# -- reading ---------------------------------------------------------------------


def test_reads_ancestor_params_byte_identical():
    params = parse(ANCESTOR_PARAMS)
    assert params.items() == [("GUEST_AUTOBOOT", "1"), ("XENGUEST_NETWORK_TYPE", "bridge")]
    assert params.render() == ANCESTOR_PARAMS


def test_reads_ancestor_disk_cfg():
    disk = parse(ANCESTOR_DISK, "disk.cfg")
    assert disk.get("DISK_SIZE") == "4000M"
    assert disk.get("DISK_DEVICE") == ""
    assert disk.get("DISK_PART1") == "4:ext4:rootfs.tar.gz"
    assert disk.get("DISK_PART2") is None
    assert disk.keys() == ["DISK_SIZE", "DISK_DEVICE", "DISK_PART1"]


@pytest.mark.parametrize("line, value", [
    ("A=plain-1.2/x:y,z+w=v@h%", "plain-1.2/x:y,z+w=v@h%"),
    ("A=", ""),
    ("A=''", ""),
    ('A="a b"\'c d\'e', "a bc de"),
    ('A="\\$HOME \\` \\" \\\\ \\n"', '$HOME ` " \\ \\n'),
    ("A='$(id) `id` \\ \"'", '$(id) `id` \\ "'),
    ("A='it'\\''s'", "it's"),
    ("A=\\$x", "$x"),
    ('A="1"   # trailing comment', "1"),
    ("A=1\t", "1"),
    ("A= # empty then comment", ""),
    ("  A=indented", "indented"),
    ('A="unicode é ✓ !"', "unicode é ✓ !"),
])
def test_reads_values(line, value):
    assert parse(line + "\n").get("A") == value


def test_last_assignment_wins_and_order_of_first_appearance():
    params = parse("A=1\nB=2\nA=3\n")
    assert params.get("A") == "3"
    assert params.items() == [("A", "3"), ("B", "2")]


def test_comments_blank_lines_and_missing_final_newline_are_kept():
    text = "# head\n\n  # indented comment\nA=1 # note\n\nB='x'"
    assert parse(text).render() == text


@pytest.mark.parametrize("line, words", [
    ("A=$(touch /tmp/x)", ["command substitution", "run"]),
    ('A="$(touch /tmp/x)"', ["command substitution", "run"]),
    ("A=`touch /tmp/x`", ["backtick", "run"]),
    ('A="a`id`"', ["backtick", "run"]),
    ('A="$HOME"', ["'$'", "expand"]),
    ("A=$HOME", ["'$'", "expand"]),
    ("A=${HOME}", ["'$'", "expand"]),
    ("A=1;touch /tmp/x", ["';'"]),
    ("A=1&&id", ["'&'"]),
    ("A=1|id", ["'|'"]),
    ("A=(x)", ["'('"]),
    ("A=x>y", ["'>'"]),
    ("A=x<y", ["'<'"]),
    ("A=~root", ["'~'"]),
    ("A=1 id", ["run it as a command"]),
    ("A= id", ["run it as a command"]),
    ('A="unterminated', ["unterminated double quote"]),
    ("A='unterminated", ["unterminated single quote"]),
    ("A=x\\", ["next line"]),
    ("export A=1", ["'export' is not supported"]),
    ("A+=1", ["expected KEY=VALUE"]),
    ("1A=1", ["expected KEY=VALUE"]),
    ("touch /tmp/x", ["expected KEY=VALUE"]),
    ('A="1"\r', ["carriage return"]),
    ("\r", ["carriage return"]),
])
def test_refuses_unsafe_lines_with_file_and_line(line, words):
    with pytest.raises(ShellVarsError) as caught:
        parse(f"# header\nOK=1\n{line}\nB=2\n")
    message = str(caught.value)
    assert message.startswith("params.cfg:3: ")
    assert "\n" not in message
    for word in words:
        assert word in message


def test_refuses_multiline_double_quote_even_if_closed_later():
    with pytest.raises(ShellVarsError, match=r"^disk\.cfg:1: unterminated double quote"):
        ShellVarFile.parse('A="first\nsecond"\n', "disk.cfg")


def test_refuses_nul():
    with pytest.raises(ShellVarsError, match=r"^params\.cfg:2: .*NUL"):
        parse("A=1\nB='\0'\n")


# -- writing ---------------------------------------------------------------------


@pytest.mark.parametrize("value, written", [
    ("1", '"1"'),
    ("", '""'),
    ("a b 'c' é", "\"a b 'c' é\""),
    ("$(id)", "'$(id)'"),
    ("a\\b", "'a\\b'"),
    ('say "hi"', "'say \"hi\"'"),
    ("hi!", "'hi!'"),
    ("it's $x", "'it'\\''s $x'"),
])
def test_quote(value, written):
    assert quote(value) == written


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b", "\n"])
def test_quote_refuses_unwritable_values(value):
    with pytest.raises(ShellVarsError, match="cannot hold"):
        quote(value)


def test_set_refuses_bad_name_and_unwritable_value():
    params = parse(ANCESTOR_PARAMS)
    with pytest.raises(ShellVarsError, match="invalid variable name"):
        params.set("BAD-NAME", "1")
    with pytest.raises(ShellVarsError, match=r"^params\.cfg: X: .*newline"):
        params.set("X", "two\nlines")
    assert params.render() == ANCESTOR_PARAMS


def test_set_replaces_in_place_and_appends_new_keys():
    params = parse(ANCESTOR_PARAMS)
    params.set("GUEST_AUTOBOOT", "0")
    params.set("NEW", "v")
    assert params.render() == (
        '# Xenguest image parameters\nGUEST_AUTOBOOT="0"\n'
        'XENGUEST_NETWORK_TYPE="bridge"\nNEW="v"\n'
    )


def test_set_keeps_indent_and_trailing_comment_and_drops_duplicates():
    params = parse("# c\n  A=1 # first\nB=2\nA=3   # last\n")
    params.set("A", "x y")
    assert params.render() == '# c\nB=2\nA="x y"   # last\n'
    assert params.get("A") == "x y"


def test_set_on_file_without_final_newline():
    params = parse("A=1")
    params.set("B", "2")
    assert params.render() == 'A=1\nB="2"\n'


def test_remove_is_exact():
    params = parse(ANCESTOR_PARAMS + 'AUTOBOOT="x"\nA="1"\nA="2"\n')
    assert params.remove("AUTOBOOT") is True
    assert params.get("GUEST_AUTOBOOT") == "1"
    assert params.remove("A") is True
    assert params.get("A") is None
    assert params.remove("A") is False
    assert params.remove("GUEST") is False
    assert params.render() == ANCESTOR_PARAMS


def test_new_with_header():
    made = ShellVarFile.new("params.cfg", "Xenguest image parameters")
    made.set("GUEST_AUTOBOOT", "1")
    made.set("XENGUEST_NETWORK_TYPE", "bridge")
    assert made.render() == ANCESTOR_PARAMS
    assert ShellVarFile.new("x", "# kept\n\nplain").render() == "# kept\n#\n# plain\n"
    assert ShellVarFile.new("x").render() == ""


def test_names():
    assert valid_name("GUEST_AUTOBOOT") and valid_name("_x9")
    for bad in ("", "9A", "A-B", "A B", "A=", "É", "A\n"):
        assert not valid_name(bad)


@pytest.mark.parametrize("key", [
    "PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "CDPATH", "PS4", "HOME",
    "SHELL", "PYTHONPATH", "PYTHONHOME", "LD_PRELOAD", "LD_LIBRARY_PATH", "GCONV_PATH",
    "BASH_FUNC_foo%%", "XENGUEST_MANAGER_DIR",
])
def test_reserved(key):
    assert is_reserved(key)


@pytest.mark.parametrize("key", ["GUEST_AUTOBOOT", "XENGUEST_NETWORK_TYPE", "MYPATH", "HOMEDIR"])
def test_not_reserved(key):
    assert not is_reserved(key)


# -- properties: our reader and real shells agree, and nothing runs --------------


@settings(max_examples=200, deadline=None)
@given(value=VALUES)
def test_round_trip_through_reader_and_real_shells(value):
    params = parse(ANCESTOR_PARAMS)
    params.set("KEY", value)
    text = params.render()
    again = parse(text)
    assert again.get("KEY") == value
    assert again.get("GUEST_AUTOBOOT") == "1"
    for shell in SHELLS:
        assert source_in_shell(shell, text, "KEY") == value.encode("utf-8")


@settings(max_examples=100, deadline=None)
@given(first=VALUES, second=VALUES)
def test_replacing_a_value_keeps_the_rest(first, second):
    params = parse(ANCESTOR_PARAMS)
    params.set("KEY", first)
    params.set("KEY", second)
    params.set("GUEST_AUTOBOOT", "1")
    assert parse(params.render()).items() == [
        ("GUEST_AUTOBOOT", "1"), ("XENGUEST_NETWORK_TYPE", "bridge"), ("KEY", second)
    ]


def test_shell_sees_what_we_read_for_accepted_hand_written_lines():
    text = 'A="x\\$y \\` \\\\ \\n"\'$(no)\'\\;z # c\n'
    expected = parse(text).get("A")
    assert expected == "x$y ` \\ \\n$(no);z"
    for shell in SHELLS:
        assert source_in_shell(shell, text, "A") == expected.encode("utf-8")

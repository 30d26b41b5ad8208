"""oelint-adv over every recipe, class and conf file of the layer, with the checked-in
configuration (.oelint.cfg at the repository root: every suppressed rule has its reason)."""

import configparser
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER = os.path.join(ROOT, "meta-xenguest")
CONFIG = os.path.join(ROOT, ".oelint.cfg")


def layer_files():
    patterns = ("**/*.bb", "**/*.bbappend", "**/*.bbclass", "**/*.inc", "conf/*.conf")
    return sorted(f for p in patterns for f in glob.glob(os.path.join(LAYER, p), recursive=True))


@pytest.mark.parametrize("release", ["scarthgap", "wrynose"])
def test_layer_is_lint_clean(release):
    files = layer_files()
    assert any(f.endswith(".bbclass") for f in files) and any(f.endswith(".bb") for f in files)
    result = subprocess.run(
        [sys.executable, "-m", "oelint_adv", "--quiet", "--release", release,
         *files],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OELINT_CONFIG": CONFIG})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_every_suppression_has_a_reason():
    lines = open(CONFIG).read().splitlines()
    start = lines.index("suppress =") + 1
    block = []
    for line in lines[start:]:
        if not line.startswith(" "):
            break
        block.append(line.strip())
    rules = [i for i, line in enumerate(block) if not line.startswith("#")]
    assert rules
    for i in rules:
        assert i > 0 and block[i - 1].startswith("# ") and len(block[i - 1]) > 20, block[i]
    config = configparser.ConfigParser()
    config.read(CONFIG)
    assert config["oelint"]["constantmods"].strip() == "+.oelint.constants.json"


def test_inline_suppressions_have_a_reason():
    for path in layer_files():
        lines = open(path).read().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("# nooelint:"):
                assert i > 0 and lines[i - 1].startswith("# ") and "nooelint" not in lines[i - 1], \
                    f"{path}:{i + 1}: say why above the suppression"

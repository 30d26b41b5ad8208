"""The library runs inside BitBake's host Python and on targets: Python 3.8 or newer,
standard library only."""

import ast
import os
import subprocess
import sys

import pytest

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "meta-xenguest", "lib", "xenguest")


def library_files():
    for dirpath, _, filenames in os.walk(LIB):
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def test_library_needs_nothing_newer_than_python_3_8():
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from vermin.main import main; sys.exit(main())",
         "-t=3.8-", "--violations", "--no-tips",
         "--eval-annotations", LIB],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout


#: Standard library modules of Pythons newer than the one running the tests, imported
#: only where present (compression.zstd: Python 3.14).
NEWER_STDLIB = {"compression"}


@pytest.mark.parametrize("path", list(library_files()), ids=lambda p: os.path.relpath(p, LIB))
def test_library_imports_only_the_standard_library(path):
    stdlib = set(sys.stdlib_module_names) | NEWER_STDLIB
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in stdlib or top in ("xenguest", "bb", "oe"), (path, name)

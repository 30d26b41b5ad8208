"""The xenguest-tools recipe: target, native and nativesdk variants, fetched, unpacked and
installed by the real BitBake from the layer's own files."""

import ast
import hashlib
import os
import re
import stat
import subprocess
import sys

import pytest

import bitbake_env as be

RECIPE = os.path.join(be.LAYER, "recipes-tools", "xenguest-tools", "xenguest-tools_0.1.0.bb")
PACKAGE = os.path.join(be.LIB, "xenguest")

#: Where OE-core's python3 recipe packages each standard-library module
#: (meta/recipes-devtools/python/python3/python3-manifest.json).
PYTHON3_PACKAGES = {
    "abc": "core", "argparse": "core", "atexit": "core", "base64": "netclient", "bisect": "core",
    "bz2": "core", "codecs": "core", "collections": "core", "configparser": "core",
    "compression": "compression", "contextlib": "core", "copy": "core", "ctypes": "ctypes", "dataclasses": "core",
    "datetime": "datetime", "difflib": "difflib", "enum": "core", "errno": "core",
    "fcntl": "fcntl", "fnmatch": "core", "functools": "core", "getpass": "unixadmin",
    "glob": "core", "grp": "core", "gzip": "compression", "hashlib": "crypt", "heapq": "core",
    "hmac": "netclient", "io": "core", "ipaddress": "core", "itertools": "core", "json": "json",
    "locale": "core", "logging": "logging", "lzma": "core", "math": "core", "mmap": "mmap",
    "operator": "core", "os": "core", "pathlib": "core", "platform": "core", "pprint": "pprint",
    "pty": "terminal", "pwd": "core", "queue": "threading", "random": "math", "re": "core",
    "resource": "resource", "secrets": "netclient", "select": "core", "selectors": "core",
    "shlex": "shell", "shutil": "core", "signal": "core", "socket": "io", "stat": "core",
    "string": "stringold", "struct": "core", "subprocess": "core", "sys": "core",
    "tarfile": "compression", "tempfile": "io", "termios": "io", "textwrap": "core",
    "threading": "core", "time": "core", "traceback": "core", "types": "core", "typing": "core",
    "uuid": "netclient", "warnings": "core", "weakref": "core", "zlib": "core",
}


def layer_sources():
    """The library's .py files, relative to lib/."""
    found = []
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        found += [os.path.relpath(os.path.join(root, f), be.LIB)
                  for f in files if f.endswith(".py")]
    return sorted(found)


def stdlib_imports():
    """Top-level modules the library imports (BitBake's bb only exists at build time)."""
    names = set()
    for rel in layer_sources():
        tree = ast.parse(open(os.path.join(be.LIB, rel)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - {"xenguest", "bb", "__future__"}


@pytest.fixture(scope="module", params=["scarthgap", "wrynose"])
def env(request, tmp_path_factory):
    return be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")), series=request.param)


@pytest.fixture(scope="module")
def install(env):
    """Parse a variant and run its tasks up to do_install (once per variant and series)."""
    done = {}

    def run(variant):
        if variant not in done:
            d = env.parse(RECIPE, variant)
            env.run_until(RECIPE, d, "do_install")
            done[variant] = d
        return done[variant]
    return run


VARIANTS = {
    "": ("xenguest-tools", "python3", "/usr"),
    "native": ("xenguest-tools-native", "nativepython3", None),
    "nativesdk": ("nativesdk-xenguest-tools", "python3", None),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_install(install, variant):
    pn, interpreter, prefix = VARIANTS[variant]
    d = install(variant)
    assert d.getVar("PN") == pn
    if prefix:
        assert d.getVar("prefix") == prefix
    image = d.getVar("D")
    site = image + d.getVar("PYTHON_SITEPACKAGES_DIR")
    command = image + d.getVar("bindir") + "/xenguest-mkimage"
    # The same library as the layer's: every module, byte for byte, nothing else.
    installed = sorted(os.path.relpath(os.path.join(r, f), site)
                       for r, _, files in os.walk(os.path.join(site, "xenguest")) for f in files)
    assert installed == layer_sources()
    for rel in installed:
        with open(os.path.join(site, rel), "rb") as copy:
            assert copy.read() == open(os.path.join(be.LIB, rel), "rb").read()
        assert stat.S_IMODE(os.stat(os.path.join(site, rel)).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(command).st_mode) == 0o755
    lines = open(command).read().splitlines()
    assert lines[0] == f"#!{d.getVar('USRBINPATH')}/env {interpreter}"
    launcher = open(os.path.join(be.LAYER, "scripts", "xenguest-mkimage")).read()
    assert lines[1:] == launcher.splitlines()[1:]
    assert d.getVar("FILES:" + pn).split()[-1] == d.getVar("PYTHON_SITEPACKAGES_DIR") + "/xenguest"


def test_installed_command_runs(install, tmp_path):
    d = install("")
    image = d.getVar("D")
    site = image + d.getVar("PYTHON_SITEPACKAGES_DIR")
    command = image + d.getVar("bindir") + "/xenguest-mkimage"
    # Only the installed tree: the layer's lib/ must not be reachable.
    environ = {"PATH": os.environ["PATH"], "PYTHONPATH": site, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-I", "-c",
                             f"import sys; sys.path.insert(0, {site!r}); import xenguest; "
                             "print(xenguest.__file__)"], capture_output=True, text=True,
                            env=environ, check=True, cwd=str(tmp_path))
    assert result.stdout.startswith(site)
    result = subprocess.run([sys.executable, command, "--help"], capture_output=True, text=True,
                            env=environ, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "create" in result.stdout


def test_sources_are_the_layers_own_files(env):
    d = env.parse(RECIPE)
    entries = d.getVar("SRC_URI").split()
    assert all(e.startswith("file://") and e.endswith(";subdir=" + d.getVar("BP")) for e in entries)
    names = sorted(e[len("file://"):].split(";")[0] for e in entries)
    assert names == sorted(["LICENSE", "scripts/xenguest-mkimage"]
                           + [os.path.join("lib", rel) for rel in layer_sources()])
    checksums = [os.path.normpath(path) + ":" + found for path, found in
                 (c.rsplit(":", 1) for c in d.getVarFlag("do_fetch", "file-checksums").split())]
    assert os.path.join(be.LAYER, "lib", "xenguest", "operations", "__init__.py") + ":True" in checksums
    # Editing a module (as adding or removing one does) makes BitBake parse the recipe again;
    # Python's __pycache__ folders, written when the library is first imported, do not.
    depends = {path for path, _ in d.getVar("__depends", False) if path.startswith(PACKAGE)}
    assert depends == {os.path.join(be.LIB, rel) for rel in layer_sources()}


def test_license_is_checked_and_identical(env):
    d = env.parse(RECIPE)
    md5 = re.search(r"file://LICENSE;md5=([0-9a-f]+)", d.getVar("LIC_FILES_CHKSUM")).group(1)
    layer_license = open(os.path.join(be.LAYER, "LICENSE"), "rb").read()
    assert hashlib.md5(layer_license).hexdigest() == md5
    assert layer_license == open(os.path.join(be.ROOT, "LICENSE"), "rb").read()
    assert d.getVar("LICENSE") == "MIT"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_runtime_dependencies_cover_the_imports(env, variant):
    pn, _, _ = VARIANTS[variant]
    d = env.parse(RECIPE, variant)
    rdepends = set(d.getVar("RDEPENDS:" + pn).split())
    unknown = sorted(stdlib_imports() - set(PYTHON3_PACKAGES))
    assert not unknown, f"add these modules to PYTHON3_PACKAGES: {unknown}"
    prefix, suffix = {"": ("", ""), "native": ("", "-native"),
                      "nativesdk": ("nativesdk-", "")}[variant]
    needed = {f"{prefix}python3-{PYTHON3_PACKAGES[m]}{suffix}" for m in stdlib_imports()}
    assert needed <= rdepends
    assert d.getVar("BBCLASSEXTEND").split() == ["native", "nativesdk"]

"""The testimage case meta-xenguest/lib/oeqa/runtime/cases/xenguest_host.py.

OE-core's oeqa framework is not available here, so:

* the module is compiled, checked for Python 3.8 (vermin) and, when pyflakes is
  installed, linted; every test method carries OE's decorators and its
  OETestDepends names resolve;
* it is discovered the way testimage's loader discovers cases (unittest
  discovery in the cases folder) while the layer's ``xenguest`` library is
  imported, as BitBake's addpylib imports it in every process;
* its tests run, in their OETestDepends order, against a stand-in target that
  runs the commands here, with the real xenguest-manager (its launcher from the
  layer), the example guest's real init scripts, and the ``xl`` stand-in of the
  manager tests (manager_util.FakeXl) in place of a hypervisor.  The oeqa
  modules the case imports are small stand-ins written by the test.
"""

import ast
import importlib
import os
import re
import subprocess
import sys
import unittest

import pytest

import xenguest
from xenguest import operations
from manager_util import LAUNCHER, FakeXl
from kas_env import ROOT

LAYER = os.path.join(ROOT, "meta-xenguest")
CASES = os.path.join(LAYER, "lib", "oeqa", "runtime", "cases")
MODULE = os.path.join(CASES, "xenguest_host.py")
RECIPE = os.path.join(LAYER, "recipes-guests", "images", "xenguest-image-minimal.bb")
GUEST = "xenguest-image-minimal"

STAND_IN_OEQA = {
    "oeqa/__init__.py": "",
    "oeqa/core/__init__.py": "",
    "oeqa/core/decorator/__init__.py": "",
    "oeqa/core/decorator/depends.py": '''\
class OETestDepends:
    """Stand-in: records the test IDs a test depends on."""
    def __init__(self, depends):
        self.depends = list(depends)

    def __call__(self, func):
        func.oeqa_depends = self.depends
        return func
''',
    "oeqa/runtime/__init__.py": "",
    "oeqa/runtime/case.py": '''\
import unittest


class OERuntimeTestCase(unittest.TestCase):
    """Stand-in: the target is a class attribute, as testimage sets it."""
    target = None
''',
    "oeqa/runtime/decorator/__init__.py": "",
    "oeqa/runtime/decorator/package.py": '''\
class OEHasPackage:
    """Stand-in: records the packages a test needs in the image."""
    def __init__(self, need_pkgs):
        self.need_pkgs = [need_pkgs] if isinstance(need_pkgs, str) else list(need_pkgs)

    def __call__(self, func):
        func.oeqa_packages = self.need_pkgs
        return func
''',
}


def write(path, data, mode=0o644):
    """Write *data* (text or bytes) to *path*, making its folder; return the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


def decorators(function):
    """The decorator calls of *function*: name -> first argument (a literal)."""
    found = {}
    for deco in function.decorator_list:
        if isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name):
            found[deco.func.id] = ast.literal_eval(deco.args[0])
    return found


def test_module_compiles_for_python_3_8():
    with open(MODULE, encoding="utf-8") as f:
        compile(f.read(), MODULE, "exec")
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from vermin.main import main; sys.exit(main())",
         "-t=3.8-", "--violations", "--no-tips", MODULE],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout


def test_module_is_clean_for_pyflakes():
    api = pytest.importorskip("pyflakes.api")
    reporter = pytest.importorskip("pyflakes.reporter")
    import io
    out = io.StringIO()
    with open(MODULE, encoding="utf-8") as f:
        warnings = api.check(f.read(), MODULE, reporter.Reporter(out, out))
    assert warnings == 0, out.getvalue()


def test_every_test_method_follows_the_oeqa_conventions():
    with open(MODULE, encoding="utf-8") as f:
        tree = ast.parse(f.read(), MODULE)
    imports = {(node.module, alias.name) for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert ("oeqa.runtime.case", "OERuntimeTestCase") in imports
    assert ("oeqa.core.decorator.depends", "OETestDepends") in imports
    assert ("oeqa.runtime.decorator.package", "OEHasPackage") in imports
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [b.id for b in cls.bases] == ["OERuntimeTestCase"]
    tests = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    assert len(tests) == 5
    names = {t.name for t in tests}
    module = os.path.splitext(os.path.basename(MODULE))[0]
    for test in tests:
        decos = decorators(test)
        assert set(decos) == {"OETestDepends", "OEHasPackage"}, test.name
        assert decos["OEHasPackage"] == ["xenguest-manager"], test.name
        assert ast.get_docstring(test), test.name
        for dep in decos["OETestDepends"]:
            mod, clsname, method = dep.split(".")
            if mod == module:
                assert clsname == cls.name and method in names, dep
            else:
                assert dep == "ssh.SSHTest.test_ssh", dep
    assert decorators(tests[0])["OETestDepends"] == ["ssh.SSHTest.test_ssh"]


@pytest.fixture
def oeqa(tmp_path, monkeypatch):
    """The stand-in oeqa modules on sys.path; they and the case module are forgotten after."""
    for rel, text in STAND_IN_OEQA.items():
        write(str(tmp_path / "oeqa-stand-in" / rel), text)
    monkeypatch.syspath_prepend(str(tmp_path / "oeqa-stand-in"))
    yield
    for name in list(sys.modules):
        if name == "xenguest_host" or name == "oeqa" or name.startswith("oeqa."):
            del sys.modules[name]
    if CASES in sys.path:  # unittest discovery puts the cases folder first
        sys.path.remove(CASES)
    importlib.invalidate_caches()


def discover():
    """The test classes testimage's loader finds in the cases folder."""
    assert xenguest.__file__.startswith(os.path.join(LAYER, "lib"))  # imported, as in BitBake
    suite = unittest.TestLoader().discover(CASES, pattern="*.py", top_level_dir=CASES)
    cases = []

    def walk(s):
        for item in s:
            if isinstance(item, unittest.TestSuite):
                walk(item)
            else:
                cases.append(item)
    walk(suite)
    return cases


def test_testimage_discovery_finds_the_case_next_to_the_xenguest_library(oeqa):
    cases = discover()
    failed = [c for c in cases if type(c).__name__ in ("_FailedTest", "ModuleImportFailure")]
    assert not failed, [str(c) for c in failed]
    ids = sorted(c.id() for c in cases)
    assert ids == sorted(f"xenguest_host.XenguestHostTest.{name}" for name in (
        "test_bundled_guests_run", "test_init_scripts_ran_in_order",
        "test_nat_guests_get_an_address_and_answer", "test_stop_and_start",
        "test_remove_and_autostart_again"))


class LocalTarget:
    """Runs the commands of the tests here, like testimage's ssh target (output merged)."""

    def __init__(self, env):
        self.env = env
        self.commands = []

    def run(self, command, timeout=None):
        self.commands.append(command)
        result = subprocess.run(["sh", "-c", command], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True,
                                timeout=timeout or 300)
        return result.returncode, result.stdout.rstrip("\n")


def example_image(path, tmp_path):
    """The example guest's init scripts (from its recipe), in a guest image."""
    with open(RECIPE, encoding="utf-8") as f:
        recipe = f.read()
    edits = [("--xen-kernel", write(str(tmp_path / "Image"), b"kernel")),
             ("--set-param", "XENGUEST_NETWORK_TYPE=none")]
    for variable, option in (("XENGUEST_IMAGE_INIT_PRE", "--init-pre"),
                             ("XENGUEST_IMAGE_INIT", "--init-script"),
                             ("XENGUEST_IMAGE_INIT_POST", "--init-post")):
        value = re.search(rf'^{variable} = "(.*)"$', recipe, re.M).group(1)
        for entry in value.split():
            assert entry.startswith("file://"), entry
            script = os.path.join(os.path.dirname(RECIPE), GUEST, entry[len("file://"):])
            edits.append((option, script))
    operations.create(path, edits)
    return path


def ordered(cases):
    """The cases in their OETestDepends order (as OE's loader orders them)."""
    by_name = {c._testMethodName: c for c in cases}
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for dep in getattr(getattr(by_name[name], name), "oeqa_depends", []):
            if dep.split(".")[-1] in by_name:
                visit(dep.split(".")[-1])
        order.append(by_name[name])
    for name in sorted(by_name):
        visit(name)
    return order


def test_the_case_passes_on_a_host_with_the_real_manager(oeqa, tmp_path):
    bin_dir = tmp_path / "bin"
    xl = FakeXl(str(bin_dir))
    write(str(bin_dir / "xenguest-manager"),
          f'#!/bin/sh\nexec {sys.executable} {LAUNCHER} "$@"\n', 0o755)
    guests, state = tmp_path / "guests", tmp_path / "state"
    guests.mkdir()
    example_image(str(guests / f"{GUEST}.xenguest"), tmp_path)
    log = str(tmp_path / "manager.log")
    config = write(str(tmp_path / "manager.conf"), (  # docs/manager.md
        f"[manager]\nguest_folders = {guests}\nstate_folder = {state}\nhost_scripts =\n"
        f"stop_timeout = 5\n[log]\nfile = {log}\nlevel = info\n[commands]\nxl = {xl.path}\n"))
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
               XENGUEST_MANAGER_CONFIG=config)
    target = LocalTarget(env)
    assert target.run("xenguest-manager autostart")[0] == 0  # what the boot does

    [case_class] = {type(c) for c in discover()}
    local = type("LocalXenguestHostTest", (case_class,), {
        "target": target, "guest_folder": str(guests), "state_folder": str(state / "guests"),
        "log_file": log, "boot_wait": 5,
        "poll_interval": 0.1})
    for method in ("test_bundled_guests_run", "test_init_scripts_ran_in_order",
                   "test_nat_guests_get_an_address_and_answer", "test_stop_and_start",
                   "test_remove_and_autostart_again"):
        assert getattr(case_class, method).oeqa_packages == ["xenguest-manager"]
    cases = ordered([local(c._testMethodName) for c in discover()])
    assert [c._testMethodName for c in cases] == [
        "test_bundled_guests_run", "test_init_scripts_ran_in_order",
        "test_nat_guests_get_an_address_and_answer", "test_stop_and_start",
        "test_remove_and_autostart_again"]
    result = unittest.TestResult()
    unittest.TestSuite(cases).run(result)
    problems = [f"{case.id()}: {text}" for case, text in result.failures + result.errors]
    assert result.wasSuccessful(), "\n".join(problems)
    assert result.testsRun == 5
    # No NAT network here (no hypervisor to run vif-xenguest): the guest has none, and
    # the network case says so instead of passing on nothing.
    assert [(case._testMethodName, reason) for case, reason in result.skipped] == [
        ("test_nat_guests_get_an_address_and_answer",
         "no running guest on the NAT network (XENGUEST_NETWORK_TYPE=nat)")]

    # The tests did what they say, and left the guest running as the boot did.
    assert any(c.startswith("xenguest-manager stop ") for c in target.commands)
    assert any(c.startswith("xenguest-manager remove ") for c in target.commands)
    assert list(xl.domains()) == [GUEST]
    with open(log, encoding="utf-8") as f:
        text = f.read()
    assert f"xenguest {GUEST}: created as domain" in text  # the example's init.d trace
    assert text.count(f"guest {GUEST} removed") == 1

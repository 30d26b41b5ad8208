"""The library's structure: floors of packages, no upward import, no import cycle.

Each package's ``__init__`` docstring says what it may import, in a line
``Imports: ...`` naming packages (``the foundations`` are the modules of
``xenguest`` itself).  Every import of every module, those inside functions
included, is read here with ``ast`` and held to its package's line; and the
modules' imports together must have no cycle.
"""

import ast
import os
import re
from typing import Dict, List, Set

import pytest

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "meta-xenguest", "lib")
PACKAGE = os.path.join(LIB, "xenguest")
FOUNDATIONS = "the foundations"
#: The front ends no lower package may import.
TOP = ("cli", "manager", "bitbake")


def modules() -> Dict[str, str]:
    """Dotted module name (``xenguest.format.image``) -> path."""
    found = {}
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), LIB)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                found[".".join(rel)] = os.path.join(folder, name)
    return found


MODULES = modules()


def package_of(module: str) -> str:
    """The subpackage of *module* (``format``), or "" for the foundations."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and
                                           os.path.isdir(os.path.join(PACKAGE, parts[1]))) else ""


def imports_of(module: str) -> Set[str]:
    """The xenguest modules *module* imports (a package import counts as its __init__)."""
    path = MODULES[module]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    here = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" for a in node.names] + [source]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def allowed_packages(package: str) -> Set[str]:
    """The packages the ``Imports:`` line of *package*'s docstring names."""
    init = os.path.join(PACKAGE, package, "__init__.py") if package else \
        os.path.join(PACKAGE, "__init__.py")
    with open(init, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    match = re.search(r"^Imports: (.*?)(?:\n\n|\Z)", doc, re.M | re.S)
    assert match, f"{init}: its docstring has no 'Imports:' line"
    text = match.group(1).replace("\n", " ")
    names = {FOUNDATIONS} if FOUNDATIONS in text else set()
    names |= {p for p in re.findall(r"\b([a-z]+)\b", text)
              if os.path.isdir(os.path.join(PACKAGE, p))}
    return names


def packages() -> List[str]:
    return [""] + sorted(d for d in os.listdir(PACKAGE)
                         if os.path.isfile(os.path.join(PACKAGE, d, "__init__.py")))


@pytest.mark.parametrize("package", packages(), ids=lambda p: p or "foundations")
def test_a_package_imports_only_what_its_docstring_allows(package):
    allowed = allowed_packages(package)
    if package:
        assert not allowed & {package}, "a package need not name itself"
    wrong = []
    for module in sorted(m for m in MODULES if package_of(m) == package):
        for target in sorted(imports_of(module)):
            other = package_of(target)
            if other == package:
                continue
            if (other or FOUNDATIONS) not in allowed:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_lower_package_imports_a_front_end():
    for package in packages():
        if package in TOP:
            continue
        assert not allowed_packages(package) & set(TOP), package
    assert "cli" not in allowed_packages("manager") | allowed_packages("bitbake")


def test_the_modules_have_no_import_cycle():
    graph = {m: imports_of(m) for m in MODULES}
    # a package's __init__ is imported with any of its modules: not an edge back
    state: Dict[str, int] = {}
    path: List[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_checker_sees_relative_imports_inside_functions():
    """Guard the guard: a known lazy import is found."""
    assert "xenguest.manager.deploy" in imports_of("xenguest.manager.guests")

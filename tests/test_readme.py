"""The README's commands work as written, run literally in a copy of this checkout.

The quick start runs whole (a virtual environment, ``pip install .``, the image
commands).  The test command runs with ``--collect-only`` added (the README says
extra arguments go to pytest): run whole it would run this test again; CI runs
it whole, and ``.ci/run`` must run exactly that command.
"""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def section_blocks(heading: str):
    """The ```sh blocks of the README section *heading*."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def run_script(script: str, cwd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600)


@pytest.fixture
def checkout(tmp_path):
    """A copy of this checkout's files (tracked and not ignored), without its history."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT,
                            stdout=subprocess.PIPE, check=True).stdout.decode()
    copy = tmp_path / "checkout"
    for rel in filter(None, listed.split("\0")):
        source = os.path.join(ROOT, rel)
        if os.path.isfile(source):
            os.makedirs(copy / os.path.dirname(rel), exist_ok=True)
            shutil.copy2(source, copy / rel)
    return str(copy)


def test_quick_start_runs_as_written(checkout):
    blocks = section_blocks("Quick start: build a guest image")
    assert len(blocks) == 2
    assert "/boot/" not in blocks[0]  # nothing the machine may not have
    result = run_script("\n".join(blocks), checkout)
    assert result.returncode == 0, result.stdout
    assert "guest.xenguest: valid (0 error(s), 0 warning(s))" in result.stdout
    assert re.search(r"^memory = 1024$", result.stdout, re.M), result.stdout


def test_test_command_is_what_ci_runs(checkout):
    blocks = section_blocks("Run the tests")
    assert len(blocks) == 1
    command = blocks[0].strip()
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        assert re.search(rf"^exec {re.escape(command)}$", f.read(), re.M)
    result = run_script(f"{command} --collect-only -q -p no:cacheprovider", checkout)
    assert result.returncode == 0, result.stdout
    assert re.search(r"^\d+ tests collected", result.stdout, re.M), result.stdout
    assert "tests/test_readme.py::test_quick_start_runs_as_written" in result.stdout

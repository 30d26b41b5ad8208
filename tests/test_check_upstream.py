"""tools/check-upstream, offline: its pins and checkout steps against the stand-ins.

The real check needs the upstream repositories and an unprivileged user (it
runs bitbake); CI has neither.  What runs here is the script itself on the
project's stand-in upstream repositories (tests/kas_env.py): it finds the
mirrors from --mirrors, checks every lock-file pin on its branch, runs the real
``kas checkout`` on the committed state of a meta-xenguest checkout, and turns
what it found into its summary line and exit status.
"""

import os
import re
import subprocess
import sys

import pytest

from kas_env import ROOT, _git, kas_env, make_upstreams, mirror_path, RELEASES

SCRIPT = os.path.join(ROOT, "tools", "check-upstream")
LOCKS = {"wrynose": "xenguest.lock.yml", "scarthgap": "xenguest-scarthgap.lock.yml"}


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("upstreams"))
    return os.path.join(root, "mirrors"), make_upstreams(root)


def check_upstream(args, tmp_path, mirrors):
    """Run the script as a user would, in a clean environment."""
    env = kas_env(mirrors)
    del env["KAS_PREMIRRORS"]  # the script makes its own from --mirrors
    return subprocess.run(
        [sys.executable, SCRIPT, "--mirrors", mirrors, "--work", str(tmp_path / "work")] + args,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        timeout=120)


def project_pinned_to(root, commits):
    """A meta-xenguest checkout whose committed lock files pin the stand-ins' commits.

    Its working tree is then made dirty (the locks pin nothing valid): the
    check must see only what is committed.
    """
    project = os.path.join(root, "project")
    os.makedirs(os.path.join(project, "kas"))
    subprocess.run(["cp", "-a", os.path.join(ROOT, "kas"), project], check=True)
    os.symlink(os.path.join(ROOT, "meta-xenguest"), os.path.join(project, "meta-xenguest"))
    for release, lock in LOCKS.items():
        lines = ["header:", "  version: 14", "overrides:", "  repos:"]
        for repo_id in RELEASES[release]():
            lines += [f"    {repo_id}:", f'      commit: "{commits[(release, repo_id)]}"']
        with open(os.path.join(project, "kas", lock), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    _git(["init", "-q"], project)
    _git(["add", "-A"], project)
    _git(["commit", "-q", "-m", "pinned to the stand-ins"], project)
    for lock in LOCKS.values():
        with open(os.path.join(project, "kas", lock), "a", encoding="utf-8") as f:
            f.write("  not: [valid\n")
    return project


def test_pins_and_checkout_pass_on_the_committed_state(upstreams, tmp_path):
    mirrors, commits = upstreams
    project = project_pinned_to(str(tmp_path), commits)
    result = check_upstream(["--project", project, "--steps", "pins,checkout"],
                            tmp_path, mirrors)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == ("check-upstream: wrynose ok (pins, checkout); "
                         "scarthgap ok (pins, checkout)")
    assert "check-upstream: scarthgap pins ok" in result.stdout
    work = tmp_path / "work"
    for release in LOCKS:
        build = work / release / "build" / "conf"
        assert (build / "auto.conf").read_text() == 'BB_NO_NETWORK = "1"\n'
        assert "meta-xenguest/meta-xenguest" in (build / "bblayers.conf").read_text()
    core = _git(["rev-parse", "HEAD"], str(work / "wrynose" / "openembedded-core"))
    assert core == commits[("wrynose", "openembedded-core")]
    summary = (work / "logs" / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("wrynose pins: ok (")
    assert summary[-1] == lines[-1]


def test_pins_not_on_their_branch_fail_the_check(upstreams, tmp_path):
    """This project's real pins are not in the stand-ins: every one is reported."""
    mirrors, _ = upstreams
    result = check_upstream(["--steps", "pins,checkout", "--release", "scarthgap"],
                            tmp_path, mirrors)
    assert result.returncode == 1, result.stdout + result.stderr
    line = result.stdout.splitlines()[-1]
    assert line.startswith("check-upstream: scarthgap FAILED (pins: ")
    for repo_id, url in (("poky", "https://git.yoctoproject.org/poky"),
                         ("meta-virtualization",
                          "https://git.yoctoproject.org/meta-virtualization")):
        assert f"{repo_id} " in line
        assert f"is not on branch scarthgap of file://{mirror_path(mirrors, url)}" in line
    log = tmp_path / "work" / "logs" / "scarthgap-checkout.log"
    assert line.endswith(f"; checkout: kas checkout failed (see {log}))")
    with open(os.path.join(ROOT, "kas", LOCKS["scarthgap"]), encoding="utf-8") as f:
        pins = re.findall(r'commit: "([0-9a-f]{40})"', f.read())
    assert any(f"git rev-parse --verify --end-of-options {pin}^{{commit}}" in log.read_text()
               for pin in pins)  # kas looked for a pinned commit
    assert "wrynose" not in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--steps", "pins,build"], "--steps: unknown step build; steps are pins, "),
    (["--steps", "pins", "--project", "/nonexistent"],
     "/nonexistent: no commit 'HEAD' in a git repository"),
])
def test_usage_errors(upstreams, tmp_path, args, message):
    mirrors, _ = upstreams
    result = check_upstream(args, tmp_path, mirrors)
    assert result.returncode == 2
    assert result.stderr.startswith("check-upstream: error: " + message)
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="the check refuses bitbake steps to root only")
def test_bitbake_steps_refuse_root(upstreams, tmp_path):
    mirrors, _ = upstreams
    result = check_upstream(["--steps", "pins,parse"], tmp_path, mirrors)
    assert result.returncode == 2
    assert result.stderr == ("check-upstream: error: bitbake refuses to run as root: run "
                             "check-upstream as an unprivileged user (docs/build-and-boot.md)\n")


def test_a_kas_file_kas_cannot_read_fails_the_steps_without_a_traceback(upstreams, tmp_path):
    mirrors, commits = upstreams
    project = project_pinned_to(str(tmp_path), commits)
    with open(os.path.join(project, "kas", "xenguest.yml"), "a", encoding="utf-8") as f:
        f.write("machine: [qemuarm64\n")
    _git(["commit", "-q", "-a", "-m", "a broken kas file"], project)
    result = check_upstream(["--project", project, "--steps", "pins,checkout",
                             "--release", "wrynose", "--release", "wrynose"],
                            tmp_path, mirrors)
    assert result.returncode == 1, result.stdout + result.stderr
    line = result.stdout.splitlines()[-1]
    kas_file = tmp_path / "work" / "meta-xenguest" / "kas" / "xenguest.yml"
    assert line.startswith(f"check-upstream: wrynose FAILED (pins: kas cannot read {kas_file}: ")
    assert "; checkout: kas checkout failed (see " in line
    assert result.stdout.count("wrynose pins") == 1  # the release is checked once
    assert "Traceback" not in result.stdout + result.stderr

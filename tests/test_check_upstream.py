"""tools/check-upstream, offline: its pins and checkout steps against the stand-ins, and the
parts of its bundle step that need no upstream layer.

The real check needs the upstream repositories and an unprivileged user (it
runs bitbake); CI has neither.  What runs here is the script itself on the
project's stand-in upstream repositories (tests/kas_env.py): it finds the
mirrors from --mirrors, checks every lock-file pin on its branch, runs the real
``kas checkout`` on the committed state of a meta-xenguest checkout, and turns
what it found into its summary line and exit status.  Of the bundle step: when it
does not apply, the guest images and recipe it bundles (the recipe's do_install run
by the real BitBake over the stand-in core), and its check of the merged root file
system (the merge itself is meta-virtualization's, run by the real step only).
"""

import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

import bitbake_env as be
from kas_env import ROOT, _git, kas_env, make_upstreams, mirror_path, RELEASES

SCRIPT = os.path.join(ROOT, "tools", "check-upstream")
MKIMAGE = os.path.join(ROOT, "meta-xenguest", "scripts", "xenguest-mkimage")
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


# -- the bundle step: the parts that need no upstream layer ---------------------------

def load_script():
    """tools/check-upstream as a module (it has no .py suffix)."""
    loader = importlib.machinery.SourceFileLoader("check_upstream", SCRIPT)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


cu = load_script()


def test_the_bundle_step_does_not_apply_to_a_meta_virtualization_without_bundles(tmp_path):
    """scarthgap's meta-virtualization has no xen-guest-cross-install class."""
    with pytest.raises(cu.StepNotApplicable) as found:
        cu.mvirt_host_recipe(str(tmp_path), "scarthgap")
    assert str(found.value) == ("meta-virtualization (scarthgap) has no guest bundles "
                                "(no classes/xen-guest-cross-install.bbclass)")
    be.write_tree(str(tmp_path), {"classes/xen-guest-cross-install.bbclass": "",
                                  "recipes-extended/images/xen-image-minimal.bb": ""})
    assert cu.mvirt_host_recipe(str(tmp_path), "wrynose") == str(
        tmp_path / "recipes-extended" / "images" / "xen-image-minimal.bb")
    be.write_tree(str(tmp_path), {"recipes-old/xen-image-minimal.bb": ""})
    with pytest.raises(cu.StepFailed, match="^2 xen-image-minimal.bb in "):
        cu.mvirt_host_recipe(str(tmp_path), "wrynose")


def test_not_applicable_is_said_and_is_no_failure(capsys, tmp_path):
    check = cu.Check("scarthgap", str(tmp_path), "kas.yml", "poky", str(tmp_path),
                     str(tmp_path))
    os.makedirs(os.path.join(check.build, "conf"))
    open(os.path.join(check.build, "conf", "bblayers.conf"), "w").close()
    cu.check_release(check, ["bundle"])  # tmp_path has no meta-virtualization
    assert capsys.readouterr().out.startswith(
        "check-upstream: scarthgap bundle not applicable: meta-virtualization (scarthgap) "
        "has no guest bundles")
    assert cu.summary([check]) == "check-upstream: scarthgap ok (bundle not applicable)"


@pytest.fixture(scope="module")
def bundle_installed(tmp_path_factory):
    """The step's guest images and bundle recipe; the recipe's do_install run by the real
    BitBake over the stand-in core, into a folder that is the host's root file system."""
    scratch = str(tmp_path_factory.mktemp("bundle"))
    recipe = cu.bundle_inputs(ROOT, scratch, os.path.join(scratch, "log"))
    env = be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")))
    with open(recipe, encoding="utf-8") as f:
        recipe = env.write_recipe(cu.BUNDLE_RECIPE, f.read())
    d = env.parse(recipe)
    env.run_until(recipe, d, "do_install")
    return scratch, d.getVar("D")


def test_the_bundle_steps_guests_are_valid_images(bundle_installed):
    scratch, root = bundle_installed
    for guest in cu.BUNDLE_GUESTS:
        image = os.path.join(scratch, f"{guest.name}.xenguest")
        result = subprocess.run([sys.executable, MKIMAGE, "check", image],
                                stdout=subprocess.PIPE, universal_newlines=True)
        assert result.returncode == 0, result.stdout
    with open(os.path.join(root, cu.MVIRT_BUNDLES, cu.BUNDLE_RECIPE, "manifest")) as f:
        assert f.read() == ("xgcheck-web:xgcheck-web.img:xgcheck-web.kernel:autostart\n"
                            "xgcheck-db:xgcheck-db.img:xgcheck-db.kernel:\n")


def merge_as_meta_virtualization_does(root):
    """The result meta-virtualization's merge_installed_xen_bundles gives (wrynose):
    the input of merged_problems here, the real function runs in the real step."""
    bundles = os.path.join(root, cu.MVIRT_BUNDLES)
    bundle = os.path.join(bundles, cu.BUNDLE_RECIPE)
    os.makedirs(os.path.join(root, "etc/xen/auto"))
    for line in open(os.path.join(bundle, "manifest")).read().splitlines():
        name, disk, kernel, autostart = line.split(":")
        for file in (disk, kernel):
            shutil.copy(os.path.join(bundle, "images", file), root + cu.MVIRT_IMAGES)
        shutil.copy(os.path.join(bundle, "configs", f"{name}.cfg"), f"{root}/etc/xen")
        if autostart == "autostart":
            os.symlink(f"/etc/xen/{name}.cfg", f"{root}/etc/xen/auto/{name}.cfg")
    shutil.rmtree(bundles)


def test_merged_problems_checks_the_hosts_root_file_system(bundle_installed, tmp_path):
    _, installed = bundle_installed
    root = str(tmp_path / "rootfs")
    shutil.copytree(installed, root, symlinks=True)
    assert cu.merged_problems(root, cu.BUNDLE_GUESTS, ROOT) == [
        "/usr/share/xen-guest-bundles is still in the rootfs",
        "xgcheck-web does not start at boot (/etc/xen/auto)",
        "xgcheck-web: no /etc/xen/xgcheck-web.cfg",
        "xgcheck-db: no /etc/xen/xgcheck-db.cfg"]
    merge_as_meta_virtualization_does(root)
    assert cu.merged_problems(root, cu.BUNDLE_GUESTS, ROOT) == []
    os.remove(f"{root}/var/lib/xen/images/xgcheck-web/ramdisk.img")
    os.remove(f"{root}/var/lib/xen/images/xgcheck-db.img")
    os.symlink("/etc/xen/xgcheck-db.cfg", f"{root}/etc/xen/auto/xgcheck-db.cfg")
    assert cu.merged_problems(root, cu.BUNDLE_GUESTS, ROOT) == [
        "xgcheck-web: /var/lib/xen/images/xgcheck-web/ramdisk.img is not a file in "
        "/var/lib/xen/images",
        "xgcheck-db starts at boot (/etc/xen/auto)",
        "xgcheck-db: /var/lib/xen/images/xgcheck-db.img is not a file in /var/lib/xen/images"]

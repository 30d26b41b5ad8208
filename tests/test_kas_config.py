"""The kas files, read by the real kas (PyPI kas==5.5) without any checkout.

kas's own Config API validates every file against its JSON schema, resolves the
includes, loads the lock files next to the files and merges everything as
``kas build`` would; these tests assert the merged result.
"""

import argparse
import glob
import os
import re

import pytest
import yaml

import kas.context
from kas.config import Config
from kas.includehandler import ConfigFile
from kas.kasusererror import KasUserError

from kas_env import KAS_DIR, ROOT, kas_files, project_copy

SHA = re.compile(r"^[0-9a-f]{40}$")
RELEASES = {
    "xenguest.yml": {
        "distro": "poky-altcfg", "lock": "xenguest.lock.yml",
        "repos": {"bitbake": "2.18", "openembedded-core": "wrynose", "meta-yocto": "wrynose",
                  "meta-openembedded": "wrynose", "meta-virtualization": "wrynose"},
        "layers": {"openembedded-core": ["meta"], "meta-yocto": ["meta-poky"], "bitbake": []}},
    "xenguest-scarthgap.yml": {
        "distro": "poky", "lock": "xenguest-scarthgap.lock.yml",
        "repos": {"poky": "scarthgap", "meta-openembedded": "scarthgap",
                  "meta-virtualization": "scarthgap"},
        "layers": {"poky": ["meta", "meta-poky"]}},
}
COMMON_LAYERS = {
    "meta-xenguest": ["meta-xenguest", "kas/meta-xenguest-kas"],
    "meta-openembedded": ["meta-oe", "meta-python", "meta-networking", "meta-filesystems"],
    "meta-virtualization": [""],
}
HOST_LINES = [
    'DISTRO_FEATURES:append = " virtualization xen"',
    'IMAGE_INSTALL:append:pn-xen-image-minimal = " xenguest-manager xenguest-network"',
    'IMAGE_CLASSES:append:pn-xen-image-minimal = " xenguest-host"',
    'XENGUEST_HOST_GUESTS:pn-xen-image-minimal = "mc:xenguest:xenguest-image-minimal;'
    'machine=${MACHINE};deploydir=${TOPDIR}/tmp-xenguest/deploy/images/${MACHINE}"',
    'QB_MEM_VALUE:pn-xen-image-minimal = "2048"',
    'QB_SLIRP_OPT:pn-xen-image-minimal = "-netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,'
    'hostfwd=tcp:127.0.0.1:2323-:23,hostfwd=tcp:127.0.0.1:2223-:2222"',
    'EXTRA_IMAGE_FEATURES:append = " allow-empty-password empty-root-password allow-root-login"',
]
TESTIMAGE_LINES = [
    'IMAGE_CLASSES += "testimage"',
    'TESTIMAGE_AUTO:pn-xen-image-minimal = "1"',
    'TEST_SUITES:pn-xen-image-minimal = "ping ssh xenguest_host"',
    'TEST_RUNQEMUPARAMS = "slirp"',
    'QEMU_USE_KVM = ""',
]
TEAM_LINES = [
    'SSTATE_MIRRORS ?= "file://.* ${XENGUEST_SSTATE_MIRROR}/PATH;downloadfilename=PATH"',
    'BB_SIGNATURE_HANDLER = "OEEquivHash"',
    'BB_HASHSERVE ?= "${XENGUEST_HASHSERVE}"',
]
CHAINS = [(top,) for top in RELEASES] + [
    ("xenguest.yml", "machine/qemux86-64.yml"),
    ("xenguest-scarthgap.yml", "machine/qemux86-64.yml"),
    ("xenguest.yml", "opt/testimage.yml"),
    ("xenguest.yml", "opt/team.yml"),
    ("xenguest-scarthgap.yml", "machine/qemux86-64.yml", "opt/testimage.yml", "opt/team.yml"),
]


@pytest.fixture(autouse=True)
def no_kas_environment(monkeypatch):
    """KAS_* variables of the caller would override the files (KAS_MACHINE...)."""
    for name in list(os.environ):
        if name.startswith(("KAS_", "XENGUEST_")):
            monkeypatch.delenv(name)


def load(files, update=False):
    """kas's merged configuration of *files* (paths under kas/, chained with ':')."""
    ctx = kas.context.create_global_context(argparse.Namespace(
        no_color=True, update=update, force_checkout=False, skip=[]))
    config = Config(ctx, files)
    assert config.find_missing_repos() == []
    return config


def upstream_repos(config):
    """The repositories kas fetches: every one but this project's own checkout."""
    return [repo for repo in config.get_repos() if repo.path != ROOT]


def all_kas_files():
    return sorted(os.path.relpath(p, KAS_DIR)
                  for p in glob.glob(os.path.join(KAS_DIR, "**", "*.yml"), recursive=True))


@pytest.mark.parametrize("name", all_kas_files())
def test_every_file_validates_against_the_kas_schema(name):
    config = ConfigFile.load(os.path.join(KAS_DIR, name))
    assert config.config["header"]["version"] == 14


def test_the_kas_files_are_the_expected_set():
    assert set(all_kas_files()) == {
        "include/common.yml", "xenguest.yml", "xenguest.lock.yml", "xenguest-scarthgap.yml",
        "xenguest-scarthgap.lock.yml", "machine/qemux86-64.yml", "opt/testimage.yml",
        "opt/team.yml"}


@pytest.mark.parametrize("chain", CHAINS, ids=":".join)
def test_chain_merges_as_intended(chain):
    top = RELEASES[chain[0]]
    config = load(kas_files(*chain))
    assert config.get_machine() == ("qemux86-64" if "machine/qemux86-64.yml" in chain
                                    else "qemuarm64")
    assert config.get_distro() == top["distro"]
    assert config.get_build_system() == "openembedded"
    assert config.get_bitbake_targets() == ["mc:xenguest:xenguest-image-minimal",
                                            "xen-image-minimal"]
    assert config.get_bitbake_task() == "build"
    assert config.get_multiconfig() == "xenguest"
    repos = {repo.name: repo for repo in config.get_repos()}
    assert set(repos) == set(top["repos"]) | {"meta-xenguest"}
    layers = dict(COMMON_LAYERS, **top["layers"])
    for name, repo in repos.items():
        assert [layer.name for layer in repo.layers] == layers[name], name
    # The project's own repository is used in place (kas takes its url, if any,
    # from the checkout's origin: CI's clone has one, a developer's may not).
    assert repos["meta-xenguest"].path == ROOT

    header = config.get_local_conf_header().splitlines()
    for line in HOST_LINES:
        assert line in header
    for fragment, lines in (("opt/testimage.yml", TESTIMAGE_LINES), ("opt/team.yml", TEAM_LINES)):
        for line in lines:
            assert (line in header) == (fragment in chain), line
    x86 = 'SERIAL_CONSOLES:append = " 115200;hvc0"'
    assert (x86 in header) == ("machine/qemux86-64.yml" in chain)
    rootfs = 'IMAGE_ROOTFS_EXTRA_SPACE:pn-xen-image-minimal = "2000000"'
    assert (rootfs in header) == (chain[0] == "xenguest-scarthgap.yml")
    assert config.get_bblayers_conf_header() == ""
    assert config.get_environment() == (
        {"XENGUEST_SSTATE_MIRROR": "https://sstate.example.com/xenguest",
         "XENGUEST_HASHSERVE": "hashserv.example.com:8686"} if "opt/team.yml" in chain else {})


@pytest.mark.parametrize("top", sorted(RELEASES))
def test_every_remote_repository_has_a_branch_and_a_pinned_commit(top):
    expected = RELEASES[top]
    config = load(kas_files(top))
    remote = {repo.name: repo for repo in upstream_repos(config)}
    assert {name: repo.branch for name, repo in remote.items()} == expected["repos"]
    for name, repo in remote.items():
        assert isinstance(repo.branch, str) and repo.branch, name
        assert repo.url.startswith(("https://git.openembedded.org/",
                                    "https://git.yoctoproject.org/")), repo.url
        assert SHA.match(repo.commit or ""), (name, repo.commit)
    [lockfile] = config.get_lockfiles()
    assert os.path.basename(lockfile.filename) == expected["lock"]


@pytest.mark.parametrize("top", sorted(RELEASES))
def test_lock_file_is_complete_and_says_where_each_commit_was_read(top):
    expected = RELEASES[top]
    path = os.path.join(KAS_DIR, expected["lock"])
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lock = yaml.safe_load(text)
    assert set(lock) == {"header", "overrides"}
    pins = lock["overrides"]["repos"]
    assert set(pins) == set(expected["repos"])
    for name, pin in pins.items():
        assert set(pin) == {"commit"}, name
        assert isinstance(pin["commit"], str) and SHA.match(pin["commit"]), name
        # The comment block right above the pin names the mirror, branch and date.
        block = re.search(rf"^    {re.escape(name)}:\n((?:      #.*\n)+)      commit: "
                          rf'"{pin["commit"]}"$', text, re.M)
        assert block, f"{name}: no comment above its commit"
        comment = " ".join(line.strip("# ") for line in block.group(1).splitlines())
        assert re.search(r"github\.com/[\w.-]+/[\w.-]+", comment), comment
        assert f"branch {expected['repos'][name]}" in comment, comment
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", comment), comment
    assert len(set(p["commit"] for p in pins.values())) == len(pins)


@pytest.mark.parametrize("top", sorted(RELEASES))
def test_update_ignores_the_lock_file(top):
    config = load(kas_files(top), update=True)
    assert all(repo.commit is None for repo in upstream_repos(config))


def test_the_documented_kas_files_exist():
    with open(os.path.join(ROOT, "docs", "build-and-boot.md"), encoding="utf-8") as f:
        named = set(re.findall(r"\bkas/[\w./-]+\.yml\b", f.read()))
    assert {"kas/xenguest.yml", "kas/xenguest-scarthgap.yml", "kas/opt/team.yml"} <= named
    for path in named:
        assert os.path.isfile(os.path.join(ROOT, path)), path


def test_multiconfig_file_and_its_layer():
    layer = os.path.join(KAS_DIR, "meta-xenguest-kas")
    with open(os.path.join(layer, "conf", "multiconfig", "xenguest.conf")) as f:
        assert 'TMPDIR = "${TOPDIR}/tmp-xenguest"' in f.read().splitlines()
    with open(os.path.join(layer, "conf", "layer.conf")) as f:
        conf = f.read()
    assert 'BBFILE_COLLECTIONS += "xenguest-kas"' in conf
    assert 'LAYERSERIES_COMPAT_xenguest-kas = "scarthgap wrynose"' in conf


# -- the checks catch broken configurations -------------------------------------

@pytest.mark.parametrize("name, old, new, message", [
    ("include/common.yml", "local_conf_header:", "local_conf_headers:",
     "'local_conf_headers' was unexpected"),
    ("xenguest.yml", "    branch: wrynose\n    layers:\n      meta:",
     "    brnach: wrynose\n    layers:\n      meta:", "'brnach': 'wrynose'"),
    # unquoted, YAML reads 2.18 as a number: not a branch name
    ("xenguest.yml", 'branch: "2.18"', "branch: 2.18", "'branch': 2.18,"),
    ("xenguest.lock.yml", 'commit: "fae9db', "comit: \"fae9db", "'comit' was unexpected"),
])
def test_schema_errors_are_caught(tmp_path, caplog, name, old, new, message):
    kas_dir = project_copy(str(tmp_path), name, old, new)
    with pytest.raises(KasUserError) as error:
        load(os.path.join(kas_dir, "xenguest.yml"))
    assert str(error.value).endswith(os.path.join("kas", name))
    assert message in caplog.text

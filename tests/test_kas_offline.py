"""``kas build``/``checkout``/``dump`` on the real kas files, offline.

The upstream URLs are redirected with KAS_PREMIRRORS to stand-in repositories
(tests/kas_env.py); kas really clones them, writes conf/bblayers.conf and
conf/local.conf and runs the stand-in bitbake, which parses the build folder
with the real BitBake parser and checks layers, targets and the host image's
settings (its report is standin-bitbake.json).  Lock files pin commits the
stand-ins cannot have: the builds use --update (branch heads), and one test
shows that without it kas goes for the pinned commits.
"""

import os
import re
import subprocess
import types

import pytest
import yaml

from kas_env import (KAS_DIR, ROOT, kas_env, kas_files, make_upstreams, project_copy,
                     read_report, read_text, run_kas)

BUILDS = {
    "wrynose": ("xenguest.yml",),
    "scarthgap": ("xenguest-scarthgap.yml",),
    "wrynose-x86-testimage-team": ("xenguest.yml", "machine/qemux86-64.yml",
                                   "opt/testimage.yml", "opt/team.yml"),
}
# The team fragment's servers, given in the environment (its defaults are
# placeholders: see test_kas_config).
TEAM_ENV = {"XENGUEST_SSTATE_MIRROR": "file:///srv/sstate-cache",
            "XENGUEST_HASHSERVE": "hashserv.lan:8686"}
LAYERS = {
    "wrynose": ["meta-openembedded/meta-filesystems", "meta-openembedded/meta-networking",
                "meta-openembedded/meta-oe", "meta-openembedded/meta-python",
                "meta-virtualization", "meta-yocto/meta-poky", "openembedded-core/meta"],
    "scarthgap": ["meta-openembedded/meta-filesystems", "meta-openembedded/meta-networking",
                  "meta-openembedded/meta-oe", "meta-openembedded/meta-python",
                  "meta-virtualization", "poky/meta", "poky/meta-poky"],
}
COLLECTIONS = {"core", "yocto", "openembedded-layer", "meta-python", "networking-layer",
               "filesystems-layer", "virtualization-layer", "xenguest", "xenguest-kas"}
GUEST = "xenguest-image-minimal"
HOST = "xen-image-minimal"


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("upstreams"))
    return types.SimpleNamespace(mirrors=os.path.join(root, "mirrors"),
                                 commits=make_upstreams(root))


def output(result):
    return result.stdout + result.stderr


@pytest.fixture(scope="module", params=sorted(BUILDS))
def build(request, upstreams, tmp_path_factory):
    """``kas build --update`` of one chain of kas files, in a fresh work folder."""
    chain = BUILDS[request.param]
    work = str(tmp_path_factory.mktemp(request.param))
    env = kas_env(upstreams.mirrors, **(TEAM_ENV if "opt/team.yml" in chain else {}))
    result = run_kas(["build", "--update", kas_files(*chain)], work, env)
    assert result.returncode == 0, output(result)
    release = request.param.split("-")[0]
    conf = os.path.join(work, "build", "conf")
    return types.SimpleNamespace(
        name=request.param, chain=chain, release=release, work=work, result=result,
        report=read_report(os.path.join(work, "build")),
        bblayers=read_text(os.path.join(conf, "bblayers.conf")),
        local_conf=read_text(os.path.join(conf, "local.conf")),
        machine="qemux86-64" if "machine/qemux86-64.yml" in chain else "qemuarm64",
        commits={repo: sha for (rel, repo), sha in upstreams.commits.items() if rel == release})


def bblayers(text):
    """The BBLAYERS entries of a kas-written bblayers.conf."""
    found = re.search(r'^BBLAYERS \?= "(.*?)"$', text, re.M | re.S)
    return found.group(1).replace("\\", " ").split()


def test_the_stand_in_bitbake_accepts_the_configuration(build):
    assert "NOTE: stand-in bitbake: -c build" in output(build.result)
    assert build.report["task"] == "build"
    assert build.report["targets"] == [f"mc:xenguest:{GUEST}", HOST]
    assert build.report["errors"] == []
    assert build.report["messages"] == []


def test_bblayers_conf_lists_every_layer(build):
    entries = bblayers(build.bblayers)
    assert all(e.startswith("${TOPDIR}/") for e in entries)
    paths = [os.path.normpath(e.replace("${TOPDIR}", os.path.join(build.work, "build")))
             for e in entries]
    expected = [os.path.join(build.work, p) for p in LAYERS[build.release]]
    expected += [os.path.join(ROOT, "meta-xenguest"), os.path.join(KAS_DIR, "meta-xenguest-kas")]
    assert sorted(paths) == sorted(expected)
    for path in paths:
        assert os.path.isfile(os.path.join(path, "conf", "layer.conf")), path
    assert 'BBPATH ?= "${TOPDIR}"' in build.bblayers.splitlines()


def test_local_conf_has_the_machine_distro_multiconfig_and_settings(build):
    lines = build.local_conf.splitlines()
    distro = "poky-altcfg" if build.release == "wrynose" else "poky"
    assert lines[-3:] == [f'MACHINE ??= "{build.machine}"', f'DISTRO ??= "{distro}"',
                          'BBMULTICONFIG ?= "xenguest"']
    assert 'DISTRO_FEATURES:append = " virtualization xen"' in lines
    assert 'IMAGE_INSTALL:append:pn-xen-image-minimal = " xenguest-manager xenguest-network"' in lines
    assert ('TEST_SUITES:pn-xen-image-minimal = "ping ssh xenguest_host"' in lines) == \
        ("opt/testimage.yml" in build.chain)
    assert ('BB_HASHSERVE ?= "${XENGUEST_HASHSERVE}"' in lines) == ("opt/team.yml" in build.chain)


def test_repositories_are_checked_out_at_the_branch_heads(build):
    for repo, sha in build.commits.items():
        head = subprocess.run(["git", "-C", os.path.join(build.work, repo), "rev-parse", "HEAD"],
                              stdout=subprocess.PIPE, universal_newlines=True, check=True)
        assert head.stdout.strip() == sha, repo
    # This repository is used where it is, not cloned.
    assert not os.path.exists(os.path.join(build.work, "meta-xenguest"))


def test_host_and_guest_configurations(build):
    configs = build.report["configs"]
    assert set(configs) == {"", "xenguest"}
    init = "systemd" if build.release == "wrynose" else "sysvinit"
    for mc, config in configs.items():
        assert config["MACHINE"] == build.machine
        assert config["LAYERSERIES_CORENAMES"] == build.release
        assert config["INIT_MANAGER"] == init
        assert {"xen", "virtualization", init} <= set(config["DISTRO_FEATURES"].split())
        assert set(config["collections"]) == COLLECTIONS
        assert {GUEST, HOST, "xenguest-manager", "xenguest-network"} <= set(config["recipes"])
    build_dir = os.path.join(build.work, "build")
    assert configs[""]["TMPDIR"] == os.path.join(build_dir, "tmp")
    assert configs["xenguest"]["TMPDIR"] == os.path.join(build_dir, "tmp-xenguest")


def test_host_image_gets_the_manager_and_the_guest(build):
    host = build.report["recipes"][HOST]
    assert host["IMAGE_INSTALL"].split() == ["xenguest-manager", "xenguest-network"]
    testimage = "opt/testimage.yml" in build.chain
    assert host["IMAGE_CLASSES"].split() == (["testimage"] if testimage else []) + ["xenguest-host"]
    assert host["QB_MEM_VALUE"] == "2048"
    assert host["QB_XEN_CMDLINE_EXTRA"] == "dom0_mem=512M"
    # runqemu's defaults (dom0's ssh and telnet), and dom0's port 2222: the guest's ssh
    forwards = re.findall(r"hostfwd=tcp:127\.0\.0\.1:(\d+)-:(\d+)", host["QB_SLIRP_OPT"])
    assert forwards == [("2222", "22"), ("2323", "23"), ("2223", "2222")]
    assert host["QB_SLIRP_OPT"].startswith("-netdev user,id=net0,")
    assert host["IMAGE_ROOTFS_EXTRA_SPACE"] == ("2000000" if build.release == "scarthgap" else None)
    deploy = os.path.join(build.work, "build", "tmp-xenguest", "deploy", "images", build.machine)
    assert build.report["host_guests"] == [{
        "target": HOST, "name": GUEST, "depends": None,
        "mcdepends": f"mc::xenguest:{GUEST}:do_image_complete",
        "path": os.path.join(deploy, f"{GUEST}-{build.machine}.rootfs.xenguest")}]
    guest = build.report["recipes"][f"mc:xenguest:{GUEST}"]
    assert guest["XENGUEST_HOST_GUESTS"] is None and guest["IMAGE_INSTALL"] is None


def test_fragments(build):
    host = build.report["recipes"][HOST]
    config = build.report["configs"][""]
    if "opt/testimage.yml" in build.chain:
        assert host["TESTIMAGE_AUTO"] == "1"
        assert host["TEST_SUITES"].split() == ["ping", "ssh", "xenguest_host"]
        assert host["TEST_RUNQEMUPARAMS"] == "slirp"
        assert host["QEMU_USE_KVM"] == ""
        assert build.report["recipes"][f"mc:xenguest:{GUEST}"]["TESTIMAGE_AUTO"] is None
    else:
        assert host["TESTIMAGE_AUTO"] is None and host["TEST_SUITES"] is None
    assert config["BB_SIGNATURE_HANDLER"] == "OEEquivHash"
    for recipe in build.report["recipes"].values():  # host and guest alike
        assert recipe["EXTRA_IMAGE_FEATURES"].split() == [
            "allow-empty-password", "empty-root-password", "allow-root-login"]
    consoles = config["SERIAL_CONSOLES"].split()
    assert consoles == (["115200;ttyS0", "115200;ttyS1", "115200;hvc0"]
                        if build.machine == "qemux86-64" else ["115200;ttyAMA0", "115200;hvc0"])
    if "opt/team.yml" in build.chain:
        for mc in ("", "xenguest"):
            config = build.report["configs"][mc]
            assert config["SSTATE_MIRRORS"] == \
                "file://.* file:///srv/sstate-cache/PATH;downloadfilename=PATH"
            assert config["BB_HASHSERVE"] == "hashserv.lan:8686"
    else:
        assert config["SSTATE_MIRRORS"] is None and config["BB_HASHSERVE"] == "auto"


def test_checkout_writes_the_build_configuration(upstreams, tmp_path):
    result = run_kas(["checkout", "--update", kas_files("xenguest-scarthgap.yml")],
                     str(tmp_path), kas_env(upstreams.mirrors))
    assert result.returncode == 0, output(result)
    conf = tmp_path / "build" / "conf"
    assert len(bblayers((conf / "bblayers.conf").read_text())) == 9
    assert (conf / "local.conf").read_text().splitlines()[-3:] == [
        'MACHINE ??= "qemuarm64"', 'DISTRO ??= "poky"', 'BBMULTICONFIG ?= "xenguest"']
    assert not (tmp_path / "build" / "standin-bitbake.json").exists()  # bitbake did not run


def test_dump_resolves_every_repository(upstreams, tmp_path):
    result = run_kas(["dump", "--update", "--resolve-refs", kas_files("xenguest.yml")],
                     str(tmp_path), kas_env(upstreams.mirrors))
    assert result.returncode == 0, output(result)
    dumped = yaml.safe_load(result.stdout)
    assert dumped["machine"] == "qemuarm64" and dumped["distro"] == "poky-altcfg"
    assert dumped["target"] == [f"mc:xenguest:{GUEST}", HOST]
    repos = dumped["repos"]
    assert set(repos) == {"meta-xenguest", "bitbake", "openembedded-core", "meta-yocto",
                          "meta-openembedded", "meta-virtualization"}
    for name, repo in repos.items():
        if name != "meta-xenguest":
            assert repo["commit"] == upstreams.commits[("wrynose", name)], name
            assert repo["url"].startswith("https://"), name  # not the premirror
    assert set(dumped["local_conf_header"]) == {
        "xenguest-distro", "xenguest-host", "xenguest-login", "xenguest-runqemu"}


def test_without_update_kas_checks_out_the_pinned_commits(upstreams, tmp_path):
    """The lock file is in force: kas looks for its commits (absent from the stand-ins)."""
    result = run_kas(["checkout", kas_files("xenguest.yml")], str(tmp_path),
                     kas_env(upstreams.mirrors))
    assert result.returncode != 0
    lock = yaml.safe_load(read_text(os.path.join(KAS_DIR, "xenguest.lock.yml")))
    pinned = {pin["commit"] for pin in lock["overrides"]["repos"].values()}
    assert any(sha in output(result) for sha in pinned), output(result)


# -- the checks catch broken configurations -------------------------------------

BROKEN = [
    pytest.param("include/common.yml", "      meta-networking:\n", "",
                 "Layer 'virtualization-layer' depends on layer 'networking-layer', but this "
                 "layer is not enabled in your configuration", id="dropped-layer"),
    pytest.param("xenguest.yml", "  bitbake:\n    url: https://git.openembedded.org/bitbake\n"
                 "    branch: \"2.18\"\n    layers:\n      bitbake: disabled\n", "",
                 "bitbake directory", id="dropped-bitbake-repository"),
    pytest.param("xenguest.yml", "  meta-virtualization:\n    branch: wrynose",
                 "  meta-virtualization:\n    branch: scarthgap",
                 "Layer virtualization-layer is not compatible with the core layer which only "
                 "supports these series: wrynose", id="release-mix"),
    pytest.param("xenguest.yml", "distro: poky-altcfg", "distro: poky",
                 "xen-image-minimal: missing required distro feature 'systemd'",
                 id="wrynose-without-systemd"),
    pytest.param("include/common.yml", '" xenguest-manager xenguest-network"',
                 '" xenguest-manager xenguest-netwrk"',
                 "Nothing RPROVIDES 'xenguest-netwrk'", id="mistyped-package"),
    pytest.param("include/common.yml", "deploydir=${TOPDIR}/tmp-xenguest/",
                 "deploydir=${TOPDIR}/tmp-guest/",
                 "but multiconfig 'xenguest' deploys it as", id="guest-read-from-wrong-folder"),
]


@pytest.mark.parametrize("name, old, new, message", BROKEN)
def test_broken_configuration_fails_the_build(upstreams, tmp_path, name, old, new, message):
    kas_dir = project_copy(str(tmp_path), name, old, new)
    work = tmp_path / "work"
    work.mkdir()
    result = run_kas(["build", "--update", os.path.join(kas_dir, "xenguest.yml")], str(work),
                     kas_env(upstreams.mirrors))
    assert result.returncode != 0
    assert message in output(result)

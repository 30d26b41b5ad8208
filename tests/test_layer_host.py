"""The xenguest-host class: guest images installed into a host rootfs, with the real BitBake."""

import functools
import hashlib
import http.server
import os
import shutil
import stat
import threading

import pytest

import bitbake_env as be
from bitbake_standin import BITBAKE_OF_SERIES, SERIES
from xenguest import operations

EXAMPLE = os.path.join(be.LAYER, "recipes-guests", "images", "xenguest-image-minimal.bb")
GUESTS_DIR = "usr/share/xenguest/guests"


def build_guest(env, mc=""):
    """Build the example guest image (in multiconfig *mc*); return its deployed file."""
    d = env.parse(EXAMPLE, mc=mc)
    folder = d.getVar("DEPLOY_DIR_IMAGE")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, d.getVar("KERNEL_IMAGETYPE")), "wb") as f:
        f.write(b"kernel")
    env.run_until(EXAMPLE, d, "do_image_complete")
    return os.path.join(folder, d.getVar("IMAGE_LINK_NAME") + ".xenguest")


def host(env, name, guests, files=None):
    return env.write_recipe(name, f"""\
        LICENSE = "MIT"
        inherit core-image xenguest-host
        XENGUEST_HOST_GUESTS = "{guests}"
        """, files)


def installed(d):
    folder = os.path.join(d.getVar("IMAGE_ROOTFS"), GUESTS_DIR)
    return {n: os.path.join(folder, n) for n in sorted(os.listdir(folder))}


def same_file(a, b):
    return open(a, "rb").read() == open(b, "rb").read()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")))


@pytest.fixture(scope="module")
def guest_image(env):
    return build_guest(env)


def test_recipe_file_and_path_guests(env, guest_image, tmp_path):
    other = tmp_path / "other.xenguest"
    shutil.copy(guest_image, other)
    recipe = host(env, "host-image", f"xenguest-image-minimal "
                  f"file://extra.xenguest;guestname=second {other}",
                  {"extra.xenguest": open(guest_image, "rb").read()})
    d = env.parse(recipe)
    depends = d.getVarFlag("do_rootfs", "depends").split()
    assert "xenguest-image-minimal:do_image_complete" in depends
    checksums = d.getVarFlag("do_rootfs", "file-checksums").split()
    assert f"{other}:True" in checksums
    assert os.path.join(os.path.dirname(recipe), "files", "extra.xenguest:True") in checksums
    assert "XENGUEST_HOST_GUESTS" in d.getVarFlag("do_rootfs", "vardeps")
    # Nothing to download: the image's do_fetch stays off.
    assert d.getVarFlag("do_fetch", "noexec") == "1"
    logs = env.run_until(recipe, d, "do_rootfs")
    files = installed(d)
    assert sorted(files) == ["other.xenguest", "second.xenguest", "xenguest-image-minimal.xenguest"]
    for path in files.values():
        assert same_file(path, guest_image)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        with operations.open_image(path) as image:
            assert operations.info(image)["memory"] == 256
    assert "xenguest-host: installing" in logs["do_rootfs"]


def test_guests_dir_is_the_documented_one(env):
    d = env.parse(host(env, "host-empty", ""))
    assert d.getVar("XENGUEST_HOST_GUESTS_DIR") == "/usr/share/xenguest/guests"
    env.run_until(d.getVar("FILE"), d, "do_rootfs")
    assert not os.path.exists(os.path.join(d.getVar("IMAGE_ROOTFS"), GUESTS_DIR))


def test_multiconfig_guest(tmp_path_factory):
    env = be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")), multiconfigs={
        "guest": 'MACHINE = "qemux86-64"\nTMPDIR = "${TOPDIR}/tmp-guest"\n'})
    guest_image = build_guest(env, mc="guest")
    assert "/tmp-guest/deploy/images/qemux86-64/" in guest_image
    recipe = host(env, "host-mc", "mc:guest:xenguest-image-minimal;machine=qemux86-64;"
                  "deploydir=${TOPDIR}/tmp-guest/deploy/images/qemux86-64;guestname=x86")
    d = env.parse(recipe)
    assert d.getVar("MACHINE") == "qemuarm64"
    assert d.getVarFlag("do_rootfs", "mcdepends").split() == [
        "mc::guest:xenguest-image-minimal:do_image_complete"]
    assert "xenguest-image-minimal" not in (d.getVarFlag("do_rootfs", "depends") or "")
    env.run_until(recipe, d, "do_rootfs")
    assert same_file(installed(d)["x86.xenguest"], guest_image)


@pytest.mark.parametrize("series", SERIES)
def test_host_waits_for_a_multiconfig_guest_with_every_bitbake(tmp_path_factory, series):
    """The runqueue keeps do_rootfs's mcdepends, whatever BB_CURRENT_MC the BitBake
    generation sets: "default" before 2.12 (scarthgap, styhead), "" from 2.12 on."""
    env = be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")), series=series, multiconfigs={
        "guest": 'MACHINE = "qemux86-64"\n', "host": ""})
    guests = "mc:guest:xenguest-image-minimal;machine=qemux86-64"
    recipe = host(env, "host-mc-edge", guests)
    before_212 = BITBAKE_OF_SERIES[series] < (2, 12)
    for config in ("", "host"):
        d = env.parse(recipe, mc=config)
        assert d.getVar("BB_CURRENT_MC") == (config or ("default" if before_212 else ""))
        assert be.runqueue_mcdepends(d, "do_rootfs", config) == [
            f"mc:{config}:guest:xenguest-image-minimal:do_image_complete"]


def test_multiconfig_guest_sharing_tmpdir(tmp_path_factory):
    env = be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")), multiconfigs={
        "guest": 'MACHINE = "qemux86-64"\n'})
    guest_image = build_guest(env, mc="guest")
    d = env.parse(host(env, "host-mc-shared", "mc:guest:xenguest-image-minimal;machine=qemux86-64"))
    env.run_until(d.getVar("FILE"), d, "do_rootfs")
    assert same_file(installed(d)["xenguest-image-minimal.xenguest"], guest_image)


@pytest.fixture
def web(guest_image, tmp_path):
    """A local HTTP server holding a copy of the guest image."""
    shutil.copy(guest_image, tmp_path / "remote.xenguest")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


@pytest.mark.skipif(shutil.which("wget") is None, reason="BitBake's http fetcher runs wget")
def test_remote_guest_is_fetched(env, guest_image, web):
    sha = hashlib.sha256(open(guest_image, "rb").read()).hexdigest()
    recipe = host(env, "host-web", f"{web}/remote.xenguest;sha256sum={sha};guestname=web")
    d = env.parse(recipe)
    # Downloads belong to do_fetch, which runs for this image.
    assert d.getVar("SRC_URI").split() == [f"{web}/remote.xenguest;sha256sum={sha}"]
    assert not d.getVarFlag("do_fetch", "noexec")
    logs = env.run_until(recipe, d, "do_rootfs")
    assert "do_fetch" in logs
    assert same_file(installed(d)["web.xenguest"], guest_image)
    assert os.path.isfile(os.path.join(d.getVar("DL_DIR"), "remote.xenguest"))
    # yocto-check-layer's rule: no task after do_fetch reaches the network.
    assert not [t for t in env.task_order(d, "do_build")
                if t != "do_fetch" and d.getVarFlag(t, "network")]


def test_missing_guest_file_fails_do_rootfs(env):
    recipe = host(env, "host-missing", "never-built-guest")
    d = env.parse(recipe)
    with pytest.raises(AssertionError) as failure:
        env.run_until(recipe, d, "do_rootfs")
    assert 'XENGUEST_HOST_GUESTS = "never-built-guest"' in str(failure.value)
    assert "never-built-guest-qemuarm64.rootfs.xenguest does not exist" in str(failure.value)


@pytest.mark.parametrize("guests,expected", [
    ("mc:guest:xenguest-image-minimal", ["say the guest multiconfig's MACHINE"]),
    ("mc:guest", ["expected mc:MULTICONFIG:RECIPE"]),
    ("xenguest-image-minimal;count=2", ["unknown parameter count"]),
    ("xenguest-image-minimal;guestname", ["expected ;NAME=VALUE"]),
    ("xenguest-image-minimal xenguest-image-minimal", ["already used by xenguest-image-minimal"]),
    ("xenguest-image-minimal;guestname=-bad", ["invalid guest name '-bad'"]),
    ("file://absent.xenguest", ["no file absent.xenguest in FILESPATH"]),
    ("/no/such/guest.xenguest", ["/no/such/guest.xenguest does not exist"]),
    ("file://x.xenguest;machine=a", ["unknown parameter machine"]),
    ("xenguest-image-minimal;image=sub/x.xenguest", ["image= is a file name"]),
])
def test_wrong_guest_list_fails_the_parse(env, guests, expected):
    name = "host-bad-" + hashlib.sha1(guests.encode()).hexdigest()[:10]
    message = be.parse_failure(env, host(env, name, guests, {"x.xenguest": ""}))
    assert message.startswith(f'{name}: XENGUEST_HOST_GUESTS = "')
    for fragment in expected:
        assert fragment in message

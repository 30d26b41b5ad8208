"""xenguest-mvirt-bundle: xenguest images as a meta-virtualization guest bundle, with the real
BitBake over the stand-in core.

The bundle's layout is meta-virtualization's contract (classes/xen-guest-bundle.bbclass and
the merge_installed_xen_bundles function of classes/xen-guest-cross-install.bbclass, wrynose):
``${datadir}/xen-guest-bundles/PN/`` holding ``manifest`` (``GUEST:DISK:KERNEL:AUTOSTART``),
``images/`` and ``configs/GUEST.cfg``.  Here: the layout the class writes, the disk read back
as render-disk writes it, the configurations read by the real xl parser.  tools/check-upstream
runs the real merge function of the real layer over it.
"""

import os
import subprocess
import sys

import pytest

import bitbake_env as be
from xl_tool import real_xl  # noqa: F401 (fixture)
from xenguest.xl import config as xlcfg

EXAMPLE = os.path.join(be.LAYER, "recipes-guests", "images", "xenguest-image-minimal.bb")
MKIMAGE = os.path.join(be.LAYER, "scripts", "xenguest-mkimage")
EPOCH = "1700000000"
KERNEL = b"guest kernel\n" * 100


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")),
                         local_conf=f'SOURCE_DATE_EPOCH = "{EPOCH}"\n')


def build_image(env, recipe, mc=""):
    """Build a guest image recipe (its kernel deployed first); return its deployed image."""
    d = env.parse(recipe, mc=mc)
    folder = d.getVar("DEPLOY_DIR_IMAGE")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, d.getVar("KERNEL_IMAGETYPE")), "wb") as f:
        f.write(KERNEL)
    env.run_until(recipe, d, "do_image_complete")
    return os.path.join(folder, d.getVar("IMAGE_LINK_NAME") + ".xenguest")


def bundle(env, name, settings):
    return env.write_recipe(name, 'LICENSE = "MIT"\ninherit xenguest-mvirt-bundle\n' + settings)


@pytest.fixture(scope="module")
def guests(env):
    """A bridged guest with a ramdisk and a disk; a prebuilt-disk guest that does not start
    at boot, on no network, with an init script."""
    web = env.write_recipe("guest-web", """\
        LICENSE = "MIT"
        inherit core-image xenguest-image
        XENGUEST_IMAGE_NETWORK_TYPE = "bridge"
        XENGUEST_IMAGE_DISK_SIZE = "40M"
        XENGUEST_IMAGE_RAMDISK = "file://initrd.cpio.gz"
        XENGUEST_IMAGE_XEN_CONFIG = "file://extra.cfg"
        """, {"initrd.cpio.gz": "initrd", "extra.cfg": 'on_crash = "restart"\n'})
    db = env.write_recipe("guest-db", """\
        LICENSE = "MIT"
        inherit core-image xenguest-image
        XENGUEST_IMAGE_NETWORK_TYPE = "none"
        XENGUEST_IMAGE_AUTOBOOT = "0"
        XENGUEST_IMAGE_DISK_SIZE = "30M"
        XENGUEST_IMAGE_DISK_PREBUILT = "1"
        XENGUEST_IMAGE_INIT = "file://10-hook.sh"
        """, {"10-hook.sh": "#!/bin/sh\n"})
    return {"web": build_image(env, web), "db": build_image(env, db)}


@pytest.fixture(scope="module")
def bundled(env, guests):
    recipe = bundle(env, "my-guests", 'XENGUEST_MVIRT_GUESTS = "guest-web;guestname=web '
                                      'guest-db;guestname=db"\n')
    d = env.parse(recipe)
    logs = env.run_until(recipe, d, "do_install")
    return d, logs


def test_the_task_waits_for_the_images_and_has_the_tools(bundled):
    d, _ = bundled
    depends = d.getVarFlag("do_install", "depends").split()
    assert depends[:2] == ["guest-web:do_image_complete", "guest-db:do_image_complete"]
    assert sorted(depends[2:]) == [
        f"{tool}-native:do_populate_sysroot"
        for tool in ("dosfstools", "e2fsprogs", "mtools", "util-linux", "zstd")]
    assert d.getVar("PACKAGE_ARCH") == d.getVar("MACHINE_ARCH")
    assert d.getVar("FILES:" + d.getVar("PN")).split() == [
        "/usr/share/xen-guest-bundles", "/var/lib/xen/images"]


def test_the_bundle_has_meta_virtualizations_layout(bundled):
    d, _ = bundled
    root = d.getVar("D")
    folder = os.path.join(root + d.getVar("datadir"), "xen-guest-bundles", "my-guests")
    assert sorted(os.listdir(folder)) == ["configs", "images", "manifest"]
    assert open(os.path.join(folder, "manifest")).read() == (
        "web:web.img:web.kernel:autostart\n"
        "db:db.img:db.kernel:\n")
    assert sorted(os.listdir(os.path.join(folder, "images"))) == [
        "db.img", "db.kernel", "web.img", "web.kernel"]
    assert sorted(os.listdir(os.path.join(folder, "configs"))) == ["db.cfg", "web.cfg"]
    assert open(os.path.join(folder, "images", "web.kernel"), "rb").read() == KERNEL
    # What the merge does not copy is installed where the configuration says.
    assert open(os.path.join(root, "var/lib/xen/images/web/ramdisk.img")).read() == "initrd"
    assert sorted(os.listdir(os.path.join(root, "var/lib/xen/images"))) == ["web"]


def test_the_configurations_have_the_final_paths(bundled, real_xl):  # noqa: F811
    d, _ = bundled
    folder = os.path.join(d.getVar("D") + d.getVar("datadir"), "xen-guest-bundles", "my-guests")
    web = xlcfg.merge([xlcfg.XlConfig.parse(open(os.path.join(folder, "configs", "web.cfg"))
                                            .read(), "web.cfg")])
    assert web["name"] == "web"
    assert web["kernel"] == "/var/lib/xen/images/web.kernel"
    assert web["ramdisk"] == "/var/lib/xen/images/web/ramdisk.img"
    assert web["disk"] == ["format=raw, vdev=xvda, access=rw, "
                           "target=/var/lib/xen/images/web.img"]
    assert web["vif"] == ["bridge=xenbr0"]
    assert web["on_crash"] == "restart" and web["type"] == "pvh"
    db = xlcfg.merge([xlcfg.XlConfig.parse(open(os.path.join(folder, "configs", "db.cfg"))
                                           .read(), "db.cfg")])
    assert "vif" not in db and "ramdisk" not in db
    for name in ("web", "db"):
        rc, domain, err = real_xl(os.path.join(folder, "configs", f"{name}.cfg"))
        assert rc == 0 and err == "", err
        assert domain["c_info"]["name"] == name
        assert domain["disks"][0]["pdev_path"] == f"/var/lib/xen/images/{name}.img"


def test_the_disks_are_what_render_disk_writes(bundled, guests, tmp_path):
    d, _ = bundled
    images = os.path.join(d.getVar("D") + d.getVar("datadir"), "xen-guest-bundles",
                          "my-guests", "images")
    for name in ("web", "db"):
        disk = os.path.join(images, f"{name}.img")
        rendered = str(tmp_path / f"{name}.img")
        subprocess.run([sys.executable, MKIMAGE, "render-disk", guests[name], rendered],
                       env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH), check=True)
        assert open(disk, "rb").read() == open(rendered, "rb").read()
        assert os.stat(disk).st_blocks * 512 < 8 << 20  # sparse


def test_what_the_host_does_not_run_is_said(bundled):
    _, logs = bundled
    log = logs["do_install"]
    assert "WARNING: db: on a meta-virtualization host its init scripts do not run " \
           "(init.d/10-hook.sh)" in log
    assert "xenguest-mvirt-bundle: web:web.img:web.kernel:autostart" in log


def test_a_nat_guest_needs_a_vif_of_its_own(env, guests):
    example = build_image(env, EXAMPLE)
    recipe = bundle(env, "nat-guests", f'XENGUEST_MVIRT_GUESTS = "{example}"\n')
    d = env.parse(recipe)
    with pytest.raises(AssertionError) as failure:
        env.run_until(recipe, d, "do_install")
    assert "XENGUEST_NETWORK_TYPE is nat: a meta-virtualization host has no NAT network for " \
           "guests: give the guest a vif with XENGUEST_MVIRT_VIF[xenguest-image-minimal-" in \
           str(failure.value)
    recipe = bundle(env, "nat-guests", f'XENGUEST_MVIRT_GUESTS = "{example};guestname=ex"\n'
                                       'XENGUEST_MVIRT_VIF[ex] = "bridge=br1,mac=00:16:3e:00:00:01"\n')
    d = env.parse(recipe)
    assert d.getVar("XENGUEST_MVIRT_VIFS") == "ex=bridge=br1,mac=00:16:3e:00:00:01"
    env.run_until(recipe, d, "do_install")
    config = os.path.join(d.getVar("D") + d.getVar("datadir"), "xen-guest-bundles",
                          "nat-guests", "configs", "ex.cfg")
    assert xlcfg.merge([xlcfg.XlConfig.parse(open(config).read(), "ex.cfg")])["vif"] == [
        "bridge=br1,mac=00:16:3e:00:00:01"]


def test_a_multiconfig_guest(tmp_path_factory):
    env = be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")), multiconfigs={
        "guest": 'MACHINE = "qemux86-64"\nTMPDIR = "${TOPDIR}/tmp-guest"\n'})
    recipe = bundle(env, "mc-guests", 'XENGUEST_MVIRT_GUESTS = "mc:guest:xenguest-image-minimal;'
                                      'machine=qemux86-64;'
                                      'deploydir=${TOPDIR}/tmp-guest/deploy/images/qemux86-64"\n')
    d = env.parse(recipe)
    assert d.getVarFlag("do_install", "mcdepends").split() == [
        "mc::guest:xenguest-image-minimal:do_image_complete"]
    assert be.runqueue_mcdepends(d, "do_install", "") == [
        "mc::guest:xenguest-image-minimal:do_image_complete"]


def test_a_wrong_entry_stops_the_parse(env):
    recipe = bundle(env, "bad-guests", 'XENGUEST_MVIRT_GUESTS = "mc:guest"\n')
    assert 'XENGUEST_MVIRT_GUESTS = "mc:guest": expected mc:MULTICONFIG:RECIPE' in \
        be.parse_failure(env, recipe)


def test_the_bundle_follows_the_library_and_skips_reading_disks_whole(env, guests):
    example = build_image(env, EXAMPLE)
    recipe = bundle(env, "lib-guests", f'XENGUEST_MVIRT_GUESTS = "{example}"\n')
    d = env.parse(recipe)
    entries = d.getVarFlag("do_install", "file-checksums").split()
    assert os.path.join(be.LIB, "xenguest", "operations", "render.py") + ":True" in entries
    assert all(os.path.exists(e.rsplit(":", 1)[0]) for e in entries if e.endswith(":True"))
    assert "buildpaths" in d.getVar("INSANE_SKIP:lib-guests").split()
    assert d.getVar("INHIBIT_DEFAULT_DEPS") == "1"


def test_an_os_error_while_writing_a_bundle_is_one_line(tmp_path, guests):
    """An OSError (here: a file where a guest's file goes) names the guest entry and the
    file, as a user error, not a traceback."""
    from xenguest.bitbake import host, mvirt
    from xenguest.errors import XenguestError

    root, bundle = str(tmp_path / "root"), str(tmp_path / "bundle")
    be.write_tree(root, {"var/lib/xen/images/web": "in the way\n"})
    guest = host.HostGuest("web-entry", "web", guests["web"])
    with pytest.raises(XenguestError) as failure:
        mvirt.write_bundle([guest], bundle, root, "xenbr0", {})
    assert failure.value.message.startswith('XENGUEST_MVIRT_GUESTS = "web-entry": ')
    assert f"{root}/var/lib/xen/images/web" in failure.value.message
    assert "\n" not in failure.value.message

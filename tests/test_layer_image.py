"""The xenguest-image class, parsed and run by the real BitBake over the real layer."""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap

import bitbake_env as be
import pytest
from bitbake_env import bb
from xenguest import operations
from xenguest.disk.compression import decompressed
from xenguest.problems import ERROR

MKIMAGE = os.path.join(be.LAYER, "scripts", "xenguest-mkimage")

EXAMPLE = os.path.join(be.LAYER, "recipes-guests", "images", "xenguest-image-minimal.bb")
EXAMPLE_FILES = os.path.join(be.LAYER, "recipes-guests", "images", "xenguest-image-minimal")
KERNEL = b"guest kernel\n" * 100
EPOCH = "1700000000"


def deploy(d, name, data):
    """Put a file where the kernel recipe's do_deploy would (DEPLOY_DIR_IMAGE)."""
    folder = d.getVar("DEPLOY_DIR_IMAGE")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def make_env(tmp_path_factory, **kwargs):
    kwargs.setdefault("local_conf", f'SOURCE_DATE_EPOCH = "{EPOCH}"\n')
    return be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")), **kwargs)


def guest(env, name, settings="", files=None):
    """Write an image recipe inheriting the class, with *settings* (any indentation)."""
    text = 'LICENSE = "MIT"\ninherit core-image xenguest-image\n' + textwrap.dedent(settings)
    return env.write_recipe(name, text, files)


def build(env, recipe, target="do_image_complete"):
    d = env.parse(recipe)
    deploy(d, d.getVar("KERNEL_IMAGETYPE"), KERNEL)
    return d, env.run_until(recipe, d, target)


def partitions(disk):
    return [(p["number"], p["size_mib"], p["fs"], p["content"]) for p in disk["partitions"]]


def output(d):
    """The deployed image, through its link, and the link."""
    link = os.path.join(d.getVar("DEPLOY_DIR_IMAGE"), d.getVar("IMAGE_LINK_NAME") + ".xenguest")
    return os.path.realpath(link), link


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return make_env(tmp_path_factory)


@pytest.fixture(scope="module")
def example(env):
    d, logs = build(env, EXAMPLE)
    return d, logs


def test_example_image_is_deployed_with_its_link(example):
    d, _ = example
    path, link = output(d)
    assert os.readlink(link) == d.getVar("IMAGE_NAME") + ".xenguest"
    assert os.path.basename(path) == d.getVar("IMAGE_NAME") + ".xenguest"
    # Written into IMGDEPLOYDIR by the task, deployed by do_image_complete.
    assert os.path.isfile(os.path.join(d.getVar("IMGDEPLOYDIR"), os.path.basename(path)))
    # Next to the image's usual outputs.
    usual = os.path.join(d.getVar("DEPLOY_DIR_IMAGE"), d.getVar("IMAGE_LINK_NAME") + ".tar.zst")
    assert os.path.exists(usual)
    assert [p for p in operations.check(path) if p.severity == ERROR] == []


def test_example_image_contents(example):
    d, _ = example
    path, _ = output(d)
    with operations.open_image(path) as image:
        info = operations.info(image)
        assert (info["memory"], info["vcpus"], info["type"]) == (256, 1, "pvh")
        assert info["cmdline"] == "earlyprintk=xenboot console=hvc0 rw"
        assert info["root"] == "/dev/xvda1"
        assert image.read_bytes(info["kernel"]["path"]) == KERNEL
        # the identity defaults: the recipe's name, and PV without a DISTRO_VERSION
        assert dict(info["params"]) == {"GUEST_AUTOBOOT": "1", "XENGUEST_NETWORK_TYPE": "nat",
                                        "XENGUEST_NETWORK_PORT_FORWARD": "2222:22/tcp",
                                        "GUEST_COMPATIBLE": "xenguest-image-minimal",
                                        "GUEST_VERSION": "1.0"}
        disk = info["disk"]
        assert disk["size_mib"] == 1000
        assert partitions(disk) == [(1, 1000, "ext4", "rootfs.tar.zst")]
        tarball = os.path.join(d.getVar("IMGDEPLOYDIR"), d.getVar("IMAGE_NAME") + ".tar.zst")
        assert image.read_bytes("disk/rootfs.tar.zst") == open(tarball, "rb").read()
        scripts = operations.init_scripts(image)
        expected = {"init.pre": "10-report-network.sh", "init.d": "10-report-domain.sh",
                    "init.post": "10-report-started.sh"}
        for stage, name in expected.items():
            assert [(s["name"], s["mode"]) for s in scripts[stage]] == [(name, "0o755")]
            assert scripts[stage][0]["text"] == open(os.path.join(EXAMPLE_FILES, name)).read()


def test_rootfs_tarball_is_the_images_own(example):
    d, _ = example
    path, _ = output(d)
    with operations.open_image(path) as image, image.open_member("disk/rootfs.tar.zst") as f:
        with decompressed(f, "zst", shutil.which("zstd")) as stream:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                names = tar.getnames()
    assert "./etc/hostname" in names


def test_task_order_and_flags(example):
    d, _ = example
    deps = d.getVarFlag("do_image_xenguest", "deps", False)
    assert "do_image" in deps and "do_image_tar" in deps
    assert "do_image_xenguest" in d.getVarFlag("do_image_complete", "deps", False)
    assert d.getVarFlag("do_image_xenguest", "depends").split() == ["virtual/kernel:do_deploy"]
    assert d.getVarFlag("do_image_xenguest", "subimages") == "xenguest"
    assert "create_symlinks" in d.getVarFlag("do_image_xenguest", "postfuncs").split()
    assert "xenguest" in d.getVar("IMAGE_FSTYPES").split()
    assert d.getVar("IMAGE_TYPEDEP:xenguest") == "tar.zst"


def test_task_log_names_every_setting(example):
    _, logs = example
    log = logs["do_image_xenguest"]
    for expected in ("--xen-memory=256  (XENGUEST_IMAGE_MEMORY_SIZE)",
                     '--xen-set=type="pvh"  (XENGUEST_IMAGE_GUEST_TYPE)',
                     "10-report-network.sh  (XENGUEST_IMAGE_INIT_PRE)",
                     "--disk-add-part=1:1:ext4:rootfs.tar.zst  (XENGUEST_IMAGE_DISK_PARTITIONS)",
                     "xenguest: wrote "):
        assert expected in log
    assert "ERROR" not in log


def test_output_manifest_lists_the_image(example):
    d, _ = example
    data = json.load(open(d.getVar("IMAGE_OUTPUT_MANIFEST")))
    tasks = {entry["taskname"]: entry for entry in data}
    assert tasks["image_xenguest"]["imagetype"] == "xenguest"
    assert tasks["image_xenguest"]["images"] == [{"filename": d.getVar("IMAGE_NAME") + ".xenguest"}]


def test_progress_is_reported_to_bitbake(env, example):
    d, _ = example
    events = []
    # A class handler, as a bbclass's addhandler would register it.
    bb.event.register("test_progress", lambda e, data: events.append(e.progress),
                      ["bb.build.TaskProgress"])
    d.setVar("__BBHANDLERS_MC", (d.getVar("__BBHANDLERS_MC") or set()) | {"test_progress"})
    try:
        rc, _ = env.run_task(EXAMPLE, "do_image_xenguest", d)
    finally:
        bb.event.remove("test_progress", None)
    assert rc == 0
    assert events and events[-1] == 100 and all(0 <= p <= 100 for p in events)


def test_reproducible_across_builds(tmp_path_factory, example):
    d, _ = example
    first, _ = output(d)
    other = make_env(tmp_path_factory)
    d2, _ = build(other, EXAMPLE)
    second, _ = output(d2)
    assert first != second
    assert open(first, "rb").read() == open(second, "rb").read()
    with tarfile.open(first) as tar:
        assert {m.mtime for m in tar.getmembers()} == {int(EPOCH)}
        assert {(m.uid, m.gid) for m in tar.getmembers()} == {(0, 0)}


def test_source_date_epoch_sets_member_times(tmp_path_factory, example):
    d, _ = example
    other = make_env(tmp_path_factory, local_conf='SOURCE_DATE_EPOCH = "1600000000"\n')
    d2, _ = build(other, EXAMPLE)
    path, _ = output(d2)
    with tarfile.open(path) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1600000000}
    assert open(path, "rb").read() != open(output(d)[0], "rb").read()


def test_all_settings(env, tmp_path):
    data = tmp_path / "data.img"
    data.write_bytes(b"\0" * 4096)
    recipe = guest(env, "guest-all", f"""
        XENGUEST_IMAGE_MEMORY_SIZE = "1024"
        XENGUEST_IMAGE_NUM_VCPUS = "2"
        XENGUEST_IMAGE_AUTOBOOT = "0"
        XENGUEST_IMAGE_GUEST_TYPE = ""
        XENGUEST_IMAGE_CMDLINE = "console=hvc0   rw"
        XENGUEST_IMAGE_EXTRA_CMD = "quiet loglevel=3"
        XENGUEST_IMAGE_DTB = "guest.dtb"
        XENGUEST_IMAGE_RAMDISK = "file://initrd.cpio.gz"
        XENGUEST_IMAGE_DEPLOY_DEPENDS = "guest-dtb:do_deploy"
        XENGUEST_IMAGE_XEN_CONFIG = "file://net.cfg"
        XENGUEST_IMAGE_FILES = "file://firmware.bin:fw/firmware.bin file://notes.txt"
        XENGUEST_IMAGE_PARAMS = "APP_MODE=fast APP_LEVEL=3"
        XENGUEST_IMAGE_NETWORK_TYPE = "none"
        XENGUEST_IMAGE_DISK_SIZE = "3000M"
        XENGUEST_IMAGE_DISK_DEVICE = "/dev/vg0/guest"
        XENGUEST_IMAGE_ROOTFS_TYPE = "tar.xz"
        XENGUEST_IMAGE_DISK_FILES = "{data}"
        XENGUEST_IMAGE_DISK_PARTITIONS = "1:2000M:ext4:rootfs.tar.xz 2:500M:swap: 3:500M::data.img:keep"
        XENGUEST_IMAGE_COMPATIBLE = "acme/gateway"
        XENGUEST_IMAGE_VERSION = "2.1~rc1"
        """, {"initrd.cpio.gz": "initrd", "net.cfg": "vif = ['bridge=xenbr1']\n",
              "firmware.bin": "fw", "notes.txt": "notes"})
    d = env.parse(recipe)
    assert d.getVarFlag("do_image_xenguest", "depends").split() == [
        "virtual/kernel:do_deploy", "guest-dtb:do_deploy"]
    deploy(d, "guest.dtb", b"dtb")
    build(env, recipe)
    with operations.open_image(output(d)[0]) as image:
        info = operations.info(image)
        config = operations.xen_config(image)["config"]
        assert (info["memory"], info["vcpus"], info["type"]) == (1024, 2, None)
        assert info["cmdline"] == "console=hvc0 rw quiet loglevel=3"
        assert image.read_bytes(info["device_tree"]["path"]) == b"dtb"
        assert image.read_bytes(info["ramdisk"]["path"]) == b"initrd"
        assert config["vif"] == ["bridge=xenbr1"]
        assert image.read_text("guest.d/net.cfg") == "vif = ['bridge=xenbr1']\n"
        assert image.read_bytes("files/fw/firmware.bin") == b"fw"
        assert image.read_bytes("files/notes.txt") == b"notes"
        assert dict(info["params"]) == {"GUEST_AUTOBOOT": "0", "XENGUEST_NETWORK_TYPE": "none",
                                        "APP_MODE": "fast", "APP_LEVEL": "3",
                                        "GUEST_COMPATIBLE": "acme/gateway",
                                        "GUEST_VERSION": "2.1~rc1"}
        assert [p["keep"] for p in info["disk"]["partitions"]] == [False, False, True]
        disk = info["disk"]
        assert (disk["size_mib"], disk["device"]) == (3000, "/dev/vg0/guest")
        assert partitions(disk) == [
            (1, 2000, "ext4", "rootfs.tar.xz"), (2, 500, "swap", ""), (3, 500, "", "data.img")]
        assert image.read_bytes("disk/data.img") == data.read_bytes()
        assert image.exists("disk/rootfs.tar.xz")
    assert d.getVar("IMAGE_TYPEDEP:xenguest") == "tar.xz"
    assert [p for p in operations.check(output(d)[0]) if p.severity == ERROR] == []


def test_version_follows_the_distro_and_identity_can_be_left_out(env):
    recipe = guest(env, "guest-distro", 'DISTRO_VERSION = "5.0.3+snapshot-1a2b"\n')
    d = env.parse(recipe)
    assert d.getVar("XENGUEST_IMAGE_VERSION") == "5.0.3+snapshot-1a2b"
    assert d.getVar("XENGUEST_IMAGE_COMPATIBLE") == "guest-distro"
    recipe = guest(env, "guest-anonymous", 'XENGUEST_IMAGE_COMPATIBLE = ""\n'
                   'XENGUEST_IMAGE_VERSION = ""\n')
    d, _ = build(env, recipe)
    with operations.open_image(output(d)[0]) as image:
        info = operations.info(image)
        assert (info["compatible"], info["version"]) == (None, None)


def test_initramfs_guest_has_no_disk(env):
    recipe = guest(env, "guest-initramfs", """
        XENGUEST_IMAGE_RAMDISK = "file://initrd.cpio.gz"
        """, {"initrd.cpio.gz": "initrd"})
    d, _ = build(env, recipe)
    assert d.getVar("XENGUEST_IMAGE_DISK_SIZE") == "0"
    assert d.getVar("XENGUEST_IMAGE_DISK_PARTITIONS") == ""
    assert d.getVar("IMAGE_TYPEDEP:xenguest") == ""
    assert "do_image_tar" not in d.getVarFlag("do_image_xenguest", "deps", False)
    with operations.open_image(output(d)[0]) as image:
        info = operations.info(image)
        assert info["disk"]["size_mib"] == 0 and info["disk"]["partitions"] == []
        assert info["root"] is None
        assert image.files_in("disk") == []


def test_no_kernel(env):
    recipe = guest(env, "guest-nokernel", 'XENGUEST_IMAGE_KERNEL = ""\n')
    d, _ = build(env, recipe)
    assert not d.getVarFlag("do_image_xenguest", "depends")
    with operations.open_image(output(d)[0]) as image:
        assert operations.info(image)["kernel"] is None


def test_earlier_layer_names_still_work(env):
    recipe = guest(env, "guest-legacy", """
        XENGUEST_EXTRA_INIT = "file://legacy.sh"
        XENGUEST_EXTRA_XENCONFIG = "file://legacy.cfg"
        """, {"legacy.sh": "#!/bin/sh\n", "legacy.cfg": "on_crash = 'restart'\n"})
    d, _ = build(env, recipe)
    with operations.open_image(output(d)[0]) as image:
        assert image.exists("init.d/legacy.sh")
        assert operations.xen_config(image)["config"]["on_crash"] == "restart"


def test_image_type_can_be_turned_off(env):
    recipe = guest(env, "guest-off", 'IMAGE_FSTYPES:remove = "xenguest"\n')
    d = env.parse(recipe)
    assert "do_image_xenguest" not in d.getVar("__BBTASKS", False)
    assert "do_image_xenguest" not in env.task_order(d, "do_image_complete")


def test_missing_deployed_kernel_fails_the_task(env):
    recipe = guest(env, "guest-kernelname", 'XENGUEST_IMAGE_KERNEL = "Image-missing"\n')
    d = env.parse(recipe)
    with pytest.raises(AssertionError) as failure:
        env.run_until(recipe, d, "do_image_complete")
    assert "do_image_xenguest failed" in str(failure.value)
    assert 'XENGUEST_IMAGE_KERNEL = "Image-missing"' in str(failure.value)
    assert "does not exist" in str(failure.value)


def test_library_error_at_task_time_names_the_variable(env):
    recipe = guest(env, "guest-badfragment", """
        XENGUEST_IMAGE_XEN_CONFIG = "${TMPDIR}/generated/bad.cfg"
        """)
    d = env.parse(recipe)
    os.makedirs(os.path.join(d.getVar("TMPDIR"), "generated"), exist_ok=True)
    with open(os.path.join(d.getVar("TMPDIR"), "generated", "bad.cfg"), "w") as f:
        f.write('extra = "unterminated\n')
    deploy(d, d.getVar("KERNEL_IMAGETYPE"), KERNEL)
    with pytest.raises(AssertionError) as failure:
        env.run_until(recipe, d, "do_image_complete")
    assert "XENGUEST_IMAGE_XEN_CONFIG: --xen-append=" in str(failure.value)
    assert not os.path.exists(os.path.join(d.getVar("IMGDEPLOYDIR"),
                                           d.getVar("IMAGE_NAME") + ".xenguest"))


def test_signature_follows_settings_and_files(env):
    files = {"hook.sh": "#!/bin/sh\necho one\n"}
    recipe = guest(env, "guest-sig", 'XENGUEST_IMAGE_INIT = "file://hook.sh"\n', files)
    base1, sums1 = be.signature_inputs(env.parse(recipe), recipe, "do_image_xenguest")
    hook = os.path.join(os.path.dirname(recipe), "files", "hook.sh")
    assert hook in [path for path, _ in sums1]
    # The library's own sources are inputs too.
    assert os.path.join(be.LIB, "xenguest", "operations", "__init__.py") in [p for p, _ in sums1]
    with open(hook, "w") as f:
        f.write("#!/bin/sh\necho two\n")
    base2, sums2 = be.signature_inputs(env.parse(recipe), recipe, "do_image_xenguest")
    assert base2 == base1 and sums2 != sums1
    guest(env, "guest-sig", 'XENGUEST_IMAGE_INIT = "file://hook.sh"\n'
          'XENGUEST_IMAGE_MEMORY_SIZE = "768"\n', files)
    base3, _ = be.signature_inputs(env.parse(recipe), recipe, "do_image_xenguest")
    assert base3 != base1


def test_parse_cache_of_a_guest_stays_valid(env):
    """BitBake's parse cache (bb.cache.Cache.cacheValidUpdate) drops a recipe whose
    "PATH:True" file-checksums entry names no existing path, as a glob does: the guest
    would be parsed again in every bitbake command."""
    recipe = guest(env, "guest-cache", "")
    d = env.parse(recipe)
    entries = re.split(r"(?:(?<=:True)|(?<=:False))\s+",
                       d.getVarFlag("do_image_xenguest", "file-checksums").strip())
    stale = [e for e in entries if os.path.exists(e.rsplit(":", 1)[0]) != (e.endswith(":True"))]
    assert not stale
    # Every library module that makes images is an input and a parse dependency.
    modules = {e.rsplit(":", 1)[0] for e in entries if e.startswith(be.LIB)}
    assert os.path.join(be.LIB, "xenguest", "disk", "build.py") in modules
    assert modules <= {path for path, _ in d.getVar("__depends", False)}


@pytest.mark.parametrize("series,tarball", [("scarthgap", "tar.bz2"), ("walnascar", "tar.bz2"),
                                            ("whinlatter", "tar.zst"), ("wrynose", "tar.zst")])
def test_the_rootfs_tarball_the_image_builds_anyway_is_used(tmp_path_factory, series, tarball):
    """OE-core's qemu machines build tar.bz2 (before whinlatter) or tar.zst: the guest
    disk takes that tarball, with no second compression pass over the rootfs."""
    env = make_env(tmp_path_factory, series=series)
    d, _ = build(env, EXAMPLE)
    assert d.getVar("XENGUEST_IMAGE_ROOTFS_TYPE") == tarball
    wanted = [t for t in d.getVar("IMAGE_FSTYPES").split() if t.startswith("tar")]
    assert wanted == [tarball]
    assert d.getVarFlag("do_image_tar", "subimages").split() == [tarball]
    written = sorted(n for n in os.listdir(d.getVar("IMGDEPLOYDIR")) if ".tar" in n)
    assert written == sorted([d.getVar("IMAGE_LINK_NAME") + "." + tarball,
                              d.getVar("IMAGE_NAME") + "." + tarball])
    with operations.open_image(output(d)[0]) as image:
        assert partitions(operations.info(image)["disk"]) == [
            (1, 1000, "ext4", "rootfs." + tarball)]


def test_a_build_without_a_tarball_type_gets_tar_gz(env):
    recipe = guest(env, "guest-no-tarball", 'IMAGE_FSTYPES = "ext4"\n')
    d = env.parse(recipe)
    assert d.getVar("XENGUEST_IMAGE_ROOTFS_TYPE") == "tar.gz"
    assert d.getVar("IMAGE_TYPEDEP:xenguest") == "tar.gz"


@pytest.mark.parametrize("series", ["scarthgap", "wrynose"])
def test_x86_guest_in_each_series(tmp_path_factory, series):
    env = make_env(tmp_path_factory, series=series, machine="qemux86-64")
    d, _ = build(env, EXAMPLE)
    with operations.open_image(output(d)[0]) as image:
        info = operations.info(image)
        assert info["type"] == "pvh"
        assert image.read_bytes(info["kernel"]["path"]) == KERNEL
    assert d.getVar("XENGUEST_IMAGE_KERNEL") == "bzImage"
    postfuncs = d.getVarFlag("do_image_xenguest", "postfuncs").split()
    assert ("write_image_output_manifest" in postfuncs) == (series != "scarthgap")



def test_bundled_initramfs_kernel(env):
    recipe = guest(env, "guest-bundle", 'INITRAMFS_IMAGE_BUNDLE = "1"\n')
    d = env.parse(recipe)
    assert d.getVar("XENGUEST_IMAGE_KERNEL") == "Image-initramfs-qemuarm64.bin"
    deploy(d, "Image-initramfs-qemuarm64.bin", b"bundle")
    env.run_until(recipe, d, "do_image_complete")
    with operations.open_image(output(d)[0]) as image:
        info = operations.info(image)
        assert image.read_bytes(info["kernel"]["path"]) == b"bundle"
        assert info["disk"]["size_mib"] == 0 and info["root"] is None


def test_the_disk_is_prebuilt_at_build_time(env, tmp_path_factory):
    """XENGUEST_IMAGE_DISK_PREBUILT: the task builds the disk with the -native tools it
    depends on, and the image carries it: the bytes render-disk builds from the image."""
    settings = 'XENGUEST_IMAGE_DISK_PREBUILT = "1"\nXENGUEST_IMAGE_DISK_SIZE = "40M"\n'
    recipe = guest(env, "guest-prebuilt", settings)
    d = env.parse(recipe)
    tools = ["e2fsprogs-native", "util-linux-native", "zstd-native"]  # ext4, no vfat or swap
    assert [t for t in d.getVar("DEPENDS").split() if t.endswith("-native")] == tools
    depends = d.getVarFlag("do_image_xenguest", "depends").split()
    assert [f"{t}:do_populate_sysroot" for t in tools] == depends[1:]
    _, logs = build(env, recipe)
    assert "with its disk prebuilt, disk/disk.img.zst  (XENGUEST_IMAGE_DISK_PREBUILT)" in \
        logs["do_image_xenguest"]
    path, _ = output(d)
    assert [p for p in operations.check(path, verify=True) if p.severity == ERROR] == []
    with operations.open_image(path) as image:
        disk = operations.disk_config(image)
        assert disk["prebuilt"] == "disk.img.zst" and disk["prebuilt_from"].startswith("sha256:")
        assert image.exists("disk/rootfs.tar.zst")  # hosts without it build the disk
        with image.open_member("disk/disk.img.zst") as f, \
                decompressed(f, "zst", shutil.which("zstd")) as stream:
            prebuilt = stream.read()
    rebuilt = str(tmp_path_factory.mktemp("render") / "disk.img")
    environ = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    subprocess.run([sys.executable, MKIMAGE, "render-disk", "--ignore-prebuilt", path, rebuilt],
                   env=environ, check=True)
    assert prebuilt == open(rebuilt, "rb").read()
    # Another build folder, another time: the same image.
    other = make_env(tmp_path_factory)
    d2 = other.parse(guest(other, "guest-prebuilt", settings))
    deploy(d2, d2.getVar("KERNEL_IMAGETYPE"), KERNEL)
    other.run_until(d2.getVar("FILE"), d2, "do_image_complete")
    assert open(output(d2)[0], "rb").read() == open(path, "rb").read()


def test_a_prebuilt_disk_needs_a_disk(env):
    recipe = guest(env, "guest-prebuilt-nodisk", 'XENGUEST_IMAGE_DISK_PREBUILT = "1"\n'
                                                 'XENGUEST_IMAGE_DISK_SIZE = "0"\n')
    message = be.parse_failure(env, recipe)
    assert 'XENGUEST_IMAGE_DISK_PREBUILT = "1": the guest has no disk to build ' \
           "(XENGUEST_IMAGE_DISK_SIZE is 0)" in message

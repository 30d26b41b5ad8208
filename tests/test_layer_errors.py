"""Wrong xenguest-image settings stop the real BitBake parse, naming the variable and value."""

import hashlib
import textwrap

import pytest

import bitbake_env as be

FILES = {
    "ok.sh": "#!/bin/sh\n",
    "a/hook.sh": "#!/bin/sh\n",
    "b/hook.sh": "#!/bin/sh\n",
    "broken.cfg": 'extra = "no end\n',
    "rootfs.tar.zst": "",
}

# (settings, expected fragments of the error)
CASES = [
    ('XENGUEST_IMAGE_MEMORY_SIZE = "lots"',
     ['XENGUEST_IMAGE_MEMORY_SIZE = "lots"', "whole number above 0"]),
    ('XENGUEST_IMAGE_NUM_VCPUS = "0"', ['XENGUEST_IMAGE_NUM_VCPUS = "0"']),
    ('XENGUEST_IMAGE_NUM_VCPUS = "\u00b2"', ['XENGUEST_IMAGE_NUM_VCPUS = "\u00b2"',
                                            "whole number above 0"]),
    ('XENGUEST_IMAGE_AUTOBOOT = "yes"', ['XENGUEST_IMAGE_AUTOBOOT = "yes"', "0, 1"]),
    ('XENGUEST_IMAGE_NETWORK_TYPE = "wifi"',
     ['XENGUEST_IMAGE_NETWORK_TYPE = "wifi"', "bridge, nat, none"]),
    ('XENGUEST_IMAGE_NETWORK_PORT_FORWARD = "2222:22 80"',
     ['XENGUEST_IMAGE_NETWORK_PORT_FORWARD = "2222:22 80"', "'80' is not HOST:GUEST"]),
    ('XENGUEST_IMAGE_NETWORK_PORT_FORWARD = "70000:22"',
     ['XENGUEST_IMAGE_NETWORK_PORT_FORWARD = "70000:22"', "port 70000 is above 65535"]),
    ('XENGUEST_IMAGE_NETWORK_PORT_FORWARD = "22:22/sctp"', ["protocol 'sctp'"]),
    ('XENGUEST_IMAGE_NETWORK_TYPE = "bridge"\nXENGUEST_IMAGE_NETWORK_PORT_FORWARD = "22:22"',
     ['XENGUEST_IMAGE_NETWORK_PORT_FORWARD = "22:22"', "needs XENGUEST_NETWORK_TYPE=nat"]),
    ('XENGUEST_IMAGE_GUEST_TYPE = "hvm"', ['XENGUEST_IMAGE_GUEST_TYPE = "hvm"', "PVH guests only"]),
    ('XENGUEST_IMAGE_GUEST_TYPE = "kvm"', ['XENGUEST_IMAGE_GUEST_TYPE = "kvm"', "pv, pvh, hvm"]),
    ('XENGUEST_IMAGE_ROOT = "/dev/xvda1 ro"', ['XENGUEST_IMAGE_ROOT = "/dev/xvda1 ro"']),
    ('XENGUEST_IMAGE_DISK_SIZE = "1.5G"', ['XENGUEST_IMAGE_DISK_SIZE = "1.5G"', "fractional"]),
    ('XENGUEST_IMAGE_DISK_SIZE = "-4"', ['XENGUEST_IMAGE_DISK_SIZE = "-4"', "negative"]),
    ('XENGUEST_IMAGE_DISK_DEVICE = "/dev/vg;reboot"',
     ['XENGUEST_IMAGE_DISK_DEVICE = "/dev/vg;reboot"']),
    ('XENGUEST_IMAGE_DISK_PARTITIONS = "1:4:btrfs:rootfs.tar.zst"',
     ['XENGUEST_IMAGE_DISK_PARTITIONS = "1:4:btrfs:rootfs.tar.zst"', "invalid filesystem 'btrfs'"]),
    ('XENGUEST_IMAGE_DISK_SIZE = "2"\n'
     'XENGUEST_IMAGE_DISK_PARTITIONS = "1:1:ext4:rootfs.tar.zst 2:2:ext4:"',
     ['XENGUEST_IMAGE_DISK_PARTITIONS = "1:1:ext4:rootfs.tar.zst 2:2:ext4:"', "need 3000M",
      "XENGUEST_IMAGE_DISK_SIZE is 2"]),
    ('XENGUEST_IMAGE_DISK_PARTITIONS = "1:1:ext4:data.tar.gz"',
     ['XENGUEST_IMAGE_DISK_PARTITIONS = "1:1:ext4:data.tar.gz"', "matches nothing"]),
    ('XENGUEST_IMAGE_DISK_PARTITIONS = "5:1:ext4:"', ['"5:1:ext4:"', "1 to 4"]),
    ('XENGUEST_IMAGE_DISK_PARTITIONS = "1:1:ext4: 1:1:vfat:"', ['"1:1:vfat:"', "defined twice"]),
    ('XENGUEST_IMAGE_DISK_PARTITIONS = "1:1:swap:rootfs.tar.zst"',
     ["XENGUEST_IMAGE_DISK_PARTITIONS", "needs a filesystem"]),
    ('XENGUEST_IMAGE_ROOTFS_TYPE = "tar.lz4"',
     ['XENGUEST_IMAGE_ROOTFS_TYPE = "tar.lz4"', "tar, tar.gz, tar.bz2, tar.xz, tar.zst"]),
    ('XENGUEST_IMAGE_INIT_PRE = "file://missing.sh"',
     ['XENGUEST_IMAGE_INIT_PRE = "file://missing.sh"', "no file missing.sh in FILESPATH"]),
    ('XENGUEST_IMAGE_INIT = "/nonexistent/start.sh"',
     ['XENGUEST_IMAGE_INIT = "/nonexistent/start.sh"', "does not exist"]),
    ('XENGUEST_IMAGE_INIT_POST = "ok.sh"', ['XENGUEST_IMAGE_INIT_POST = "ok.sh"', "file://NAME"]),
    ('XENGUEST_IMAGE_INIT = "file://a/hook.sh file://b/hook.sh"',
     ['XENGUEST_IMAGE_INIT = "file://b/hook.sh"', "already given by file://a/hook.sh"]),
    ('XENGUEST_IMAGE_INIT = "file://ok.sh;subdir=x"', ["parameters are not supported"]),
    ('XENGUEST_IMAGE_XEN_CONFIG = "file://broken.cfg"',
     ['XENGUEST_IMAGE_XEN_CONFIG = "file://broken.cfg"', "broken.cfg"]),
    ('XENGUEST_IMAGE_PARAMS = "PATH=/tmp"', ['XENGUEST_IMAGE_PARAMS = "PATH=/tmp"', "reserved"]),
    ('XENGUEST_IMAGE_PARAMS = "9LIVES=yes"',
     ['XENGUEST_IMAGE_PARAMS = "9LIVES=yes"', "NAME=VALUE"]),
    ('XENGUEST_IMAGE_PARAMS = "GUEST_AUTOBOOT=0"', ["set XENGUEST_IMAGE_AUTOBOOT instead"]),
    ('XENGUEST_IMAGE_PARAMS = "GUEST_VERSION=2"', ["set XENGUEST_IMAGE_VERSION instead"]),
    ('XENGUEST_IMAGE_COMPATIBLE = "acme gateway"',
     ['XENGUEST_IMAGE_COMPATIBLE = "acme gateway"', "invalid compatible string"]),
    ('XENGUEST_IMAGE_VERSION = "2.0 (beta)"',
     ['XENGUEST_IMAGE_VERSION = "2.0 (beta)"', "invalid version"]),
    ('DISTRO_VERSION = "5.0 LTS"', ['XENGUEST_IMAGE_VERSION = "5.0 LTS"', "invalid version"]),
    ('XENGUEST_IMAGE_DISK_PARTITIONS = "1:1:ext4:rootfs.tar.zst:kept"',
     ['"1:1:ext4:rootfs.tar.zst:kept"', "NUM:SIZE:FS:CONTENT:keep"]),
    ('XENGUEST_IMAGE_FILES = "file://ok.sh:../escape.sh"',
     ['XENGUEST_IMAGE_FILES = "file://ok.sh:../escape.sh"', "'..' is not allowed"]),
    ('XENGUEST_IMAGE_DISK_FILES = "file://rootfs.tar.zst"',
     ['XENGUEST_IMAGE_DISK_FILES = "file://rootfs.tar.zst"', "image's own rootfs tarball"]),
    ('XENGUEST_IMAGE_KERNEL = "${UNSET_KERNEL_NAME}"',
     ['XENGUEST_IMAGE_KERNEL = "${UNSET_KERNEL_NAME}"', "unexpanded variable"]),
    ('XENGUEST_IMAGE_KERNEL = "Image zImage"',
     ['XENGUEST_IMAGE_KERNEL = "Image zImage"', "one file"]),
    ('XENGUEST_IMAGE_DEPLOY_DEPENDS = "my-initramfs"',
     ['XENGUEST_IMAGE_DEPLOY_DEPENDS = "my-initramfs"', "RECIPE:TASK"]),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return be.BitBakeEnv(str(tmp_path_factory.mktemp("bb")))


@pytest.mark.parametrize("settings,expected", CASES, ids=[c[0].split(" =")[0] for c in CASES])
def test_wrong_setting_fails_the_parse(env, settings, expected, request):
    name = "bad-" + hashlib.sha1(request.node.name.encode()).hexdigest()[:10]
    recipe = env.write_recipe(name, 'LICENSE = "MIT"\ninherit core-image xenguest-image\n'
                              + settings + "\n", FILES)
    message = be.parse_failure(env, recipe)
    assert message.startswith(f"{name}: ")
    for fragment in expected:
        assert fragment in message


def test_class_is_for_image_recipes(env):
    recipe = env.write_recipe("not-an-image", textwrap.dedent("""\
        LICENSE = "MIT"
        inherit xenguest-image
        """))
    assert "inherit it from an image recipe" in be.parse_failure(env, recipe)


def test_every_case_is_a_valid_recipe_once_fixed(env):
    """The cases fail for their setting alone: the same recipe without it parses."""
    recipe = env.write_recipe("good-baseline", 'LICENSE = "MIT"\n'
                              'inherit core-image xenguest-image\n', FILES)
    d = env.parse(recipe)
    assert "do_image_xenguest" in d.getVar("__BBTASKS", False)

"""xenguest-mkimage end to end: every operation and option, through the real command."""

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from mkimage_util import (MKIMAGE, fails, mkimage, ok, patch_header, real_xl_confirms, sha256,
                          tar_member, tar_names, tree, write)


@pytest.fixture
def inputs(tmp_path):
    """Source files a user would pass to the options."""
    src = tmp_path / "src"
    src.mkdir()
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w:gz") as tf:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 6
        tf.addfile(info, io.BytesIO(b"guest\n"))
    files = {
        "kernel": write(str(src / "Image"), b"KERNEL" * 1000),
        "dtb": write(str(src / "guest.dtb"), b"\xd0\x0d\xfe\xed" + b"\0" * 60),
        "ramdisk": write(str(src / "initrd.cpio.gz"), b"RAMDISK"),
        "rootfs": write(str(src / "rootfs.tar.gz"), rootfs.getvalue()),
        "pre": write(str(src / "10-pre"), "#!/bin/sh\necho pre \"$1\"\n", 0o644),
        "script": write(str(src / "20-setup"), "#!/bin/sh\necho d\n", 0o600),
        "post": write(str(src / "30-post"), "#!/bin/sh\necho post\n"),
        "fragment": write(str(src / "net.cfg"), "vif = ['bridge=xenbr0']\n"),
        "blob": write(str(src / "firmware.bin"), b"\x00\x01\x02"),
    }
    return files


def xl(image):
    """The merged xl configuration; the real xl parser must agree with it."""
    config = json.loads(ok("dump-xenconfig", image, "--json").out)["config"]
    real_xl_confirms(image, config)
    return config


def disk(image):
    return json.loads(ok("dump-diskconfig", image, "--json").out)


def params(image):
    return json.loads(ok("dump-paramsconfig", image, "--json").out)


def test_create_defaults_file_image(tmp_path):
    image = str(tmp_path / "guest.xenguest")
    ok("create", image)
    names = tar_names(image)
    assert names[:6] == ["./", "./xenguest.format", "./xenguest.manifest", "./params.cfg",
                         "./guest.cfg", "./disk.cfg"]
    for folder in ("guest.d", "init.pre", "init.d", "init.post", "files", "disk"):
        assert f"./{folder}/" in names
    assert xl(image) == {"memory": 1024, "vcpus": 1,
                         "extra": "earlyprintk=xenboot console=hvc0 rw"}
    assert params(image) == {"GUEST_AUTOBOOT": "1"}
    assert disk(image)["size_mib"] == 0
    assert b'GUEST_AUTOBOOT="1"' in tar_member(image, "./params.cfg")


def test_create_directory_image_in_empty_folder(tmp_path, inputs):
    folder = tmp_path / "img"
    folder.mkdir()
    ok("create", str(folder), f"--xen-kernel={inputs['kernel']}", f"--init-script={inputs['script']}")
    assert (folder / "guest.cfg").is_file()
    assert (folder / "files" / "kernel").read_bytes() == open(inputs["kernel"], "rb").read()
    assert os.stat(folder / "init.d" / "20-setup").st_mode & 0o777 == 0o755
    for sub in ("guest.d", "init.pre", "init.post", "disk"):
        assert (folder / sub).is_dir()
    ok("check", str(folder))


def test_create_refuses_non_empty_folder(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    (folder / "keep").write_text("mine")
    line = fails("create", str(folder))
    assert "not empty" in line
    assert (folder / "keep").read_text() == "mine"


def test_seed_example(tmp_path, inputs):
    """The seed document's options, all in one create."""
    image = str(tmp_path / "seed.xenguest")
    ok("create", image, f"--kernel={inputs['kernel']}", "--xen-memory=512",
       "--xen-extra=root=/dev/xvda1", f"--xen-device-tree={inputs['dtb']}",
       f"--init-script={inputs['script']}", "--disk-size=4",
       "--disk-add-part=1:4:ext4:rootfs.tar.gz",
       f"--disk-add-file={inputs['rootfs']}:rootfs.tar.gz")
    config = xl(image)
    assert config["memory"] == 512
    assert config["kernel"] == "files/kernel"
    assert config["device_tree"] == "files/guest.dtb"
    assert config["extra"] == "earlyprintk=xenboot console=hvc0 rw root=/dev/xvda1"
    d = disk(image)
    assert d["size_mib"] == 4000
    assert d["partitions"] == [{"number": 1, "size_mib": 4000, "size": "4000M", "fs": "ext4",
                                "content": "rootfs.tar.gz", "keep": False}]
    assert tar_member(image, "./disk/rootfs.tar.gz") == open(inputs["rootfs"], "rb").read()
    assert tar_names(image)[-1] == "./disk/rootfs.tar.gz"  # payload last
    ok("check", image)


def test_every_xen_option(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    ok("create", image)
    ok("update", image, "--xen-vcpus=2", "--xen-name=guest1", "--xen-root=/dev/xvda2",
       f"--xen-ramdisk={inputs['ramdisk']}", "--xen-disk=/dev/vg/guest1",
       "--xen-set=type=\"pvh\"", "--xen-set=on_crash='destroy'",
       f"--xen-append={inputs['fragment']}", f"--xen-add-file={inputs['blob']}",
       f"--xen-add-file={inputs['blob']}:fw/renamed.bin")
    config = xl(image)
    assert config["vcpus"] == 2
    assert config["name"] == "guest1"
    assert config["root"] == "/dev/xvda2"
    assert config["ramdisk"] == "files/ramdisk.img"
    assert config["disk"] == ["phy:/dev/vg/guest1,xvda,w"]
    assert config["type"] == "pvh"
    assert config["on_crash"] == "destroy"
    assert config["vif"] == ["bridge=xenbr0"]
    names = tar_names(image)
    assert "./files/firmware.bin" in names  # basename, not the absolute source path
    assert "./files/fw/renamed.bin" in names
    assert "./guest.d/net.cfg" in names
    # removals
    ok("update", image, "--xen-name", "--xen-root=", "--xen-ramdisk=", "--xen-disk=",
       "--xen-set=on_crash", "--xen-rm-append=net.cfg", "--xen-rm-file=fw/renamed.bin")
    config = xl(image)
    for key in ("name", "root", "ramdisk", "disk", "on_crash", "vif"):
        assert key not in config
    ok("pack", image, str(tmp_path / "packed.xenguest"))
    names = tar_names(str(tmp_path / "packed.xenguest"))
    assert "./files/ramdisk.img" not in names and "./guest.d/net.cfg" not in names
    assert "./files/fw/renamed.bin" not in names and "./files/firmware.bin" in names


def test_empty_kernel_value_removes_setting_and_file(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, f"--xen-kernel={inputs['kernel']}")
    assert "./files/kernel" in tar_names(image)
    ok("update", image, "--xen-kernel=")
    assert "kernel" not in xl(image)
    assert not any(n["name"] == "files/kernel" and not n["superseded"]
                   for n in json.loads(ok("list", image, "--json").out))


def test_extra_order_clean_then_add(tmp_path):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, "--xen-clean-extra", "--xen-extra=console=hvc0", "--xen-extra=quiet")
    assert xl(image)["extra"] == "console=hvc0 quiet"  # no leading space
    ok("update", image, "--xen-extra=a", "--xen-clean-extra")
    assert "extra" not in xl(image)


@pytest.mark.parametrize("argument", [
    'init="/sbin/my init"', "a@b/c&d", "back\\slash", "quote'single", "ünïcødé→✓",
    "tab\tinside", "semi;colon $(not run) `nor this`",
])
def test_extra_values_mean_exactly_what_was_typed(tmp_path, argument):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, "--xen-clean-extra", f"--xen-extra={argument}")
    assert xl(image)["extra"] == argument


def test_unrepresentable_value_refused(tmp_path):
    image = str(tmp_path / "g.xenguest")
    ok("create", image)
    before = sha256(image)
    line = fails("update", image, "--xen-extra=bad\x01char")
    assert "--xen-extra=" in line
    assert "empty" in fails("update", image, "--xen-extra=")
    assert sha256(image) == before


def test_init_scripts_and_removal(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, f"--init-pre={inputs['pre']}", f"--init-script={inputs['script']}",
       f"--init-post={inputs['post']}")
    dump = json.loads(ok("dump-init", image, "--json").out)
    assert [s["name"] for s in dump["init.pre"]] == ["10-pre"]
    assert [s["name"] for s in dump["init.d"]] == ["20-setup"]
    assert [s["name"] for s in dump["init.post"]] == ["30-post"]
    assert all(s["mode"] == "0o755" for stage in dump.values() for s in stage)
    text = ok("dump-init", image).out
    assert "### init.pre" in text and "echo pre" in text and "echo post" in text
    ok("update", image, "--init-rm-pre=10-pre", "--init-rm-script=20-setup", "--init-rm-post=30-post")
    assert "(no scripts)" in ok("dump-init", image).out
    fails("update", image, "--init-rm-script=20-setup")


def test_same_script_twice_replaces_it(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    other = write(str(tmp_path / "other" / "20-setup"), "#!/bin/sh\necho second\n")
    ok("create", image, f"--init-script={inputs['script']}", f"--init-script={other}")
    assert json.loads(ok("dump-init", image, "--json").out)["init.d"][0]["text"] == \
        "#!/bin/sh\necho second\n"


def test_params(tmp_path):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, "--set-param=XENGUEST_NETWORK_TYPE=bridge",
       "--set-param=NOTE=it's $(not) run", "--set-param=GUEST_AUTOBOOT=0")
    assert params(image) == {"GUEST_AUTOBOOT": "0", "XENGUEST_NETWORK_TYPE": "bridge",
                             "NOTE": "it's $(not) run"}
    # exact names only: AUTOBOOT does not remove GUEST_AUTOBOOT
    assert "no parameter AUTOBOOT" in fails("update", image, "--set-param=AUTOBOOT")
    ok("update", image, "--set-param=NOTE")
    assert "NOTE" not in params(image)
    assert "reserved" in fails("update", image, "--set-param=LD_PRELOAD=/x.so")
    assert "invalid parameter name" in fails("update", image, "--set-param=1BAD=x")


def test_disk_options(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    # a partition may name its content before the file is added, in one command
    ok("create", image, "--disk-size=2G", "--disk-add-part=1:1500M:ext4:rootfs.tar.gz",
       "--disk-add-part=2:500M:swap:", f"--disk-add-file={inputs['rootfs']}",
       "--disk-device=/dev/vg0/guest")
    d = disk(image)
    assert d["size_mib"] == 2000 and d["device"] == "/dev/vg0/guest"
    assert [(p["number"], p["size_mib"], p["fs"], p["content"]) for p in d["partitions"]] == \
        [(1, 1500, "ext4", "rootfs.tar.gz"), (2, 500, "swap", "")]
    assert [f["name"] for f in d["files"]] == ["rootfs.tar.gz"]
    ok("update", image, "--disk-rm-part=2", "--disk-add-part=3:100M:vfat:")
    assert [p["number"] for p in disk(image)["partitions"]] == [1, 3]


def test_disk_errors_leave_image_untouched(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, "--disk-size=8", "--disk-add-part=1:4:ext4:rootfs.tar.gz",
       f"--disk-add-file={inputs['rootfs']}")
    before = sha256(image)
    cases = [
        ("--disk-add-part=5:1:ext4:", "5"),               # id outside 1-4
        ("--disk-add-part=1:4:xfs:rootfs.tar.gz", "xfs"),  # a failed redefinition
        ("--disk-add-part=2:5:ext4:", "8000M"),           # more than the disk
        ("--disk-add-part=2:1:ext4:missing.tar", "missing.tar"),
        ("--disk-add-part=2:100M:ext4:rootfs.tar.gz", "rootfs.tar.gz"),  # content used twice
        ("--disk-size=lots", "lots"),
        ("--disk-rm-part=3", "3"),
        ("--disk-add-file=/nonexistent/file.tar", "/nonexistent/file.tar"),
        ("--disk-add-file=x.tar:../escape.tar", "escape"),
    ]
    big = tmp_path / "big.img"
    with open(big, "wb") as f:
        f.truncate((1000 << 20) + 1)
    cases.append((f"--disk-add-part=2:1:ext4:big.img --disk-add-file={big}", "more than"))
    for option, detail in cases:
        line = fails("update", image, *option.split(" "))
        assert detail in line, (option, line)
        assert sha256(image) == before, option
    assert disk(image)["partitions"][0]["fs"] == "ext4"


def test_exact_full_size_partition_is_valid(tmp_path, inputs):
    """Images in the field: DISK_SIZE="4000M" with one 4 GB partition."""
    image = str(tmp_path / "g.xenguest")
    ok("create", image, "--disk-size=4000M", "--disk-add-part=1:4:ext4:rootfs.tar.gz",
       f"--disk-add-file={inputs['rootfs']}")
    ok("check", image)


def test_resets(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, f"--xen-kernel={inputs['kernel']}", "--xen-memory=64",
       f"--xen-append={inputs['fragment']}", "--disk-size=1",
       "--set-param=X=1")
    ok("update", image, "--xen-reset-config")
    assert xl(image) == {"memory": 1024, "vcpus": 1, "extra": "earlyprintk=xenboot console=hvc0 rw"}
    assert disk(image)["size_mib"] == 1000
    ok("update", image, "--disk-reset-config")
    assert disk(image)["size_mib"] == 0
    for spelling in ("--guest-reset-config", "--guest-config-reset"):
        ok("update", image, spelling)
        assert params(image) == {"GUEST_AUTOBOOT": "1"}
        names = json.loads(ok("list", image, "--json").out)
        assert not [n for n in names if not n["superseded"] and n["name"].startswith("files/")]


def test_failed_update_keeps_file_image_byte_identical(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, f"--xen-kernel={inputs['kernel']}")
    before = sha256(image)
    fails("update", image, "--xen-memory=2048", "--xen-kernel=/does/not/exist")
    assert sha256(image) == before
    assert sorted(os.listdir(tmp_path)) == ["g.xenguest", "src"]  # no temporary file left


def test_bad_source_in_directory_image_keeps_it(tmp_path, inputs):
    folder = tmp_path / "img"
    folder.mkdir()
    ok("create", str(folder), f"--xen-kernel={inputs['kernel']}")
    before = tree(str(folder))
    fails("update", str(folder), "--xen-memory=64", "--init-script=/no/such/script")
    assert tree(str(folder)) == before


def test_update_appends_and_pack_compacts(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, f"--xen-kernel={inputs['kernel']}", "--disk-size=1",
       "--disk-add-part=1:1:ext4:rootfs.tar.gz", f"--disk-add-file={inputs['rootfs']}")
    size = os.path.getsize(image)
    ok("update", image, "--xen-memory=256")
    assert b"memory = 256" in tar_member(image, "./guest.cfg")  # GNU tar: last one wins
    assert os.path.getsize(image) - size <= 20480
    assert "superseded" in ok("info", image).out
    assert any("superseded" in line for line in ok("check", image).out.splitlines())
    packed = str(tmp_path / "packed.xenguest")
    ok("pack", image, packed)
    fresh = str(tmp_path / "fresh.xenguest")
    ok("create", fresh, f"--xen-kernel={inputs['kernel']}", "--disk-size=1",
       "--disk-add-part=1:1:ext4:rootfs.tar.gz", f"--disk-add-file={inputs['rootfs']}",
       "--xen-memory=256")
    assert sha256(packed) == sha256(fresh)
    ok("pack", image, image)  # compact in place
    assert sha256(image) == sha256(fresh)
    assert "exists already" in fails("pack", image, packed)


def test_reproducible_whatever_the_source_mtimes(tmp_path, inputs):
    args = [f"--xen-kernel={inputs['kernel']}", f"--init-script={inputs['script']}",
            "--disk-size=1", "--disk-add-part=1:1:ext4:rootfs.tar.gz",
            f"--disk-add-file={inputs['rootfs']}"]
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    ok("create", str(tmp_path / "a"), *args, env=env)
    os.utime(inputs["kernel"], (1, 1))
    os.chmod(inputs["script"], 0o700)
    ok("create", str(tmp_path / "b"), *args, env=env)
    assert sha256(str(tmp_path / "a")) == sha256(str(tmp_path / "b"))
    with tarfile.open(str(tmp_path / "a")) as tf:
        assert {m.mtime for m in tf} == {1700000000}
        assert {(m.uid, m.gid, m.uname, m.gname) for m in tf} == {(0, 0, "root", "root")}
    ok("create", str(tmp_path / "c"), *args)
    with tarfile.open(str(tmp_path / "c")) as tf:
        assert {m.mtime for m in tf} == {315532800}


def test_extract_and_extract_config(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, f"--xen-kernel={inputs['kernel']}", "--disk-size=1",
       "--disk-add-part=1:1:ext4:rootfs.tar.gz", f"--disk-add-file={inputs['rootfs']}",
       f"--init-script={inputs['script']}")
    full = tmp_path / "full"
    full.mkdir()
    ok("extract", image, str(full))
    assert (full / "disk" / "rootfs.tar.gz").read_bytes() == open(inputs["rootfs"], "rb").read()
    assert os.stat(full / "init.d" / "20-setup").st_mode & 0o777 == 0o755
    config = tmp_path / "config"
    config.mkdir()
    ok("extract-config", image, str(config))
    assert (config / "guest.cfg").exists() and not (config / "disk" / "rootfs.tar.gz").exists()
    # nothing is overwritten
    assert "exists" in fails("extract", image, str(full))
    assert "no such folder" in fails("extract", image, str(tmp_path / "missing"))
    out = mkimage("extract-disk-file", image, "rootfs.tar.gz")
    assert out.rc == 0
    raw = os.popen(f"{__import__('sys').executable} {__import__('mkimage_util').MKIMAGE} "
                   f"extract-disk-file {image} rootfs.tar.gz | sha256sum").read().split()[0]
    assert raw == sha256(inputs["rootfs"])
    assert "no disk file" in fails("extract-disk-file", image, "other.tar")


def test_check_reports_problems(tmp_path, inputs):
    folder = tmp_path / "img"
    folder.mkdir()
    ok("create", str(folder), f"--xen-kernel={inputs['kernel']}", f"--init-script={inputs['script']}")
    (folder / "files" / "kernel").unlink()
    os.chmod(folder / "init.d" / "20-setup", 0o644)
    (folder / "guest.d" / "bad.cfg").write_text("memory = [\n")
    (folder / "guest.d" / "typo.cfg").write_text("memroy = 12\n")
    (folder / "guest.d" / "plus.cfg").write_text("vcpus += 2\n")
    (folder / "params.cfg").write_text('X="$(reboot)"\n')
    result = mkimage("check", str(folder), "--json")
    assert result.rc == 1
    report = json.loads(result.out)
    assert report["valid"] is False
    where = {(p["severity"], p["location"].split(":")[0]) for p in report["problems"]}
    assert ("error", "init.d/20-setup") in where
    assert ("error", "guest.d/bad.cfg") in where
    assert ("warning", "guest.d/typo.cfg") in where
    assert ("error", "guest.d/plus.cfg") in where
    assert ("error", "params.cfg") in where
    text = mkimage("check", str(folder))
    assert text.rc == 1 and "INVALID" in text.out


@pytest.mark.parametrize("start, data", [(136, b"\x80" + b"\xff" * 11),
                                         (124, b"-0000000001\0"), (100, b"0017777\0"),
                                         (0, b"./gu\xffst.cfg\0")],
                         ids=["base-256 mtime", "negative size", "mode", "non-UTF-8 name"])
def test_check_reports_what_extract_refuses(tmp_path, start, data):
    image = str(tmp_path / "guest.xenguest")
    ok("create", image)
    patch_header(image, "guest.cfg", start, data)
    before = sha256(image)
    out = tmp_path / "out"
    out.mkdir()
    refused = fails("extract", image, str(out))
    assert refused.startswith(f"xenguest-mkimage extract: {image}: ")
    assert fails("check", image).split(": ", 1)[1] == refused.split(": ", 1)[1]
    assert fails("update", image, "--xen-memory=64").split(": ", 1)[1] == \
        refused.split(": ", 1)[1]
    assert os.listdir(str(out)) == [] and sha256(image) == before


@pytest.mark.parametrize("option, message", [
    ("--xen-vcpus=\u00b2", "the number of vcpus must be a positive whole number, not '\u00b2'"),
    ("--xen-memory=\u0661\u0660\u0660",
     "memory (MB) must be a positive whole number, not '\u0661\u0660\u0660'"),
    ("--disk-rm-part=\u00b2", "invalid partition number '\u00b2'"),
    ("--disk-size=\u0661\u0660", "invalid size '\u0661\u0660'"),
    ("--disk-add-part=\u0661:10M::", "invalid partition '\u0661:10M::'"),
    ("--xen-set=vcpus=\u00b2", "invalid xl value '\u00b2': unexpected character"),
])
def test_numbers_are_ascii_digits_only(tmp_path, option, message):
    image = str(tmp_path / "guest.xenguest")
    ok("create", image)
    before = sha256(image)
    assert fails("update", image, option).startswith(
        f"xenguest-mkimage update: {option}: {message}")
    assert sha256(image) == before


def test_format_version_in_other_digits(tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    ok("create", str(folder))
    write(str(folder / "xenguest.format"), "\u00b2\n")
    result = mkimage("check", str(folder))
    assert result.rc == 1 and "Traceback" not in result.err
    assert "xenguest.format holds '\u00b2', not a version" in result.out


def test_check_needs_params_cfg(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    ok("create", str(folder))
    (folder / "params.cfg").unlink()
    result = mkimage("check", str(folder))
    assert result.rc == 1 and "params.cfg: missing" in result.out


def test_not_an_image(tmp_path):
    junk = write(str(tmp_path / "junk"), b"this is not a tar" * 100)
    assert "not a tar" in fails("check", junk)
    empty_tar = str(tmp_path / "e.tar")
    tarfile.open(empty_tar, "w").close()
    assert "not a xenguest image" in fails("info", empty_tar)
    assert "no such image" in fails("update", str(tmp_path / "nope"), "--xen-memory=1")


def test_empty_paths_are_named_as_such(tmp_path, monkeypatch, pki):
    monkeypatch.chdir(tmp_path)  # an empty path is not the current folder
    image = str(tmp_path / "g.xenguest")
    ok("create", image)
    cert, key = pki.cert("signer"), pki.key("signer")
    for args, what in [(("create", ""), "image"), (("update", "", "--xen-memory=1"), "image"),
                       (("check", ""), "image"), (("info", ""), "image"),
                       (("pack", "", "x"), "image"), (("pack", image, ""), "destination"),
                       (("extract", image, ""), "destination"),
                       (("extract-disk-file", "", "a"), "image"),
                       (("sign", image, "--key", "", "--cert", cert), "key"),
                       (("sign", image, "--key", key, "--cert", ""), "certificate"),
                       (("verify", image, "--keyring", ""), "keyring")]:
        assert fails(*args) == f"xenguest-mkimage {args[0]}: the {what} path is empty", args
    assert sorted(os.listdir(tmp_path)) == ["g.xenguest"]


def test_usage_errors_exit_2(tmp_path):
    assert "unrecognized arguments" in fails("update", str(tmp_path / "x"), "--bogus", rc=2)
    assert "invalid choice" in fails("frobnicate", rc=2)
    fails("create", rc=2)


def test_help_for_every_operation():
    top = ok("--help").out
    for op in ("create", "check", "update", "partial", "pack", "extract", "extract-config",
               "extract-disk-file", "dump-xenconfig", "dump-diskconfig", "dump-paramsconfig",
               "dump-init", "info", "list", "help"):
        assert op in top
        assert ok(op, "--help").out.startswith("usage: xenguest-mkimage " + op)
    assert ok("help", "update").out == ok("update", "--help").out
    assert "--xen-memory MB" in ok("update", "--help").out


def test_partial_directory(tmp_path, inputs):
    folder = tmp_path / "part"
    ok("partial", str(folder), "--xen-memory=128", f"--init-post={inputs['post']}")
    assert (folder / "guest.cfg").read_text().startswith("memory = 128")
    assert (folder / "init.post" / "30-post").exists()
    assert not (folder / "params.cfg").exists()


def test_info_and_list(tmp_path, inputs):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, f"--xen-kernel={inputs['kernel']}", "--xen-name=web",
       "--disk-size=1", "--disk-add-part=1:1:ext4:rootfs.tar.gz",
       f"--disk-add-file={inputs['rootfs']}", f"--init-pre={inputs['pre']}")
    data = json.loads(ok("info", image, "--json").out)
    assert data["name"] == "web" and data["memory"] == 1024
    assert data["kernel"] == {"path": "files/kernel", "size": 6000}
    assert data["init"]["init.pre"] == ["10-pre"]
    assert data["disk"]["partitions"][0]["content"] == "rootfs.tar.gz"
    text = ok("info", image).out
    assert "web" in text and "partition 1" in text and "10-pre" in text
    rows = json.loads(ok("list", image, "--json").out)
    assert rows[0]["name"] == "xenguest.format"
    assert "disk/rootfs.tar.gz" in ok("list", image).out


def test_identity_options(tmp_path):
    """The image's compatible string and version: set, shown, removed, and checked
    whichever way they are written (a parameter set by hand included)."""
    image = str(tmp_path / "g.xenguest")
    ok("create", image, "--guest-compatible=acme/gateway", "--guest-version=5.0.3+snap-1a")
    assert params(image) == {"GUEST_AUTOBOOT": "1", "GUEST_COMPATIBLE": "acme/gateway",
                             "GUEST_VERSION": "5.0.3+snap-1a"}
    data = json.loads(ok("info", image, "--json").out)
    assert (data["compatible"], data["version"]) == ("acme/gateway", "5.0.3+snap-1a")
    text = ok("info", image).out
    assert "compatible:  acme/gateway\n" in text and "version:     5.0.3+snap-1a\n" in text
    before = sha256(image)
    for option in ("--guest-version=1 2", "--guest-compatible=-x", "--guest-version=" + "9" * 129,
                   "--guest-compatible=acme\u00e9", "--set-param=GUEST_VERSION=$x"):
        assert "invalid" in fails("update", image, option), option
        assert sha256(image) == before, option
    ok("update", image, "--guest-version=", "--guest-compatible")
    data = json.loads(ok("info", image, "--json").out)
    assert (data["compatible"], data["version"]) == (None, None)
    assert "version:     -\n" in ok("info", image).out


def test_kept_partition_option(tmp_path):
    image = str(tmp_path / "g.xenguest")
    ok("create", image, "--disk-size=20M", "--disk-add-part=1:10M:ext4:",
       "--disk-add-part=2:8M:ext4::keep")
    assert [p["keep"] for p in disk(image)["partitions"]] == [False, True]
    assert 'DISK_PART2="8M:ext4:"\nDISK_KEEP="2"\n' in ok("dump-diskconfig", image).out
    assert "partition 2: 8M ext4 (empty) (kept across updates)" in ok("info", image).out
    ok("update", image, "--disk-add-part=2:8M:ext4:")  # redefined: not kept any more
    assert "DISK_KEEP" not in ok("dump-diskconfig", image).out
    assert "keep" in fails("update", image, "--disk-add-part=2:8M:ext4::kept")


def test_check_update_of(tmp_path):
    """check --update-of OLD: what keeps the manager from updating a guest made from OLD."""
    def image(name, *options):
        path = str(tmp_path / name)
        ok("create", path, "--guest-compatible=acme/web", "--disk-size=20M",
           "--disk-add-part=1:10M:ext4:", *options)
        return path

    old = image("v1.xenguest", "--disk-add-part=2:8M:ext4::keep")
    good = image("v2.xenguest", "--disk-add-part=2:8M:ext4::keep", "--guest-version=2")
    assert "valid (0 error(s)" in ok("check", good, f"--update-of={old}").out
    bad = image("v3.xenguest", "--guest-compatible=acme/db", "--disk-add-part=1:9M:ext4:",
                "--disk-add-part=2:8M:ext4::keep")
    result = mkimage("check", bad, f"--update-of={old}", "--json")
    assert result.rc == 1
    problems = json.loads(result.out)["problems"]
    assert [(p["location"], p["message"]) for p in problems if p["severity"] == "error"] == [
        (f"update of {old}", "the image is for 'acme/db', the old image for 'acme/web' "
                             "(xenguest-manager update --force does it anyway)"),
        (f"update of {old}", "partition 2 keeps its data, but the image puts it at 10 MiB, "
                             "8 MiB long and the old image has it at 11 MiB, 8 MiB long: its "
                             "data would not fit; an update cannot move, resize or reformat a "
                             "kept partition")]
    dropped = image("v4.xenguest", "--disk-add-part=2:8M:ext4:")
    assert "would be lost" in mkimage("check", dropped, f"--update-of={old}").out
    # An image whose disk.cfg cannot be read: its problems are listed, not one error alone.
    folder = tmp_path / "v5"
    folder.mkdir()
    ok("create", str(folder), "--disk-size=20M", "--disk-add-part=1:10M:ext4:")
    (folder / "disk.cfg").write_text('DISK_KEEP="x"\nDISK_SIZE="20"\n')
    result = mkimage("check", str(folder), f"--update-of={old}", "--json")
    assert result.rc == 1 and "Traceback" not in result.err, result.err
    errors = [p for p in json.loads(result.out)["problems"] if p["severity"] == "error"]
    assert any(p["location"] == f"update of {old}" for p in errors), errors
    assert len(errors) >= 2, errors


def test_launcher_runs_as_a_process(tmp_path):
    """The installed command: a separate process, exit statuses, one-line errors."""
    from mkimage_util import run_process

    image = str(tmp_path / "g.xenguest")
    assert run_process("create", image, "--xen-memory=128").rc == 0
    bad = run_process("update", image, "--xen-memory=0")
    assert bad.rc == 1 and bad.out == ""
    assert bad.err == ("xenguest-mkimage update: --xen-memory=0: memory (MB) must be a "
                       "positive whole number, not '0'\n")
    usage = run_process("update", image, "--no-such-option")
    assert usage.rc == 2 and len(usage.err.splitlines()) == 1
    assert run_process("--help").out.startswith("usage: xenguest-mkimage")


def test_ctrl_c_leaves_no_temporary_file(tmp_path):
    """SIGINT in the middle of writing a large image: exit 130, nothing left behind."""
    import signal
    import subprocess
    import sys
    import time

    from mkimage_util import MKIMAGE

    payload = tmp_path / "big.img"
    with open(payload, "wb") as f:
        f.truncate(4 << 30)  # sparse: the copy still writes 4 GiB, which takes a while
    image = tmp_path / "g.xenguest"
    image.write_bytes(b"old content")
    proc = subprocess.Popen([sys.executable, MKIMAGE, "create", str(image), "--disk-size=5",
                             "--disk-add-part=1:5:ext4:big.img", f"--disk-add-file={payload}"],
                            stderr=subprocess.PIPE,
                            # SIGINT as a terminal gives it: a child inherits an ignored
                            # SIGINT (pytest run as a background job of a shell without
                            # job control), and Python then installs no handler
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while not [n for n in os.listdir(tmp_path) if ".xenguest-tmp-" in n]:
        assert proc.poll() is None and time.monotonic() < deadline, "no temporary file seen"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode().strip() == "xenguest-mkimage create: interrupted"
    assert sorted(os.listdir(tmp_path)) == ["big.img", "g.xenguest"]
    assert image.read_bytes() == b"old content"


@pytest.mark.parametrize("argv", [["update", "{image}", "--xen-memory=1024"], ["info", "{image}"]],
                         ids=["update", "info"])
def test_metadata_operations_load_only_what_they_need(tmp_path, argv):
    """update and info read headers and small members: nothing that runs programs,
    builds disks, extracts or copies payloads, nor the front ends above them."""
    image = str(tmp_path / "g.xenguest")
    kernel = tmp_path / "Image"
    kernel.write_bytes(b"kernel")
    mkimage("create", image, f"--xen-kernel={kernel}", "--disk-size=1",
            "--disk-add-part=1:1:ext4:")
    probe = "\n".join([
        "import runpy, sys",
        f"sys.argv = [{MKIMAGE!r}] + {[a.format(image=image) for a in argv]!r}",
        "try:",
        f"    runpy.run_path({MKIMAGE!r}, run_name='__main__')",
        "except SystemExit as e:",
        "    assert not e.code, e.code",
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)",
    ])
    proc = subprocess.run([sys.executable, "-c", probe], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=True)
    loaded = set(proc.stderr.split())
    assert "xenguest.operations" in loaded, proc.stderr
    unneeded = {"subprocess", "json", "xenguest.programs", "xenguest.disk.build",
                "xenguest.disk.populate", "xenguest.disk.compression", "xenguest.format.extract",
                "xenguest.format.image_copy", "xenguest.manager", "xenguest.bitbake"}
    assert not loaded & unneeded, sorted(loaded & unneeded)

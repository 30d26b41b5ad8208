"""Self-test of the Xen end-to-end harness, without xenguest-manager: dom0 runs the guest life
cycle with plain xl (extract the image, provision the disk with sfdisk and mkfs.ext4 -d,
merged configuration, init scripts around xl create -p / xl unpause, graceful shutdown,
cleanup). One architecture: the end-to-end test covers both.
"""

import os
import shutil
import subprocess
import sys

import pytest

from xen import XenRun, boot_xen, require_tools
from xen import elf, scenario
from xen.cpio import Staging
from xen.guest import POWEROFF_MARK

ARCH = "arm64"
NAME = "harness-guest"

DOM0_SCRIPT = r"""
set -u
NAME=@NAME@
W=/var/lib/xentest/$NAME
LOG=/var/log/xen/console/guest-$NAME.log
DISK=$W/disk.img
fail() { echo "SELFTEST-FAIL: $*"; exit 1; }
run_stage() {
    for script in "$W/image/$1"/*; do
        [ -e "$script" ] || continue
        "$script" "$NAME" || fail "$script"
    done
}
brctl addbr xenbr0 && ip link set xenbr0 up || fail "bridge xenbr0"
mkdir -p "$W/image" "$W/rootfs" || fail mkdir
xenguest-mkimage extract /xentest/guest.xenguest "$W/image" || fail "xenguest-mkimage extract"
truncate -s @DISK@M "$DISK" || fail truncate
echo "start=2048, size=$((@PART@ * 2048)), type=83" | sfdisk -q "$DISK" || fail sfdisk
tar -xf "$W/image/disk/rootfs.tar" -C "$W/rootfs" || fail tar
mkfs.ext4 -F -q -E offset=1048576,nodiscard -d "$W/rootfs" "$DISK" @PART@M || fail mkfs.ext4
{
    cat "$W/image/guest.cfg" "$W/image/guest.d"/* 2>/dev/null
    echo "name = \"$NAME\""
    echo "disk = ['format=raw, vdev=xvda, access=rw, target=$DISK']"
    echo "vif = ['bridge=xenbr0']"
} | sed "s|\"files/|\"$W/image/files/|" > "$W/guest.cfg"
set -a
. "$W/image/params.cfg"
set +a
run_stage init.pre
xl create -q -p "$W/guest.cfg" || fail "xl create"
run_stage init.d
xl unpause "$NAME" || fail "xl unpause"
run_stage init.post
for i in $(seq 600); do
    grep -q @MARKER@ "$LOG" 2>/dev/null && break
    sleep 0.2
done
grep -q @MARKER@ "$LOG" || fail "no guest marker"
echo "guest-up"
xl shutdown -w "$NAME" || fail "xl shutdown"
for i in $(seq 300); do
    xl domid "$NAME" >/dev/null 2>&1 || break
    sleep 0.2
done
for i in $(seq 300); do
    [ -z "$(losetup -a)" ] && break
    sleep 0.2
done
rm -rf "$W"
echo "left-state:[$(ls -A /var/lib/xentest)]"
echo "left-loops:[$(losetup -a)]"
echo "left-domains:"
xl list
echo "trace:"
cat @TRACE@
""".replace("@NAME@", NAME).replace("@DISK@", str(scenario.DISK_SIZE_MIB)).replace(
    "@PART@", str(scenario.PART_SIZE_MIB)).replace("@MARKER@", scenario.GUEST_MARKER).replace(
    "@TRACE@", scenario.TRACE_FILE)


@pytest.mark.e2e
def test_harness_runs_a_guest_life_cycle_with_plain_xl(tmp_path):
    require_tools(ARCH)
    image = scenario.build_image(ARCH, str(tmp_path))
    run = boot_xen(ARCH, DOM0_SCRIPT, {"/xentest/guest.xenguest": image}, timeout=300,
                   log_path=str(tmp_path / "console.log"))
    print("Xen %s harness self-test: %.1f s in QEMU" % (ARCH, run.elapsed))
    assert run.ok, run.diagnostics()
    out = run.script_output
    assert "guest-up" in out, run.diagnostics()
    log = run.guest_logs.get(NAME, "")
    assert "disk-file: " + scenario.DISK_TEXT.strip() in log, run.diagnostics()
    assert "eth0" in log, run.diagnostics()
    assert POWEROFF_MARK + " poweroff" in log, run.diagnostics()  # a graceful shutdown
    assert "left-state:[]" in out and "left-loops:[]" in out, run.diagnostics()
    domains = out.split("left-domains:\n", 1)[1].split("trace:\n", 1)[0]
    assert [line.split()[0] for line in domains.splitlines()[1:]] == ["Domain-0"], domains
    trace = out.split("trace:\n", 1)[1].splitlines()
    assert trace == scenario.expected_trace(NAME), out


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs GNU cpio")
def test_initramfs_writer_output_unpacks_with_gnu_cpio(tmp_path):
    source = tmp_path / "tool"
    source.write_bytes(b"#!/bin/sh\necho hi\n")
    source.chmod(0o750)
    staging = Staging()
    staging.add_file("/usr/bin/tool", str(source))
    staging.add_data("/etc/odd size", b"12345", 0o600)
    staging.add_symlink("/bin", "usr/bin")
    staging.add_dir("/tmp", 0o1777)
    archive = tmp_path / "a.cpio.gz"
    staging.write_gzip(str(archive))
    out = tmp_path / "out"
    out.mkdir()
    unpack = "gzip -dc %s | cpio -id --quiet --no-absolute-filenames" % archive
    subprocess.run(unpack, shell=True, cwd=str(out), check=True)
    assert (out / "usr/bin/tool").read_bytes() == source.read_bytes()
    assert (out / "usr/bin/tool").stat().st_mode & 0o7777 == 0o750
    assert (out / "etc/odd size").read_bytes() == b"12345"
    assert os.readlink(str(out / "bin")) == "usr/bin"
    assert (out / "tmp").stat().st_mode & 0o7777 == 0o1777


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_elf_reader_finds_the_libraries_readelf_reports():
    binary = os.path.realpath(sys.executable)  # an ELF file (a python3 on PATH may be a script)
    text = subprocess.run(["readelf", "-d", binary], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout
    expected = [line.split("[", 1)[1].split("]", 1)[0]
                for line in text.splitlines() if "(NEEDED)" in line]
    needed, _paths, interp = elf.dynamic_info(binary)
    assert needed == expected
    assert interp and os.path.exists(interp)


def test_run_record_separates_script_output_guest_logs_and_console_noise():
    console = (b"(XEN) Xen version 4.17\r\nXENTEST-BEGIN\r\nstep one\r\n"
               b"(XEN) d1v0: vGICD: unhandled word write\r\n[   12.345678] loop: module loaded\r\n"
               b"step two\r\nXENTEST-EXIT rc=3\r\nXENTEST-GUEST-LOG-BEGIN g1\r\nguest says hi\r\n"
               b"XENTEST-GUEST-LOG-END g1\r\nXENTEST-POWEROFF\r\n")
    run = XenRun("arm64", [(1.5, console[:40]), (7.25, console[40:])], 9.0, False)
    assert run.rc == 3 and not run.ok
    assert run.script_output == "step one\nstep two\n"
    assert run.guest_logs == {"g1": "guest says hi\n"}
    assert run.time_of("Xen version") == 1.5 and run.time_of("XENTEST-EXIT") == 7.25
    assert "script rc=3" in run.diagnostics() and "XENTEST-POWEROFF" in run.tail(2)

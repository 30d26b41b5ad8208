"""xenguest-manager update, rollback and commit, through the command line.

The disks are real (sfdisk, mke2fs, debugfs write them, debugfs reads them
back), so is every file of the state folder; ``xl`` and, for the lvm backend,
the lvm2 commands are stand-ins at the system boundary (no hypervisor and no
device mapper on a test machine: manager_util).  Interrupted updates and
rollbacks: test_manager_interrupted.py.
"""

import os
import subprocess

import pytest

from manager_util import script, tree
from mkimage_util import ok
from update_util import DATA_PART, MIB, ROOT_PART, World, layout
from xenguest.cli.manager import main


@pytest.fixture(params=["file", "lvm"])
def world(request, tmp_path, monkeypatch):
    monkeypatch.delenv("XENGUEST_MANAGER_CONFIG", raising=False)
    result = World(str(tmp_path), request.param)
    yield result


@pytest.fixture
def file_world(tmp_path, monkeypatch):
    monkeypatch.delenv("XENGUEST_MANAGER_CONFIG", raising=False)
    yield World(str(tmp_path))


def cli(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def fails(capsys, *args):
    rc, out, err = cli(capsys, *args)
    assert rc == 1, (out, err)
    last = err.splitlines()[-1]
    assert last.startswith(f"xenguest-manager {args[0]}: "), err
    return last[len(f"xenguest-manager {args[0]}: "):]


def xl_ops(world):
    return [c[:2] for c in world.xl.ops()]


def test_data_survives_update_and_rollback(world, capsys):
    world.guest("1")
    world.write_data("notes.txt", "written by version 1\n")
    kept = world.read(*DATA_PART)
    v2 = world.image("2")

    rc, out, _ = cli(capsys, "update", "web", v2)
    assert (rc, out) == (0, "web: version 2 of 'acme/web'\n")
    assert world.version_on_disk() == "2"                 # the root file system is new
    assert world.read(*DATA_PART) == kept                 # the kept partition, byte for byte
    assert world.data("notes.txt") == "written by version 1\n"
    assert world.running()
    status = world.status()
    assert (status["version"], status["compatible"], status["image"]) == ("2", "acme/web", v2)
    assert status["previous"]["version"] == "1" and status["updated"]
    assert [op for op in xl_ops(world) if op[0] != "create"][-2:] == [["shutdown", "web"],
                                                                      ["unpause", "web"]]

    world.write_data("more.txt", "written by version 2\n")
    rc, _, _ = cli(capsys, "rollback", "web")
    assert rc == 0
    assert world.version_on_disk() == "1"
    assert world.data("notes.txt") == "written by version 1\n"
    assert world.data("more.txt") == "written by version 2\n"  # data is never rolled back
    status = world.status()
    assert (status["version"], status["previous"]["version"]) == ("1", "2")
    assert world.running()

    assert cli(capsys, "rollback", "web")[0] == 0           # and forth again
    assert world.version_on_disk() == "2" and world.status()["previous"]["version"] == "1"
    assert world.data("more.txt") == "written by version 2\n"

    before = world.entries()
    assert ".web.previous" in before
    assert cli(capsys, "commit", "web")[0] == 0
    assert world.status()["previous"] is None
    assert world.entries() == (["lv:xenguest-web"] if world.backend == "lvm" else []) + ["web"]
    assert "no previous image to roll back to" in fails(capsys, "rollback", "web")
    assert cli(capsys, "commit", "web")[0] == 0             # nothing to discard: fine
    assert world.version_on_disk() == "2"


def with_prebuilt_disk(world, version):
    """Image *version* with its disk rendered (zstd) and stored as its prebuilt disk;
    return the image and the prebuilt disk's bytes."""
    image = world.image(version)
    packed = os.path.join(world.folder, f"disk-{version}.img.zst")
    ok("render-disk", image, packed)
    ok("update", image, f"--disk-add-prebuilt={packed}")
    raw = subprocess.run(["zstd", "-q", "-d", "-c", packed], stdout=subprocess.PIPE,
                         check=True).stdout
    return image, raw


def test_a_prebuilt_disk_is_written_around_the_kept_partition(world, capsys):
    """Prebuilt disk and kept partition: the update writes the prebuilt disk's table,
    other partitions and gaps, and leaves the kept partition the guest's; a rollback
    puts the previous prebuilt disk's bytes back, the kept data still there."""
    v1, disk1 = with_prebuilt_disk(world, "1")
    v2, disk2 = with_prebuilt_disk(world, "2")
    assert cli(capsys, "create", v1, "web")[0] == 0 and cli(capsys, "start", "web")[0] == 0
    world.write_data("notes.txt", "written by version 1\n")
    kept = world.read(*DATA_PART)
    after = sum(DATA_PART)

    def outside_kept(disk):
        return disk[:DATA_PART[0]], disk[after:]

    assert cli(capsys, "update", "web", v2)[0] == 0
    assert world.version_on_disk() == "2"
    assert outside_kept(world.read(0, len(disk2))) == outside_kept(disk2)
    assert world.read(*DATA_PART) == kept != disk2[DATA_PART[0]:after]
    assert world.data("notes.txt") == "written by version 1\n"

    assert cli(capsys, "rollback", "web")[0] == 0
    assert world.version_on_disk() == "1"
    assert outside_kept(world.read(0, len(disk1))) == outside_kept(disk1)
    assert world.data("notes.txt") == "written by version 1\n"


def test_the_replaced_bytes_are_saved_aside_sparse(file_world, capsys):
    """The file backend keeps the previous image's replaced ranges in a sparse file:
    the kept partition is not copied, the holes of the disk stay holes."""
    world = file_world
    world.guest("1")
    before = world.read(0, 24 * MIB)
    assert cli(capsys, "update", "web", world.image("2"))[0] == 0
    store = os.path.join(world.state, "guests", ".web.previous", "saved.img")
    size = os.path.getsize(store)
    assert size == 24 * MIB - DATA_PART[1]                # everything but the kept partition
    assert os.stat(store).st_blocks * 512 < 2 * MIB        # written: only the data
    with open(store, "rb") as f:
        assert f.read(DATA_PART[0]) == before[:DATA_PART[0]]
        assert f.read() == before[DATA_PART[0] + DATA_PART[1]:]
    assert os.stat(world.disk()).st_blocks * 512 < 4 * MIB


def test_a_failing_health_check_puts_everything_back(world, capsys):
    world.guest("1")
    world.write_data("notes.txt", "written by version 1\n")
    before = world.fingerprint()
    check = script(os.path.join(world.folder, "check"), """\
        echo "checking $1 $XENGUEST_MANAGER_STAGE $GUEST_VERSION" >> "$(dirname "$0")/checks"
        exit 3
        """)
    message = fails(capsys, "update", "web", world.image("2"), "--health-check", check,
                    "--health-timeout", "0.3")
    assert message.startswith("guest web: update failed: check the guest's health: not "
                              "healthy within 0.3 s: "), message
    assert "failed with exit status 3" in message
    assert message.endswith("guest web is back to its image before the update and running "
                            "again"), message
    with open(os.path.join(world.folder, "checks")) as f:
        assert f.readline() == "checking web health-check 2\n"
    assert world.fingerprint() == before                  # the whole disk, byte for byte
    assert world.version_on_disk() == "1" and world.running()
    assert world.status()["previous"] is None
    ops = xl_ops(world)
    assert ops[-6:] == [["shutdown", "web"], ["create", "-p"], ["unpause", "web"],
                        ["destroy", "web"], ["create", "-p"], ["unpause", "web"]], ops


def test_the_health_checks_last_failure_is_told_not_a_run_cut_short_by_the_timeout(
        file_world, capsys):
    """The run the deadline cuts short (here: every run after the first hangs) says less than
    the failure before it; a loaded host once turned one into the other."""
    world = file_world
    world.guest("1")
    check = script(os.path.join(world.folder, "check"), """\
        count="$(dirname "$0")/count"
        echo x >> "$count"
        [ "$(wc -l < "$count")" -eq 1 ] || exec sleep 60
        echo "not up, on purpose"
        exit 1
        """)
    message = fails(capsys, "update", "web", world.image("2"), "--health-check", check,
                    "--health-timeout", "2")
    assert (f"not healthy within 2 s: {check} failed with exit status 1: not up, on purpose; "
            "guest web is back") in message, message
    assert world.version_on_disk() == "1" and world.running()


def test_a_damaged_journal_is_one_guests_error_and_stops_no_other_command(file_world,
                                                                           capsys):
    world = file_world
    world.guest("1")
    journal = os.path.join(world.state, "guests", ".web.switch", "switch.json")
    os.makedirs(os.path.dirname(journal))
    with open(journal, "w") as f:
        f.write('{"kind": "update", "phase": "halfway"}\n')
    rc, out, err = cli(capsys, "list")
    assert rc == 0 and "web" in out, (out, err)
    assert f"guest web: {journal}: damaged journal (unknown step 'update' 'halfway')" in err
    assert os.path.exists(journal)                        # left for a person to look at


def test_a_failing_init_post_script_of_the_new_image_puts_everything_back(file_world,
                                                                           capsys):
    world = file_world
    world.guest("1")
    before = world.fingerprint()
    post = script(os.path.join(world.folder, "90-check"), "echo not up; exit 1\n")
    message = fails(capsys, "update", "web", world.image("2", [("--init-post", post)]))
    assert "start the guest: init.post/90-check failed with exit status 1: not up" in message
    assert world.fingerprint() == before and world.running()


def test_the_health_check_passes_once_the_guest_is_up(file_world, capsys):
    world = file_world
    world.guest("1")
    check = script(os.path.join(world.folder, "check"), """\
        count="$(dirname "$0")/count"
        echo x >> "$count"
        [ "$(wc -l < "$count")" -ge 3 ]
        """)
    rc, _, err = cli(capsys, "update", "web", world.image("2"), "--health-check", check)
    assert rc == 0, err
    assert "health check passed" in err
    with open(os.path.join(world.folder, "count")) as f:
        assert len(f.readlines()) == 3


def test_a_guest_that_dies_during_its_health_timeout_is_not_up(file_world, capsys):
    world = file_world
    world.guest("1")
    before = world.fingerprint()
    # the new image's init.post makes its domain go away, as a crashing guest would
    crash = script(os.path.join(world.folder, "90-crash"),
                   f"{world.xl.path} destroy \"$1\"\n")
    message = fails(capsys, "update", "web", world.image("2", [("--init-post", crash)]),
                    "--health-timeout", "5")
    assert "check the guest's health: the guest is gone" in message
    assert world.fingerprint() == before and world.running()


def test_a_stopped_guest_is_updated_without_starting_it_unless_asked(file_world, capsys):
    world = file_world
    world.guest("1")
    assert main(["stop", "web"]) == 0
    assert cli(capsys, "update", "web", world.image("2"))[0] == 0
    assert not world.xl.domains() and world.version_on_disk() == "2"
    assert cli(capsys, "update", "web", world.image("3"), "--start")[0] == 0
    assert world.running() and world.status()["previous"]["version"] == "2"


def test_refusals_change_nothing(world, capsys):
    world.guest("1")
    world.write_data("notes.txt", "precious\n")
    before = world.fingerprint()
    cases = [
        (world.image("9", compatible="acme/db", name="db.xenguest"),
         "the image is for 'acme/db', guest web for 'acme/web' (--force updates it anyway)"),
        (world.image("9", compatible="", name="anonymous.xenguest"),
         "the image is for 'no product', guest web for 'acme/web'"),
        (world.image("9", disk=layout(root="1:9M:ext4:rootfs.tar"), name="moved.xenguest"),
         "refused: partition 2 keeps its data, but the image puts it at 10 MiB, 8 MiB long "
         "and guest web has it at 11 MiB, 8 MiB long: its data would not fit"),
        (world.image("9", disk=layout(data="2:9M:ext4::keep", disk="25M"),
                     name="grown.xenguest"), "at 11 MiB, 9 MiB long"),
        (world.image("9", disk=layout(data="2:8M:vfat::keep"), name="vfat.xenguest"),
         "the image formats it vfat and guest web has it ext4"),
        (world.image("9", disk=layout(data="2:8M:ext4:"), name="dropped.xenguest"),
         "guest web keeps the data of partition(s) 2 across updates, and the image would "
         "make them anew: that data would be lost (--force updates it anyway)"),
        (world.image("9", disk=[("--disk-size", "0")], name="diskless.xenguest"),
         "guest web has a disk and the image describes none"),
    ]
    for image, words in cases:
        message = fails(capsys, "update", "web", image)
        assert words in message, (image, message)
        assert world.fingerprint() == before, image
        assert world.running() and xl_ops(world)[-1] == ["unpause", "web"]
    assert "no guest other" in fails(capsys, "update", "other", world.image("2"))
    assert "no previous image" in fails(capsys, "rollback", "web")


def test_force_takes_another_product_and_drops_kept_data(file_world, capsys):
    world = file_world
    world.guest("1")
    world.write_data("notes.txt", "precious\n")
    dropped = world.image("2", compatible="acme/other", disk=layout(data="2:8M:ext4:"))
    assert cli(capsys, "update", "web", dropped, "--force")[0] == 0
    assert world.status()["compatible"] == "acme/other"
    assert "notes.txt" not in world.debugfs(DATA_PART, "ls /")  # made anew, as forced


def test_a_new_data_partition_and_a_bigger_disk(world, capsys):
    """An update may grow the disk and add partitions (kept ones are made the first
    time); a rollback gives the disk its former size back."""
    world.guest("1")
    world.write_data("notes.txt", "precious\n")
    size = world.fingerprint()["size"]
    grown = world.image("2", disk=layout(disk="40M", more=["3:12M:ext4::keep"]))
    assert cli(capsys, "update", "web", grown)[0] == 0
    assert world.fingerprint()["size"] == 40 * MIB
    assert world.data("notes.txt") == "precious\n"
    assert "lost+found" in world.debugfs((19 * MIB, 12 * MIB), "ls /")
    assert cli(capsys, "rollback", "web")[0] == 0
    assert world.fingerprint()["size"] == size
    assert world.version_on_disk() == "1" and world.data("notes.txt") == "precious\n"


def test_remove_frees_the_previous_image(world, capsys):
    world.guest("1")
    assert cli(capsys, "update", "web", world.image("2"))[0] == 0
    assert len(world.entries()) == (4 if world.backend == "lvm" else 2)
    assert cli(capsys, "remove", "web")[0] == 0
    assert world.entries() == []
    assert tree(os.path.join(world.state, "guests")) == []


def test_update_follows_the_signature_policy(file_world, capsys, pki):
    from signing_util import sign_args

    world = file_world
    world.guest("1")
    with open(world.config, "a") as f:
        f.write(f"[security]\nverify = require\nkeyring = {pki.cert('root')}\n")
    before = world.fingerprint()
    image = world.image("2")
    assert "refused (verify = require): no signature" in fails(capsys, "update", "web", image)
    assert world.fingerprint() == before
    ok("sign", image, *sign_args(pki))
    assert cli(capsys, "update", "web", image)[0] == 0
    assert world.status()["signer"]["subject"] == "CN=Image Signer"


def test_status_and_list_show_versions(file_world, capsys):
    world = file_world
    world.guest("1")
    assert cli(capsys, "update", "web", world.image("2"))[0] == 0
    _, out, _ = cli(capsys, "status", "web")
    lines = out.splitlines()
    assert "  version:   2 (acme/web)" in lines
    assert any(line.startswith("  previous:  1 (acme/web), ") and
               line.endswith("web-1.xenguest (kept for rollback)") for line in lines), lines
    _, out, _ = cli(capsys, "list")
    assert out.splitlines()[0].split() == ["NAME", "STATE", "ID", "AUTOBOOT", "DISK", "VERSION"]
    assert out.splitlines()[1].split()[-1] == "2"


def test_the_root_file_system_is_made_anew(file_world, capsys):
    """Replaced partitions are re-provisioned: nothing of the old one remains."""
    world = file_world
    world.guest("1")
    world.debugfs(ROOT_PART, "mkdir /leftover", write=True)
    assert cli(capsys, "update", "web", world.image("2"))[0] == 0
    assert "leftover" not in world.debugfs(ROOT_PART, "ls /")
    assert cli(capsys, "rollback", "web")[0] == 0
    assert "leftover" in world.debugfs(ROOT_PART, "ls /")


def test_status_leaves_a_switch_under_way_alone_and_recovers_an_interrupted_one(file_world,
                                                                                capsys):
    import fcntl

    from xenguest.manager.state import Journal

    world = file_world
    world.guest("1")
    folder = os.path.join(world.state, "guests", ".web.switch")
    os.mkdir(folder)
    Journal("update", "staging").save(folder)
    with open(os.path.join(world.state, "locks", "web.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the command doing it is at work
        capsys.readouterr()
        assert world.status()["switching"] == "update" and os.path.isdir(folder)
        assert capsys.readouterr().err == ""  # no warning: nothing is wrong
        assert "guest web is busy" in fails(capsys, "start", "web")
    status = world.status()  # its lock is free: a killed command left it
    assert status["switching"] is None and not os.path.exists(folder)
    assert status["state"] == "running" and status["version"] == "1"

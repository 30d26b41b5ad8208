"""A create killed at any step is cleaned up by the next create of that name.

The real xenguest-manager command runs in its own process and is killed
with SIGKILL at one of its steps (picked by tests/interrupt_util.py: each
folder made, file written, rename, program started), for every step in
turn, with both disk backends.  The next ``create`` of that name must then
succeed and leave exactly one guest and one disk: no volume, folder or
temporary file of the killed command may stay, and no one else's volume may
go.  ``xl`` (manager_util.FakeXl) and, for the lvm backend, the lvm2
commands (manager_util.install_fake_lvm: no device mapper on a test
machine) are stand-ins at the system boundary; everything else is real.
"""

import os

import pytest

from interrupt_util import run_interrupted, steps
from manager_util import (FakeXl, config_file, install_fake_lvm, make_image, make_tar,
                          tar_entry, tree)
from update_util import DATA_PART, World
from xenguest.cli.manager import main

BACKENDS = {
    "file": "",
    "lvm": "[disk]\nbackend = lvm\nvolume_group = vg0\n",
}


def make_settings(tmp_path, backend):
    xl = FakeXl(str(tmp_path))
    state = str(tmp_path / "state")
    extra = BACKENDS[backend]
    if backend == "lvm":  # config_file's last section is [commands]
        commands = install_fake_lvm(str(tmp_path), ["vg0"])
        extra = "".join(f"{k} = {v}\n" for k, v in commands.items()) + extra
    return config_file(str(tmp_path), state, xl=xl.path, extra=extra), state


def kill_points(trace):
    """The steps worth a kill: every change and every program started; of a run of
    files written into one folder, the first and the last."""
    def write_in(step, folder):
        return step.startswith("open-write") and os.path.dirname(step) == folder

    points = []
    for nth, step in enumerate(trace, 1):
        if step.startswith("open-read"):
            continue
        around = trace[nth - 2:nth - 1] + trace[nth:nth + 1]
        if not (len(around) == 2 and step.startswith("open-write") and
                all(write_in(s, os.path.dirname(step)) for s in around)):
            points.append(nth)
    return points


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_create_killed_at_any_step_is_cleaned_up_by_the_next(tmp_path, monkeypatch, capsys,
                                                             backend):
    config, state = make_settings(tmp_path, backend)
    monkeypatch.setenv("XENGUEST_MANAGER_CONFIG", config)
    rootfs = make_tar(str(tmp_path / "rootfs.tar"), [tar_entry("./etc/motd", b"hi\n")])
    image = make_image(str(tmp_path / "web.xenguest"), [
        ("--disk-size", "12M"), ("--disk-add-file", rootfs),
        ("--disk-add-part", "1:10M:ext4:rootfs.tar"), ("--set-param", "A=1")])
    volumes = str(tmp_path / "lvm" / "vg0")
    trace = steps("manager", ["create", image], state, str(tmp_path / "trace"))
    assert main(["remove", "web"]) == 0
    points = kill_points(trace)
    assert len(points) >= 10, trace
    for nth in points:
        rc, err = run_interrupted("manager", ["create", image], state, nth)
        assert rc == -9, (trace[nth - 1], err)
        assert main(["create", image]) == 0, (trace[nth - 1], capsys.readouterr().err)
        assert tree(os.path.join(state, "guests"))[:1] == ["web"], trace[nth - 1]
        assert [p for p in tree(os.path.join(state, "guests")) if "tmp" in p or
                p.startswith(".")] == [], trace[nth - 1]
        if backend == "lvm":
            assert os.listdir(volumes) == ["xenguest-web"], trace[nth - 1]
        assert main(["remove", "web"]) == 0
        assert tree(os.path.join(state, "guests")) == []
        capsys.readouterr()


def test_someone_elses_volume_is_never_taken_for_a_leftover(tmp_path, monkeypatch, capsys):
    """A create killed before lvcreate, then a volume of that name made by someone else:
    the next create refuses it and leaves it alone."""
    config, state = make_settings(tmp_path, "lvm")
    monkeypatch.setenv("XENGUEST_MANAGER_CONFIG", config)
    image = make_image(str(tmp_path / "web.xenguest"), [("--disk-size", "4M"),
                                                        ("--disk-add-part", "1:2M::")])
    trace = steps("manager", ["create", image], state, str(tmp_path / "trace"))
    assert main(["remove", "web"]) == 0
    [nth] = [i for i, step in enumerate(trace, 1) if step.startswith("run lvcreate ")]
    rc, _ = run_interrupted("manager", ["create", image], state, nth)
    assert rc == -9
    theirs = os.path.join(str(tmp_path / "lvm" / "vg0"), "xenguest-web")
    with open(theirs, "wb") as f:
        f.write(b"someone else's data")
    assert main(["create", image]) == 1
    assert "logical volume vg0/xenguest-web exists already" in capsys.readouterr().err
    with open(theirs, "rb") as f:
        assert f.read() == b"someone else's data"
    assert tree(os.path.join(state, "guests")) == []


# -- update and rollback -----------------------------------------------------------


def saved_bytes(world):
    """The content of the store of the previous image's saved disk ranges."""
    if world.backend == "lvm":
        [store] = [v for v in os.listdir(world.volumes) if v.startswith("xenguest-web+")]
        path = os.path.join(world.volumes, store)
    else:
        path = os.path.join(world.state, "guests", ".web.previous", "saved.img")
    with open(path, "rb") as f:
        return f.read()


def outcome(world, before, old_disk, new_version):
    """"old" when the guest is exactly as before the switch, "new" when the switch is
    whole: its version on the disk, the kept partition's bytes, every replaced byte
    saved for a rollback; anything else fails."""
    leftovers = [p for p in tree(os.path.join(world.state, "guests"))
                 if "tmp" in p or ".switch" in p or ".populate" in p]
    assert leftovers == []
    assert world.running()
    if world.fingerprint() == before:
        return "old"
    assert world.version_on_disk() == new_version
    assert world.read(*DATA_PART) == old_disk[DATA_PART[0]:sum(DATA_PART)]
    end = sum(DATA_PART)
    assert saved_bytes(world)[:len(old_disk) - DATA_PART[1]] == \
        old_disk[:DATA_PART[0]] + old_disk[end:]
    volumes = ["lv:xenguest-web", "lv:xenguest-web+"] if world.backend == "lvm" else []
    assert [e[:16] for e in world.entries()] == sorted(volumes + [".web.previous", "web"])
    return "new"


#: Steps of a switch that change nothing: polls of the toolstack and of lvm2.
READ_ONLY = ("run xl domid", "run xl list", "run lvs ", "run vgs ")


def switch_killed_at_every_step(world, args, new_version, trace_file):
    before = world.fingerprint()
    old_disk = world.read(0, before["size"])
    world.snapshot("before")
    trace = steps("manager", args, world.state, trace_file)
    world.restore("before")
    # every step but the commands that only look (a kill there is one at the step before)
    points = [n for n in kill_points(trace) if not trace[n - 1].startswith(READ_ONLY)]
    assert len(points) >= 30, trace
    seen = []
    for nth in points:
        rc, err = run_interrupted("manager", args, world.state, nth)
        assert rc == -9, (trace[nth - 1], err)
        assert main(["status", "web"]) == 0, trace[nth - 1]  # the next command recovers
        seen.append(outcome(world, before, old_disk, new_version))
        world.restore("before")
    # killed before the switch was done: undone; after: finished
    assert seen == sorted(seen, reverse=True) and {"old", "new"} == set(seen), seen


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_update_killed_at_any_step_is_recovered_by_the_next_command(tmp_path, monkeypatch,
                                                                   capsys, backend):
    monkeypatch.delenv("XENGUEST_MANAGER_CONFIG", raising=False)
    world = World(str(tmp_path), backend)
    world.guest("1")
    world.write_data("notes.txt", "precious\n")
    switch_killed_at_every_step(world, ["update", "web", world.image("2")], "2",
                                str(tmp_path / "trace"))
    capsys.readouterr()


def test_rollback_killed_at_any_step_is_recovered_by_the_next_command(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.delenv("XENGUEST_MANAGER_CONFIG", raising=False)
    world = World(str(tmp_path))
    world.guest("1")
    assert main(["update", "web", world.image("2")]) == 0
    world.write_data("notes.txt", "written by version 2\n")
    switch_killed_at_every_step(world, ["rollback", "web"], "1", str(tmp_path / "trace"))
    capsys.readouterr()

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
    [nth] = [i for i, step in enumerate(trace, 1) if step == "run lvcreate"]
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

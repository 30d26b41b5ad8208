"""xenguest-manager through its command line, with a stand-in ``xl``.

No hypervisor runs here: ``xl`` is the system boundary, replaced by a small
program (manager_util.FAKE_XL) that the real XlToolstack drives with the same
command lines it uses on a Xen host.  Disks, scripts, settings, locks and the
state folder are real.  The end-to-end test under a real Xen is elsewhere.
"""

import ast
import fcntl
import json
import os
import subprocess
import sys

import pytest
from interrupt_util import run_interrupted, steps
from manager_util import (
    LAUNCHER,
    FakeXl,
    config_file,
    make_image,
    make_tar,
    peak_memory_growth,
    script,
    tar_entry,
    tree,
    write,
)
from mkimage_util import patch_header
from xenguest import operations
from xenguest.cli.manager import main


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Settings with a fake xl and an empty state folder; returns a small namespace."""
    class Env:
        pass
    e = Env()
    e.tmp = tmp_path
    e.xl = FakeXl(str(tmp_path))
    e.state = str(tmp_path / "state")
    e.images = str(tmp_path / "images")
    os.mkdir(e.images)
    e.config = config_file(str(tmp_path), e.state, xl=e.xl.path, guest_folders=e.images)
    monkeypatch.setenv("XENGUEST_MANAGER_CONFIG", e.config)
    return e


def cli(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def ok(capsys, *args):
    rc, out, err = cli(capsys, *args)
    assert rc == 0, err
    assert "Traceback" not in err
    return out


def fails(capsys, *args, rc=1):
    code, out, err = cli(capsys, *args)
    assert code == rc, (out, err)
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith(f"xenguest-manager {args[0]}: "), err
    return last[len(f"xenguest-manager {args[0]}: "):]


def guest_image(env, name="web", edits=()):
    tar = make_tar(str(env.tmp / "rootfs.tar.gz"),
                   [tar_entry("./etc/motd", b"hi\n")], "gz")
    return make_image(os.path.join(env.images, f"{name}.xenguest"), [
        ("--disk-size", "12M"), ("--disk-add-file", tar),
        ("--disk-add-part", "1:10M:ext4:rootfs.tar.gz")] + list(edits))


def guests_left(env):
    return [p for p in tree(os.path.join(env.state, "guests"))]


def test_life_cycle(env, capsys):
    image = guest_image(env)
    assert ok(capsys, "create", image) == "web\n"
    [row] = json.loads(ok(capsys, "list", "--json"))
    assert (row["name"], row["state"], row["autoboot"]) == ("web", "stopped", True)
    assert row["disk"]["backend"] == "file" and row["disk"]["size"] == 12 << 20
    assert row["image"] == image

    ok(capsys, "start", "web")
    cfg = os.path.join(env.state, "guests", "web", "xl.cfg")
    assert env.xl.ops() == [["create", "-p", cfg], ["unpause", "web"]]
    status = json.loads(ok(capsys, "status", "web", "--json"))
    assert (status["state"], status["domid"]) == ("running", 1)
    assert ok(capsys, "status") == "web: running (domain ID 1)\n"
    assert "web   running  1   yes       file 12 MiB" in ok(capsys, "list")

    details = ok(capsys, "status", "web").splitlines()
    assert details[0] == "web: running (domain ID 1)"
    assert details[1:] == [
        f"  image:     {image}",
        "  version:   -",
        f"  created:   {status['created']}",
        "  updated:   -",
        "  previous:  -",
        "  autoboot:  yes",
        f"  network:   {status['network'] or '-'}",
        "  disk:      file 12 MiB",
        "  signed by: - (not verified)",
    ]

    ok(capsys, "stop", "web")
    assert env.xl.ops()[-1] == ["shutdown", "web"]
    assert ok(capsys, "status", "web").splitlines()[0] == "web: stopped"

    ok(capsys, "remove", "web")
    assert guests_left(env) == []
    assert ok(capsys, "list", "--json") == "[]\n"
    with open(os.path.join(str(env.tmp), "manager.log")) as f:
        log = f.read()
    assert "guest web created" in log and "guest web removed" in log


def test_create_refusals_leave_nothing(env, capsys):
    image = guest_image(env)
    assert fails(capsys, "create", image, "bad/name").startswith("invalid guest name")
    folder = str(env.tmp / "dirimage")
    os.mkdir(folder)
    operations.create(folder)
    with open(os.path.join(folder, "params.cfg"), "a") as f:
        f.write('LD_PRELOAD="/tmp/evil.so"\n')
    message = fails(capsys, "create", folder, "evil")
    assert message.endswith("invalid image: params.cfg: LD_PRELOAD is reserved: the host "
                            "exports parameters to init scripts")
    assert guests_left(env) == []
    ok(capsys, "create", image)
    assert fails(capsys, "create", image) == ("guest web exists already (remove it first, or "
                                              "create it with --replace)")


def test_empty_paths_are_named_as_such(env, capsys, monkeypatch):
    """An empty IMAGE is not the current folder, an empty --config not the default."""
    folder = env.tmp / "cwd"
    folder.mkdir()
    operations.create(str(folder))  # a directory image: what 'create ""' would have used
    monkeypatch.chdir(folder)
    assert fails(capsys, "create", "", "web") == "the image path is empty"
    assert fails(capsys, "list", "--config", "") == "the settings file path is empty"
    assert guests_left(env) == []


def test_replace(env, capsys):
    image = guest_image(env)
    ok(capsys, "create", image)
    ok(capsys, "start", "web")
    assert "is running: stop it" in fails(capsys, "create", "--replace", image)
    ok(capsys, "stop", "web")
    before = json.loads(ok(capsys, "status", "web", "--json"))
    guest_image(env, edits=[("--set-param", "GUEST_AUTOBOOT=0")])
    ok(capsys, "create", "--replace", image)
    after = json.loads(ok(capsys, "status", "web", "--json"))
    assert (before["autoboot"], after["autoboot"]) == (True, False)


def test_failing_init_script_leaves_no_domain(env, capsys):
    fail = script(str(env.tmp / "20-fail"), "echo broken >&2\nexit 7\n")
    ok(capsys, "create", guest_image(env, edits=[("--init-script", fail)]))
    message = fails(capsys, "start", "web")
    assert message == ("init.d/20-fail failed with exit status 7: broken; "
                       "domain web was destroyed")
    assert env.xl.domains() == {}
    assert [op[0] for op in env.xl.ops()] == ["create", "destroy"]


def test_stop_timeout_and_kill(env, capsys):
    ok(capsys, "create", guest_image(env))
    ok(capsys, "start", "web")
    env.xl.update(shutdown_polls=-1)  # the guest ignores the shutdown request
    assert fails(capsys, "stop", "web", "--timeout", "0.3") == (
        "guest web did not shut down within 0.3 s (use --kill to destroy it)")
    assert "web" in env.xl.domains()
    ok(capsys, "stop", "web", "--timeout", "0.3", "--kill")
    assert env.xl.domains() == {}
    assert env.xl.ops()[-1] == ["destroy", "web"]
    assert fails(capsys, "stop", "web") == "guest web is not running"
    assert fails(capsys, "destroy", "web") == "guest web is not running"


def test_remove_running_guest_waits_until_gone(env, capsys):
    ok(capsys, "create", guest_image(env))
    ok(capsys, "start", "web")
    env.xl.update(shutdown_polls=1)
    ok(capsys, "remove", "web")
    assert env.xl.domains() == {} and guests_left(env) == []
    assert [op[0] for op in env.xl.ops()] == ["create", "unpause", "shutdown"]


def test_autostart_and_shutdown_all(env, capsys):
    guest_image(env, "alpha")
    guest_image(env, "beta", [("--set-param", "GUEST_AUTOBOOT=0")])
    guest_image(env, "gamma")
    write(os.path.join(env.images, "notes.txt"), "not an image")
    write(os.path.join(env.images, "broken.xenguest"), "not a tar")
    rc, out, err = cli(capsys, "autostart")
    assert rc == 1
    assert out.splitlines() == ["alpha: created", "beta: created", "gamma: created",
                                "alpha: started", "gamma: started"]
    assert "broken.xenguest" in err
    assert sorted(env.xl.domains()) == ["alpha", "gamma"]
    os.unlink(os.path.join(env.images, "broken.xenguest"))
    assert ok(capsys, "autostart") == ""
    assert [op[0] for op in env.xl.ops()].count("create") == 2

    env.xl.update(shutdown_polls=-1)
    ok(capsys, "stop", "gamma", "--no-wait")
    rc, out, err = cli(capsys, "shutdown-all", "--timeout", "0.2")
    assert rc == 1 and out == ""
    assert err.splitlines()[-2:] == [
        "xenguest-manager: shutdown alpha: did not shut down within 0.2 s",
        "xenguest-manager: shutdown gamma: did not shut down within 0.2 s"]
    out = ok(capsys, "shutdown-all", "--timeout", "0.2", "--kill")
    assert out.splitlines() == ["alpha: stopped", "gamma: stopped"]
    assert env.xl.domains() == {}


def test_lock_serializes_commands(env, capsys):
    ok(capsys, "create", guest_image(env))
    with open(os.path.join(env.state, "locks", "web.lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        message = fails(capsys, "start", "web")
    assert message.startswith("guest web is busy: another xenguest-manager command still "
                              "holds")
    assert env.xl.ops() == []


def test_unknown_guest_and_settings_errors(env, capsys, monkeypatch):
    assert fails(capsys, "status", "nobody") == "no guest nobody (see 'xenguest-manager list')"
    assert fails(capsys, "list", "--config", str(env.tmp / "missing.conf")).endswith(
        "missing.conf: no such settings file")
    bad = write(str(env.tmp / "bad.conf"), "[disk]\nbackend = zfs\n")
    assert fails(capsys, "list", "--config", bad) == (
        f"{bad}: [disk] backend: 'zfs' is not one of file, lvm")
    assert fails(capsys, "bogus", rc=2).startswith("argument OPERATION: invalid choice")


def test_list_without_a_toolstack(env, capsys):
    ok(capsys, "create", guest_image(env))
    config = config_file(str(env.tmp), env.state, xl=str(env.tmp / "no-xl"))
    rc, out, err = cli(capsys, "list", "--json", "--config", config)
    assert rc == 0 and json.loads(out)[0]["state"] == "unknown"
    assert "cannot list domains: command xl not found" in err


def test_launcher_runs_from_the_checkout(env, tmp_path):
    ok_env = dict(os.environ, XENGUEST_MANAGER_CONFIG=env.config, PYTHONPATH="")
    proc = subprocess.run([sys.executable, LAUNCHER, "list", "--json"], env=ok_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(tmp_path))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"[]\n", b"")
    proc = subprocess.run([sys.executable, LAUNCHER, "remove", "--help"], env=ok_env,
                          stdout=subprocess.PIPE)
    assert proc.returncode == 0 and b"usage: xenguest-manager remove" in proc.stdout


def test_commands_that_make_no_guest_do_not_load_the_image_library(env):
    """list, status, start and stop start faster on slow dom0 CPUs without it."""
    probe = "\n".join([
        "import runpy, sys",
        f"sys.argv = [{LAUNCHER!r}, 'list']",
        "try:",
        f"    runpy.run_path({LAUNCHER!r}, run_name='__main__')",
        "except SystemExit:",
        "    pass",
        "print(' '.join(m for m in sys.modules if m.startswith('xenguest.')",
        "               or m in ('tarfile', 'hashlib')))",
    ])
    proc = subprocess.run([sys.executable, "-c", probe], env=dict(
        os.environ, XENGUEST_MANAGER_CONFIG=env.config), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True, check=True)
    loaded = set(proc.stdout.split())
    assert "xenguest.manager.guests" in loaded, proc.stdout
    heavy = {"xenguest.manager.deploy", "xenguest.format.image", "xenguest.format.signing",
             "xenguest.operations.checks", "xenguest.format.manifest", "xenguest.disk.build",
             "tarfile", "hashlib"}
    assert not loaded & heavy, proc.stdout


def test_every_operation_has_help(capsys):
    for op in ("create", "start", "stop", "destroy", "remove", "update", "rollback", "commit",
               "list", "status", "autostart", "shutdown-all", "help"):
        assert "usage: xenguest-manager " + op in ok(capsys, op, "--help")
    assert "shutdown-all" in ok(capsys, "help")


def test_one_bad_image_never_stops_autostart(env, capsys):
    guest_image(env, "alpha")
    bad = guest_image(env, "beta")
    guest_image(env, "gamma")
    patch_header(bad, "guest.cfg", 136, b"\x80" + b"\xff" * 11)  # a base-256 mtime
    rc, out, err = cli(capsys, "autostart")
    assert rc == 1 and "Traceback" not in err
    assert out.splitlines() == ["alpha: created", "gamma: created",
                                "alpha: started", "gamma: started"]
    assert f"create {bad}: {bad}: damaged archive: invalid header at offset " in err
    assert sorted(env.xl.domains()) == ["alpha", "gamma"]
    assert sorted(os.listdir(os.path.join(env.state, "guests"))) == ["alpha", "gamma"]


@pytest.mark.parametrize("name", ["xl.cfg", "disk.img", "xenguest-manager.json"])
def test_names_the_manager_writes_are_refused_whatever_their_type(env, capsys, name):
    folder = str(env.tmp / "dirimage")
    os.mkdir(folder)
    operations.create(folder)
    os.mkdir(os.path.join(folder, name))
    assert fails(capsys, "create", folder, "web").endswith(
        f"invalid image: {name}: reserved: xenguest-manager writes it in the guest's folder")
    assert guests_left(env) == []


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1e400", "soon", ""])
def test_timeouts_are_checked_like_the_settings(env, capsys, value):
    """--timeout nan (or inf, or <= 0) would make stop --kill wait forever: refused."""
    ok(capsys, "create", guest_image(env))
    ok(capsys, "start", "web")
    env.xl.update(shutdown_polls=-1)
    for args in (["stop", "web", "--kill"], ["shutdown-all", "--kill"], ["remove", "web"]):
        message = fails(capsys, *args, f"--timeout={value}", rc=2)
        assert message.startswith(f"argument --timeout: {value!r} "), message
        assert "number of seconds" in message
    assert "web" in env.xl.domains()
    assert [op[0] for op in env.xl.ops()] == ["create", "unpause"]


def test_init_script_output_is_streamed_to_the_log_line_by_line(env, capsys):
    """32 MiB of output on one line: logged in bounded pieces, never held in memory."""
    ok(capsys, "create", guest_image(env))
    script(os.path.join(env.state, "guests", "web", "init.d", "50-loud"), """\
        head -c 33554432 /dev/zero | tr '\\0' x
        echo
        echo "short line"
        printf 'no newline at the end'
        """)
    growth, _ = peak_memory_growth("rc = main(['start', 'web']); assert rc == 0, rc",
                                   "from xenguest.cli.manager import main",
                                   {"XENGUEST_MANAGER_CONFIG": env.config})
    assert growth < 16 * 1024, f"peak RSS grew by {growth} KiB"
    pieces = 0
    with open(str(env.tmp / "manager.log"), encoding="utf-8") as log:
        logged = [line.rstrip("\n").split(" init.d/50-loud: ", 1)[1] for line in log
                  if " init.d/50-loud: " in line]
    for text in logged[:-2]:
        assert set(text) == {"x"} and len(text) <= 4096
        pieces += len(text)
    assert pieces == 32 << 20
    assert logged[-2:] == ["short line", "no newline at the end"]


def test_host_commands_output_is_bounded_in_memory():
    """A host command printing 32 MiB: the manager keeps the beginning and the last line."""
    growth, out = peak_memory_growth(
        "r = Host().run('sh', ['-c', 'head -c 33554432 /dev/zero; echo; echo done >&2; "
        "echo the end'], check=False)\n"
        "print(repr((len(r.stdout), last_line(r.stdout), r.stderr)))",
        "from xenguest.programs import Host, last_line")
    assert growth < 16 * 1024, f"peak RSS grew by {growth} KiB"
    size, last, stderr = ast.literal_eval(out)
    assert size < 2 << 20 and last == "the end" and stderr == "done\n"


def test_a_start_killed_while_writing_the_xl_config_leaves_nothing_behind(env, capsys):
    """kill -9 just before xl.cfg is renamed into place: the next start removes the
    temporary file (the manager's records are written the same way)."""
    ok(capsys, "create", guest_image(env))
    guest = os.path.join(env.state, "guests", "web")
    trace = steps("manager", ["start", "web"], guest, str(env.tmp / "trace"))
    ok(capsys, "destroy", "web")
    [nth] = [i for i, step in enumerate(trace, 1)
             if step.startswith("os.rename") and step.endswith("/xl.cfg")]
    rc, err = run_interrupted("manager", ["start", "web"], guest, nth)
    assert rc == -9, err
    assert [n for n in os.listdir(guest) if "tmp" in n]
    assert env.xl.domains() == {}
    ok(capsys, "start", "web")
    assert [n for n in os.listdir(guest) if "tmp" in n] == []

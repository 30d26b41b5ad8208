"""Writers of one image against each other and against interruptions.

Real processes run the real command: concurrent writers (update, pack,
sign), kill -9 at chosen moments of a write (``killpoints``), failures half
way through a directory image's update.  After each, the image must hold
every reported success and nothing but what it held or what was written.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys

import pytest

from interrupt_util import run_interrupted, steps
from mkimage_util import MKIMAGE, fails, mkimage, ok, sha256, tree, write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "meta-xenguest", "lib")

#: Says it is ready, then runs xenguest-mkimage once it reads a byte from stdin.
AT_ONCE = """\
import os, sys
sys.path.insert(0, {lib!r})
from xenguest.cli.mkimage import main
os.write(1, b"ready\\n")
os.read(0, 1)
sys.exit(main(sys.argv[1:]))
"""


def params(image):
    return json.loads(ok("dump-paramsconfig", image, "--json").out)


def run_at_once(tmp_path, commands):
    """Start one process per argument list; let them all go at the same moment."""
    go, start = os.pipe()
    code = AT_ONCE.format(lib=LIB)
    procs = [subprocess.Popen([sys.executable, "-c", code] + args, stdin=go,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in commands]
    os.close(go)
    for proc in procs:
        assert proc.stdout.readline() == b"ready\n"
    os.write(start, bytes(len(procs)))
    os.close(start)
    return [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]


def new_image(tmp_path, kind):
    image = str(tmp_path / "img")
    if kind == "directory":
        os.mkdir(image)
    ok("create", image, "--disk-size=1")
    return image


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_concurrent_writers_lose_nothing(tmp_path, kind):
    """Every writer that reports success has its change in the image."""
    image = new_image(tmp_path, kind)
    blob = write(str(tmp_path / "blob"), os.urandom(4 << 20))
    for round_ in range(3):
        commands = [["update", image, f"--set-param=P{round_}_{i}={i}",
                     f"--xen-add-file={blob}:blob{i}"] for i in range(5)]
        if kind == "file":
            commands.append(["pack", image, image])
        results = run_at_once(tmp_path, commands)
        assert [rc for rc, _ in results] == [0] * len(commands), results
    assert params(image) == dict({"GUEST_AUTOBOOT": "1"}, **{
        f"P{r}_{i}": str(i) for r in range(3) for i in range(5)})
    ok("check", "--verify", image)


def hidden(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


@pytest.mark.parametrize("operation", ["create", "pack", "rewriting update"])
def test_a_killed_writers_temporary_file_goes_with_the_next_write(tmp_path, operation):
    """kill -9 just before the new image is renamed into place: a full-size hidden file
    is left; the next writer of the image, whichever, removes it."""
    blob = write(str(tmp_path / "src" / "blob"), os.urandom(1 << 20))
    image = str(tmp_path / "g.xenguest")
    ok("create", image, f"--xen-add-file={blob}", f"--xen-add-file={blob}:other")
    before = sha256(image)
    args = {"create": ["create", image, f"--xen-add-file={blob}"],
            "pack": ["pack", image, image],
            "rewriting update": ["update", image, "--xen-rm-file=blob"]}[operation]
    keep = shutil.copy(image, str(tmp_path / "src" / "keep"))
    trace = steps("mkimage", args, str(tmp_path), str(tmp_path) + ".trace")
    shutil.copy(keep, image)
    renames = [i for i, s in enumerate(trace, 1) if s.startswith("os.rename") and "tmp-" in s]
    assert renames, trace
    rc, err = run_interrupted("mkimage", args, str(tmp_path), renames[-1])
    assert rc == -9, err
    assert sha256(image) == before
    [left] = hidden(str(tmp_path))
    assert os.path.getsize(str(tmp_path / left)) > 1 << 20
    ok("update", image, "--xen-memory=128")  # an append: no temporary file of its own
    assert hidden(str(tmp_path)) == []


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    image = str(tmp_path / "g.xenguest")
    ok("create", image)
    live = str(tmp_path / ".g.xenguest.xenguest-tmp-live0001")
    dead = write(str(tmp_path / ".g.xenguest.xenguest-tmp-dead0001"), b"half an image")
    with open(write(live, b"being written"), "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        ok("update", image, "--xen-memory=100")
        assert hidden(str(tmp_path)) == [os.path.basename(live)]
    ok("pack", image, image)
    assert hidden(str(tmp_path)) == [] and not os.path.exists(dead)


# -- directory images: a failed or killed update changes nothing --------------------------


@pytest.fixture
def folder_image(tmp_path):
    """A directory image with a folder files/sub/ and a file files/blob."""
    src = tmp_path / "src"
    blob = write(str(src / "blob"), os.urandom(64 << 10))
    run = write(str(src / "run"), "#!/bin/sh\n")
    image = str(tmp_path / "img")
    os.mkdir(image)
    ok("create", image, "--disk-size=1", f"--xen-add-file={blob}:sub/x",
       f"--xen-add-file={blob}:blob", f"--init-script={run}")
    return image, blob


def listing(image):
    """Every file and folder of the image folder, hidden ones too, with content."""
    return tree(image), sorted(os.path.relpath(os.path.join(d, n), image)
                               for d, dirs, files in os.walk(image) for n in dirs + files)


UPDATE = ["--xen-memory=64", "--set-param=NEW=1", "--xen-rm-file=sub/x", "--init-rm-script=run"]


def traced_update(tmp_path, image):
    """The steps of the update UPDATE of *image*, made on a copy (returned as well: the
    image as the update leaves it)."""
    ref = shutil.copytree(image, str(tmp_path / "ref"))
    return steps("mkimage", ["update", ref] + UPDATE, ref, str(tmp_path / "trace")), ref


@pytest.mark.parametrize("kind", ["file onto a folder", "file below a file",
                                  "ctrl-c while staging", "ctrl-c while swapping"])
def test_a_failed_directory_update_leaves_the_image_as_it_was(tmp_path, folder_image, kind):
    image, blob = folder_image
    before = listing(image)
    if kind == "file onto a folder":
        message = fails("update", image, *UPDATE, f"--xen-add-file={blob}:sub")
        assert message.endswith(": files/sub is a folder in the image: it cannot also be "
                                "a file"), message
    elif kind == "file below a file":
        message = fails("update", image, *UPDATE, f"--xen-add-file={blob}:blob/y")
        assert message.endswith(": files/blob is a file in the image: it cannot also be a "
                                "folder"), message
    else:
        trace, _ = traced_update(tmp_path, image)
        phase = "open-write" if kind == "ctrl-c while staging" else "os.rename"
        points = [i for i, step in enumerate(trace, 1) if step.startswith(phase)]
        assert len(points) >= 4, trace
        for nth in points:
            rc, err = run_interrupted("mkimage", ["update", image] + UPDATE, image, nth,
                                      how="ctrl-c")
            assert (rc, err) == (130, "xenguest-mkimage update: interrupted\n"), trace[nth - 1]
            assert listing(image) == before, trace[nth - 1]
    assert listing(image) == before


def test_an_update_killed_at_any_step_is_undone_or_done_by_the_next_writer(tmp_path,
                                                                         folder_image):
    image, _ = folder_image
    before = listing(image)[0]
    trace, ref = traced_update(tmp_path, image)
    after = listing(ref)[0]
    assert after != before
    outcomes = set()
    for nth in range(1, len(trace) + 1):
        victim = shutil.copytree(image, str(tmp_path / f"victim{nth}"))
        rc, err = run_interrupted("mkimage", ["update", victim] + UPDATE, victim, nth)
        assert rc == -9, (trace[nth - 1], err)
        check = mkimage("check", victim)
        if os.path.exists(os.path.join(victim, ".xenguest-journal")):
            assert check.rc == 1 and "an update of this image was interrupted" in check.out
        ok("update", victim)
        state = listing(victim)[0]
        assert state in (before, after), trace[nth - 1]
        outcomes.add(state == after)
        ok("check", "--verify", victim)
    assert outcomes == {False, True}


def test_a_directory_image_create_killed_at_any_step_is_undone_by_the_next(tmp_path):
    """kill -9 at every step of creating a directory image: creating it again works and
    gives the same image."""
    reference = str(tmp_path / "reference")
    os.mkdir(reference)
    args = ["--disk-size=1", f"--xen-add-file={write(str(tmp_path / 'blob'), b'x')}:a/b"]
    trace = steps("mkimage", ["create", reference] + args, reference, str(tmp_path / "t"))
    for nth in range(1, len(trace) + 1):
        victim = str(tmp_path / f"victim{nth}")
        os.mkdir(victim)
        rc, err = run_interrupted("mkimage", ["create", victim] + args, victim, nth)
        assert rc == -9, (trace[nth - 1], err)
        ok("create", victim, *args)
        assert listing(victim) == listing(reference), trace[nth - 1]


def test_a_failed_partial_update_removes_the_folder_it_made(tmp_path):
    folder = str(tmp_path / "part")
    blob = write(str(tmp_path / "blob"), b"x")
    fails("partial", folder, f"--xen-add-file={blob}:a", f"--xen-add-file={blob}:a/b")
    assert not os.path.exists(folder)
    fails("partial", folder, "--xen-add-file=/no/such/file")
    assert not os.path.exists(folder)


# -- a full disk: the error names the file, and nothing is left -------------------------


def on_a_full_disk(tmp_path, script):
    """Run the shell *script* with $FULL an empty 2 MiB tmpfs (a disk that really fills
    up: a private mount namespace), $M xenguest-mkimage, $XM xenguest-manager, $SRC
    tmp_path/src; return (exit status, stderr, what $FULL held, copied to tmp_path/after)."""
    full, after = tmp_path / "full", tmp_path / "after"
    full.mkdir()
    after.mkdir()
    launcher = os.path.join(ROOT, "meta-xenguest", "scripts")
    wrapped = (f'mount -t tmpfs -o size=2m tmpfs "$FULL" || exit 99\n'
               f'M="{sys.executable} {launcher}/xenguest-mkimage"\n'
               f'XM="{sys.executable} {launcher}/xenguest-manager"\n'
               f'{script}\nrc=$?\ncp -a "$FULL/." "{after}/"\nexit $rc\n')
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           wrapped], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=dict(os.environ, FULL=str(full), SRC=str(tmp_path / "src")))
    assert proc.returncode != 99, proc.stderr.decode()
    return proc.returncode, proc.stderr.decode(), tree(str(after))


@pytest.fixture
def big(tmp_path):
    """A 3 MiB file (more than the full disk holds) and an image holding it."""
    blob = write(str(tmp_path / "src" / "blob"), os.urandom(3 << 20))
    ok("create", str(tmp_path / "src" / "g.xenguest"), f"--disk-add-file={blob}")
    return blob


FULL_DISK_CASES = {
    "create": ("", '$M create "$FULL/g.xenguest" --xen-add-file="$SRC/blob"',
               "create: {full}/g.xenguest"),
    "append": ('$M create "$FULL/g.xenguest"',
               '$M update "$FULL/g.xenguest" --xen-add-file="$SRC/blob"',
               "update: {full}/g.xenguest"),
    "directory update": ('mkdir "$FULL/d" && $M create "$FULL/d"',
                         '$M update "$FULL/d" --xen-add-file="$SRC/blob"',
                         "update: {full}/d/files/blob"),
    "pack": ("", '$M pack "$SRC/g.xenguest" "$FULL/p.xenguest"', "pack: {full}/p.xenguest"),
    "extract": ('mkdir "$FULL/x"', '$M extract "$SRC/g.xenguest" "$FULL/x"',
                "extract: {full}/x/disk/blob"),
    "extract-disk-file": ("", '$M extract-disk-file "$SRC/g.xenguest" blob > "$FULL/out"',
                          "extract-disk-file: standard output"),
}


@pytest.mark.parametrize("case", sorted(FULL_DISK_CASES))
def test_a_full_disk_is_named_and_changes_nothing(tmp_path, big, case):
    setup, command, named = FULL_DISK_CASES[case]
    rc, err, left = on_a_full_disk(tmp_path, f"{setup or 'true'} || exit 98\n{command}")
    assert rc == 1, err
    full = str(tmp_path / "full")
    assert err == f"xenguest-mkimage {named.format(full=full)}: No space left on device\n"
    reference = tmp_path / "reference"
    reference.mkdir()
    subprocess.run(["sh", "-c", f'M="{sys.executable} {MKIMAGE}"\n{setup or "true"}'],
                   check=True, env=dict(os.environ, FULL=str(reference)))
    if case == "extract-disk-file":
        left.pop("out")  # the shell made it, empty
    assert left == tree(str(reference))


@pytest.mark.parametrize("fill", ["configuration", "disk"])
def test_a_full_disk_is_named_by_the_manager_and_nothing_is_kept(tmp_path, big, fill):
    from manager_util import config_file

    image = str(tmp_path / "src" / "web.xenguest")
    if fill == "configuration":
        ok("create", image, f"--xen-kernel={big}")
        named = "guests/.web.partial/files/kernel"
    else:
        ok("create", image, "--disk-size=8M", f"--disk-add-file={big}:fw.img",
           "--disk-add-part=1:6M::fw.img")
        named = "guests/.web.partial/disk.img"
    config = config_file(str(tmp_path / "src"), str(tmp_path / "full" / "state"))
    rc, err, left = on_a_full_disk(
        tmp_path, f'XENGUEST_MANAGER_CONFIG={config} $XM create "$SRC/web.xenguest"')
    assert rc == 1, err
    state = tmp_path / "full" / "state"
    step = "install the configuration" if fill == "configuration" else "provision the disk"
    assert err.splitlines()[-1].startswith(f"xenguest-manager create: guest web: {step}")
    assert f"{state}/{named}: No space left on device (nothing was kept)" in err
    assert [p for p in left if p.startswith("state/guests/")] == []


def test_two_packs_to_one_new_file_never_both_succeed(tmp_path):
    """pack writes a new file: of two at once, one fails rather than be replaced."""
    image = new_image(tmp_path, "file")
    ok("update", image, f"--xen-add-file={write(str(tmp_path / 'blob'), os.urandom(8 << 20))}")
    dest = str(tmp_path / "packed.xenguest")
    for _ in range(3):
        results = sorted(run_at_once(tmp_path, [["pack", image, dest]] * 3))
        assert [rc for rc, _ in results] == [0, 1, 1], results
        assert all(err.startswith(f"xenguest-mkimage pack: {dest}: exists already")
                   for _, err in results[1:]), results
        os.unlink(dest)
    assert hidden(str(tmp_path)) == []

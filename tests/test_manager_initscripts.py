"""The start sequence with real init scripts against a toolstack test double.

There is no Xen hypervisor on a test machine, so the toolstack (the true
system boundary: ``xl``) is :class:`RecordingToolstack`, which implements the
manager's Toolstack interface and records the calls.  The scripts, their
environment, the xl configuration and the state folder are all real.
"""

import os

import pytest

from manager_util import RecordingToolstack, lines, make_image, manager, script, write
from xenguest.errors import XenguestError
from xenguest.manager import ManagerError

TRACE_SCRIPT = ('echo "$XENGUEST_MANAGER_STAGE $(basename "$0") $1 '
                '${XENGUEST_MANAGER_DOMID:-}" >> "$TRACE"\n')


@pytest.fixture
def setup(tmp_path):
    """A guest with traced scripts in every stage; returns (manager, toolstack, trace)."""
    trace = str(tmp_path / "trace")
    src = tmp_path / "scripts"
    edits = [("--set-param", f"TRACE={trace}"), ("--set-param", "GREETING=hello world"),
             ("--xen-kernel", write(str(tmp_path / "Image"), b"kernel"))]
    for stage, option, names in (("pre", "--init-pre", ["20-second", "10-first"]),
                                 ("d", "--init-script", ["10-domain"]),
                                 ("post", "--init-post", ["10-after"])):
        for name in names:
            edits.append((option, script(str(src / stage / name), TRACE_SCRIPT)))
    image = make_image(str(tmp_path / "guest.xenguest"), edits)
    toolstack = RecordingToolstack()
    toolstack.trace = trace
    mgr = manager(str(tmp_path / "state"), toolstack)
    mgr.create(image)
    return mgr, toolstack, trace



def guest_script(mgr, stage, name, body):
    """Add (or replace) a script of the created guest."""
    return script(os.path.join(mgr.state.guest_dir("guest"), stage, name), body)


def test_order_argument_and_domid(setup):
    mgr, toolstack, trace = setup
    domid = mgr.start("guest")
    assert lines(trace) == [
        "init.pre 10-first guest", "init.pre 20-second guest",
        "xl create guest",
        f"init.d 10-domain guest {domid}",
        "xl unpause guest",
        f"init.post 10-after guest {domid}",
    ]
    assert toolstack.domain("guest").state == "running"


def test_host_wide_scripts_run_first(setup, tmp_path):
    mgr, _, trace = setup
    host = tmp_path / "host"
    script(str(host / "init.pre" / "99-host"), TRACE_SCRIPT)
    script(str(host / "init.post" / "00-host"), TRACE_SCRIPT)
    mgr.config.host_scripts = str(host)
    mgr.start("guest")
    assert lines(trace)[0] == "init.pre 99-host guest"
    assert lines(trace)[-2:] == ["init.post 00-host guest 1", "init.post 10-after guest 1"]


def test_environment_is_documented_and_clean(setup, monkeypatch):
    mgr, _, _ = setup
    monkeypatch.setenv("SECRET_OF_THE_MANAGER", "leak")
    monkeypatch.setenv("LC_TIME", "C")
    guest_script(mgr, "init.d", "10-domain", 'env > "$XENGUEST_MANAGER_GUEST_DIR/env.txt"\n'
                                             'pwd > "$XENGUEST_MANAGER_GUEST_DIR/pwd.txt"\n')
    domid = mgr.start("guest")
    guest_dir = mgr.state.guest_dir("guest")
    env = dict(line.split("=", 1) for line in lines(os.path.join(guest_dir, "env.txt"))
               if "=" in line)
    config = os.path.join(guest_dir, "xl.cfg")
    assert env["XENGUEST_MANAGER_GUEST_NAME"] == env["guestname"] == "guest"
    assert env["XENGUEST_MANAGER_GUEST_DIR"] == env["guestdir"] == guest_dir
    assert env["XENGUEST_MANAGER_XL_CONFIG"] == env["guestcfgfile"] == config
    assert env["XENGUEST_MANAGER_STAGE"] == "init.d"
    assert env["XENGUEST_MANAGER_DOMID"] == str(domid)
    assert env["GREETING"] == "hello world" and env["GUEST_AUTOBOOT"] == "1"
    assert env["PATH"] == os.environ["PATH"] and env["LC_TIME"] == "C"
    assert "SECRET_OF_THE_MANAGER" not in env
    assert lines(os.path.join(guest_dir, "pwd.txt")) == [guest_dir]


def test_params_are_never_sourced(tmp_path):
    marker = tmp_path / "pwned"
    image = make_image(str(tmp_path / "guest.xenguest"),
                       [("--set-param", f"SAFE=$(touch {marker})")])
    mgr = manager(str(tmp_path / "state"), RecordingToolstack())
    mgr.create(image)
    out = tmp_path / "seen"
    guest_script(mgr, "init.pre", "10-show", f'printf "%s" "$SAFE" > {out}\n')
    mgr.start("guest")
    assert out.read_text() == f"$(touch {marker})"
    assert not marker.exists()


def test_init_pre_may_append_to_the_xl_config(setup):
    mgr, toolstack, _ = setup
    guest_script(mgr, "init.pre", "30-append",
                 "echo 'on_crash = \"preserve\"' >> \"$XENGUEST_MANAGER_XL_CONFIG\"\n")
    mgr.start("guest")
    assert toolstack.configs[0].rstrip().endswith('on_crash = "preserve"')


def test_xl_config_contents(setup, tmp_path):
    mgr, toolstack, _ = setup
    guest_dir = mgr.state.guest_dir("guest")
    write(os.path.join(guest_dir, "guest.d", "50-extra.cfg"), 'vcpus = 2\nextra += " quiet"\n')
    mgr.start("guest")
    text = toolstack.configs[0]
    assert 'name = "guest"' in text
    assert f'kernel = "{guest_dir}/files/kernel"' in text
    assert "vcpus = 2" in text
    assert 'extra = "earlyprintk=xenboot console=hvc0 rw quiet"' in text
    assert "vif" not in text and "disk" not in text.replace("# disk", "")


def test_bridge_network_and_disk_lines(tmp_path):
    image = make_image(str(tmp_path / "net.xenguest"), [
        ("--set-param", "XENGUEST_NETWORK_TYPE=bridge"), ("--disk-size", "8M"),
        ("--disk-add-part", "1:4M::")])
    toolstack = RecordingToolstack()
    toolstack.bridges = {"br-guests"}
    mgr = manager(str(tmp_path / "state"), toolstack, bridge="br-guests")
    mgr.create(image)
    mgr.start("net")
    disk = os.path.join(mgr.state.guest_dir("net"), "disk.img")
    assert f'disk = ["format=raw, vdev=xvda, access=rw, target={disk}"]' in toolstack.configs[0]
    mac = mgr.state.load("net").nic["mac"]
    assert f'vif = ["mac={mac},bridge=br-guests,script=vif-bridge"]' in toolstack.configs[0]
    mgr.stop("net")
    toolstack.bridges = set()
    with pytest.raises(ManagerError, match="needs network bridge br-guests, which does not"):
        mgr.start("net")
    assert toolstack.calls == [("bridge?", "br-guests"), ("create", "net"), ("unpause", "net"),
                               ("shutdown", "net"), ("bridge?", "br-guests")]


@pytest.mark.parametrize("stage,created", [("init.pre", False), ("init.d", True),
                                           ("init.post", True)])
def test_failing_script_stops_and_destroys(setup, stage, created):
    mgr, toolstack, trace = setup
    guest_script(mgr, stage, "15-fail", "echo 'about to fail'\nexit 3\n")
    with pytest.raises(ManagerError) as err:
        mgr.start("guest")
    message = str(err.value)
    assert message.startswith(f"{stage}/15-fail failed with exit status 3: about to fail")
    if created:
        assert message.endswith("; domain guest was destroyed")
        assert toolstack.calls[-1] == ("destroy", "guest")
    else:
        assert toolstack.calls == []
    assert toolstack.domid("guest") is None
    if stage == "init.pre":  # the sequence stopped at the failing script
        assert lines(trace) == ["init.pre 10-first guest"]


def test_unpause_failure_destroys(setup):
    mgr, toolstack, trace = setup
    toolstack.fail["unpause"] = "cannot unpause"
    with pytest.raises(ManagerError, match="cannot unpause; domain guest was destroyed"):
        mgr.start("guest")
    assert toolstack.domid("guest") is None
    assert not any(line.startswith("init.post") for line in lines(trace))


@pytest.mark.parametrize("leaves,note", [(True, "domain guest was destroyed"),
                                         (False, "no domain was left")])
def test_create_failure(setup, leaves, note):
    mgr, toolstack, _ = setup
    toolstack.fail["create"] = "hotplug script failed"
    toolstack.create_leaves_domain = leaves
    with pytest.raises(ManagerError, match=f"hotplug script failed; {note}"):
        mgr.start("guest")
    assert toolstack.domid("guest") is None


def test_script_timeout_kills_it(setup):
    mgr, toolstack, _ = setup
    mgr.config.script_timeout = 0.5
    guest_script(mgr, "init.d", "10-domain", "sleep 30\n")
    with pytest.raises(ManagerError, match="init.d/10-domain did not finish within 0.5 s"):
        mgr.start("guest")
    assert toolstack.domid("guest") is None


def test_background_process_does_not_hold_the_start(setup, tmp_path):
    mgr, _, _ = setup
    guest_script(mgr, "init.post", "10-after", "sleep 30 &\necho started\n")
    mgr.config.script_timeout = 5
    mgr.start("guest")


def test_host_script_not_executable(setup, tmp_path):
    mgr, toolstack, _ = setup
    write(str(tmp_path / "host" / "init.pre" / "README"), "not a script")
    mgr.config.host_scripts = str(tmp_path / "host")
    with pytest.raises(ManagerError, match="cannot run .*/init.pre/README: Permission denied"):
        mgr.start("guest")
    assert toolstack.calls == []


def test_already_running_is_refused(setup):
    mgr, toolstack, _ = setup
    mgr.start("guest")
    with pytest.raises(ManagerError, match=r"guest guest is already running \(domain ID 1\)"):
        mgr.start("guest")
    assert toolstack.calls == [("create", "guest"), ("unpause", "guest")]


@pytest.mark.parametrize("param,message", [
    ("XENGUEST_NETWORK_TYPE=wifi", "XENGUEST_NETWORK_TYPE is 'wifi', not bridge, nat, none"),
    ("XENGUEST_NETWORK_PORT_FORWARD=22:22", "XENGUEST_NETWORK_PORT_FORWARD needs "
     "XENGUEST_NETWORK_TYPE=nat"),
    ("guestcfgfile=/etc/passwd", "guestcfgfile is set by xenguest-manager"),
])
def test_bad_params_are_refused_at_create(tmp_path, param, message):
    image = str(tmp_path / "bad.xenguest")
    os.mkdir(image)  # a directory image: mkimage itself refuses to write such parameters
    make_image(image)
    with open(os.path.join(image, "params.cfg"), "a") as f:
        f.write(param + "\n")
    mgr = manager(str(tmp_path / "state"), RecordingToolstack())
    with pytest.raises(XenguestError, match=message):
        mgr.create(image)
    assert not os.path.exists(str(tmp_path / "state" / "guests" / "bad"))


def test_restart_after_scripts_left_files_in_the_guest_folder(setup):
    mgr, toolstack, _ = setup
    guest_script(mgr, "init.post", "50-litter",
                 'ln -sf /dev/null "$XENGUEST_MANAGER_GUEST_DIR/litter"\n'
                 'mkfifo "$XENGUEST_MANAGER_GUEST_DIR/pipe" 2>/dev/null || true\n')
    mgr.start("guest")
    mgr.stop("guest")
    assert mgr.start("guest") == 2
    assert [c[0] for c in toolstack.calls] == ["create", "unpause", "shutdown", "create",
                                               "unpause"]

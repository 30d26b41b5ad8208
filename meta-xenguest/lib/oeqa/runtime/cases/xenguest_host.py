#
# SPDX-License-Identifier: MIT
#
"""Runtime tests of a Xen host image that carries xenguest images (testimage).

The host image (for example meta-virtualization's xen-image-minimal with the
xenguest-host class and xenguest-manager, as kas/opt/testimage.yml builds it)
holds guest images in /usr/share/xenguest/guests. At boot, xenguest-manager
creates a guest from each of them and starts those whose GUEST_AUTOBOOT is 1.
On the booted host these tests check that every bundled guest exists and the
autoboot ones run (xenguest-manager status --json, xl list), that the guest's
init scripts ran in their stages, that the guests on the host's NAT network got
their address from its DHCP server and answer the host, and that stop, start
and remove work; they leave the guests as the boot made them (autostart again
after remove).

Enable with TEST_SUITES = "... xenguest_host". The folders are class attributes:
a test case derived from XenguestHostTest can point them elsewhere when the host's
/etc/xenguest/manager.conf does.

The module is not named xenguest.py: BitBake imports this layer's Python library
"xenguest" (layer.conf's addpylib) in every process, and testimage's loader
(unittest discovery) would then get the library instead of this module.
"""

import json
import time

from oeqa.core.decorator.depends import OETestDepends
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.runtime.decorator.package import OEHasPackage

STAGES = ("init.pre", "init.d", "init.post")


class XenguestHostTest(OERuntimeTestCase):
    """The bundled guests on the booted host, and one guest's life cycle."""

    guest_folder = "/usr/share/xenguest/guests"
    state_folder = "/var/lib/xenguest/guests"
    lease_file = "/run/xenguest/network/dnsmasq.leases"
    log_file = "/var/log/xenguest-manager.log"
    # At boot, creating a guest provisions its disk: minutes under emulation.
    boot_wait = 1200
    poll_interval = 10
    command_timeout = 600

    # -- helpers ------------------------------------------------------------

    def run_ok(self, command):
        """Run *command* on the target; fail the test unless it exits 0."""
        status, output = self.target.run(command, self.command_timeout)
        self.assertEqual(status, 0, "'%s' exited with %s:\n%s" % (command, status, output))
        return output

    def manager_json(self, arguments):
        """The JSON that xenguest-manager ARGUMENTS --json prints (its errors on failure)."""
        output = self.run_ok("xenguest-manager %s --json -q 2>/tmp/xenguest-oeqa.err"
                             " || { cat /tmp/xenguest-oeqa.err; exit 1; }" % arguments)
        return json.loads(output)

    def guests(self):
        """xenguest-manager status --json of every guest, by name."""
        return {guest["name"]: guest for guest in self.manager_json("status")}

    def bundled(self):
        """The guest names of the images in the guest folder."""
        output = self.run_ok("ls -1 %s" % self.guest_folder)
        return sorted(entry[:-len(".xenguest")] for entry in output.split()
                      if entry.endswith(".xenguest"))

    def domains(self):
        """xl list: domain name -> domain ID."""
        output = self.run_ok("xl list")
        found = {}
        for line in output.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                found[fields[0]] = int(fields[1])
        return found

    def wait_for(self, ready, what):
        """Poll guests() until ready(guests) holds; fail after boot_wait seconds."""
        deadline = time.time() + self.boot_wait
        while True:
            guests = self.guests()
            if ready(guests):
                return guests
            if time.time() >= deadline:
                log = self.target.run("tail -n 40 %s" % self.log_file)[1]
                self.fail("%s: not within %s s.\nGuests: %s\nManager log:\n%s"
                          % (what, self.boot_wait, json.dumps(guests, indent=1), log))
            time.sleep(self.poll_interval)

    def autoboot_guests(self):
        """Wait until every bundled guest exists and the autoboot ones run.

        Returns the names of the running ones and the status of every guest.
        """
        names = self.bundled()

        def ready(guests):
            return all(name in guests for name in names) and all(
                guests[name]["state"] == "running" for name in names if guests[name]["autoboot"])

        guests = self.wait_for(ready, "xenguest-manager autostart of %s" % ", ".join(names))
        running = [name for name in names if guests[name]["autoboot"]]
        self.assertTrue(running, "no bundled guest has GUEST_AUTOBOOT=1: %s" % names)
        return running, guests

    def state(self, name):
        """The state xenguest-manager reports for guest *name*."""
        return self.manager_json("status %s" % name)["state"]

    def start_block(self, name):
        """The manager log lines of the last start of *name*, up to 'started'."""
        lines = self.run_ok("cat %s" % self.log_file).splitlines()
        starts = [i for i, line in enumerate(lines) if line.endswith("starting guest %s" % name)]
        self.assertTrue(starts, "no start of %s in %s" % (name, self.log_file))
        block = lines[starts[-1]:]
        done = [i for i, line in enumerate(block) if "guest %s started" % name in line]
        self.assertTrue(done, "the last start of %s did not finish:\n%s" % (name, "\n".join(block)))
        return block[:done[0] + 1]

    # -- tests --------------------------------------------------------------

    @OETestDepends(['ssh.SSHTest.test_ssh'])
    @OEHasPackage(['xenguest-manager'])
    def test_bundled_guests_run(self):
        """Every image of the guest folder is a guest; the autoboot ones run under Xen."""
        self.assertTrue(self.bundled(), "no guest image in %s" % self.guest_folder)
        running, guests = self.autoboot_guests()
        domains = self.domains()
        for name in running:
            self.assertIn(name, domains, "guest %s is not in 'xl list'" % name)
            self.assertEqual(guests[name]["domid"], domains[name],
                             "xenguest-manager and xl disagree on %s's domain ID" % name)

    @OETestDepends(['xenguest_host.XenguestHostTest.test_bundled_guests_run'])
    @OEHasPackage(['xenguest-manager'])
    def test_init_scripts_ran_in_order(self):
        """Each init script of the guest ran: init.pre, xl create, init.d, unpause, init.post."""
        name = self.autoboot_guests()[0][0]
        block = self.start_block(name)
        created = [i for i, line in enumerate(block) if "creating domain %s " % name in line]
        unpaused = [i for i, line in enumerate(block) if "unpausing domain %s " % name in line]
        self.assertTrue(created and unpaused, "\n".join(block))
        bounds = {"init.pre": (0, created[0]), "init.d": (created[0], unpaused[0]),
                  "init.post": (unpaused[0], len(block))}
        scripts = 0
        for stage in STAGES:
            output = self.run_ok("ls -1 %s/%s/%s 2>/dev/null || true"
                                 % (self.state_folder, name, stage))
            for script in output.split():
                first, last = bounds[stage]
                ran = [i for i, line in enumerate(block)
                       if line.endswith("running %s/%s" % (stage, script))]
                self.assertTrue(ran, "%s/%s of %s did not run:\n%s"
                                % (stage, script, name, "\n".join(block)))
                self.assertTrue(first <= ran[0] < last, "%s/%s of %s ran out of order:\n%s"
                                % (stage, script, name, "\n".join(block)))
                scripts += 1
        self.assertTrue(scripts, "guest %s has no init scripts" % name)
        self.assertIn("(domain ID %d)" % self.domains()[name], block[-1])

    @OETestDepends(['xenguest_host.XenguestHostTest.test_init_scripts_ran_in_order'])
    @OEHasPackage(['xenguest-manager'])
    def test_nat_guests_get_an_address_and_answer(self):
        """Each running nat guest leased its address from the host's DHCP server (dnsmasq),
        answers ping from the host, and its port forwards are the host's."""
        running, guests = self.autoboot_guests()
        nat = [name for name in running if guests[name]["network"] == "nat"]
        if not nat:
            self.skipTest("no running guest on the NAT network (XENGUEST_NETWORK_TYPE=nat)")
        network = self.manager_json("network status")
        self.assertTrue(network["nat"]["dhcp_server_pid"], json.dumps(network, indent=1))
        active = {guest["name"]: guest for guest in network["guests"]}
        for name in nat:
            nic = guests[name]["nic"]
            self.assertEqual((active[name]["mac"], active[name]["ipv4"]),
                             (nic["mac"], nic["ipv4"]), json.dumps(network, indent=1))
            deadline = time.time() + self.boot_wait
            while self.target.run("grep -qi ' %s %s ' %s" % (
                    nic["mac"], nic["ipv4"], self.lease_file))[0] != 0:
                if time.time() >= deadline:
                    self.fail("guest %s never leased %s: %s" % (
                        name, nic["ipv4"], self.target.run("cat %s" % self.lease_file)[1]))
                time.sleep(self.poll_interval)
            self.run_ok("ping -c 3 -W 10 %s" % nic["ipv4"])

    @OETestDepends(['xenguest_host.XenguestHostTest.test_nat_guests_get_an_address_and_answer'])
    @OEHasPackage(['xenguest-manager'])
    def test_stop_and_start(self):
        """stop shuts the guest down (its domain is gone); start brings it back."""
        name = self.autoboot_guests()[0][0]
        self.run_ok("xenguest-manager stop %s" % name)
        self.assertEqual(self.state(name), "stopped")
        self.assertNotIn(name, self.domains())
        self.run_ok("xenguest-manager start %s" % name)
        self.assertEqual(self.state(name), "running")
        self.assertIn(name, self.domains())

    @OETestDepends(['xenguest_host.XenguestHostTest.test_stop_and_start'])
    @OEHasPackage(['xenguest-manager'])
    def test_remove_and_autostart_again(self):
        """remove deletes the guest and its state; autostart creates it from its image again."""
        name = self.autoboot_guests()[0][0]
        self.run_ok("xenguest-manager remove %s" % name)
        self.assertNotIn(name, self.guests())
        self.assertNotIn(name, self.domains())
        status, _ = self.target.run("test -e %s/%s" % (self.state_folder, name))
        self.assertNotEqual(status, 0, "the state of %s is left after remove" % name)
        self.run_ok("xenguest-manager autostart")
        self.assertEqual(self.state(name), "running")
        self.assertIn(name, self.domains())

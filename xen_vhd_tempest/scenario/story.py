# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The seed story, step by step, against any ``Cloud``.

BackupScenario (compute is XenServer, or the lab):
  boot the XenServer image -> dd 10 MB of the root disk to a file, md5sum it, sync ->
  createBackup -> download the backup, check it and convert it with the reference converter ->
  volume from the backup -> attach it to the running server and compare its bytes with the
  reference -> boot from the volume -> md5sum -c.

SyntheticScenario (any compute): build a XenServer chain locally from a bootable raw disk
(base, resize layer to the flavor's size, leaf with a known pattern and partial-sector
writes), upload it as vhd/ovf, then the same volume steps with the pattern checked.

Everything created is registered for cleanup; ``run`` ends with the summary table and returns
an ``outcome.Outcome``. The story talks to the cloud only through ``cloud.Cloud`` (waiters and
guest shells included) and reads only ``options.Options``.
"""

import hashlib
import math
import os
import tempfile
import time

from converter.builder import ImageBuilder, build_pattern
from xen_vhd_tempest.scenario import waiters
from xen_vhd_tempest.scenario.diagnose import cinder_failure, diagnose
from xen_vhd_tempest.scenario.errors import CloudError, ScenarioError
from xen_vhd_tempest.scenario.options import Options  # noqa: F401 - the story's options, importable from here
from xen_vhd_tempest.scenario.outcome import Outcome
from xen_vhd_tempest.scenario.reference import MIB, build_reference, md5s
from xen_vhd_tempest.scenario.resources import Resources, sigterm_as_interrupt
from xen_vhd_tempest.scenario.waiters import poll_delays

GIB = 1 << 30

# The guest's root disk, whatever the hypervisor calls it: the disk holding the / filesystem.
ROOT_DISK = ("mm=$(awk '$5 == \"/\" {m=$3} END {print m}' /proc/self/mountinfo); "
             "p=$(readlink -f /sys/dev/block/$mm); [ -e \"$p/partition\" ] && p=${p%/*}; "
             "[ -n \"$mm\" ] && [ -b /dev/${p##*/} ] && echo /dev/${p##*/} || "
             "awk '$2 == \"/\" {print $1}' /proc/mounts | sed -e 's/p\\?[0-9]*$//'")
DISKS = "ls /sys/block | grep -v -e '^loop' -e '^ram' -e '^sr' -e '^zram' | sort"
# The md5sum the guest runs: by path when one is installed, because busybox shells built to
# prefer applets (cirros', Debian's busybox-static) run busybox's own md5sum for a bare
# `md5sum` even where a faster one is installed (coreutils' hashes 1 GiB in 10.3 s under TCG
# here, busybox's in 18-19 s); on cirros the path is busybox's applet, so nothing changes there.
MD5SUM = "m=md5sum; for p in /usr/bin/md5sum /bin/md5sum; do if [ -x $p ]; then m=$p; break; fi; done; "
# The volume is held to the reference in one pass: md5sum reading the device itself (a pipe
# from dd or head costs a TCG guest ~2x), so the proof costs little more than reading the
# volume does. Only a volume whose device is larger than the reference is hashed through head.
# The guest prints its device size first. Any mismatch (also a device smaller than the
# reference) goes on to the MiB walk below.
WHOLE_MD5 = (MD5SUM + "echo $(($(cat /sys/class/block/{name}/size) * 512)); "
             "if [ \"$(($(cat /sys/class/block/{name}/size) * 512))\" = {size} ]; then $m {dev}; "
             "else head -c {size} {dev} | $m; fi")
# What a plain read of the same device costs (the floor of any in-guest check), on a sample.
READ_SAMPLE = "dd if={dev} of=/dev/null bs=1048576 count={mibs} 2>/dev/null"
READ_SAMPLE_MIBS = 128
# A volume that differs: MiB by MiB (expected md5s on stdin) up to the first difference, which
# the diagnosis starts from. dd bs=1M reads, not head: small reads cost a TCG guest more.
# Chunks of CHUNK_MIBS first, then the MiBs of the first chunk that differs: a walk MiB by MiB
# costs a TCG guest three processes per MiB (~70 ms), over a minute for a difference at the end.
CHUNK_MIBS = 16
COMPARE_MIBS = (MD5SUM + "i={first}; while read want; do got=$(dd if={dev} bs=1048576 skip=$((i*{step})) "
                "count={step} 2>/dev/null | $m); got=${{got%% *}}; if [ \"$got\" != \"$want\" ]; then "
                "echo \"DIFF $i $got\"; exit 0; fi; i=$((i+1)); done; echo \"SAME $i\"")
PROBE_MIBS = (MD5SUM + "for i in {mibs}; do got=$(dd if={dev} bs=1048576 skip=$i count=1 2>/dev/null | $m); "
              "echo \"$i ${{got%% *}}\"; done")


class Story:
    """Shared machinery: resources, servers with SSH, the volume steps."""

    title = "scenario"

    def __init__(self, cloud, options, reporter):
        self.cloud = cloud
        self.options = options
        self.reporter = reporter
        self.resources = Resources(reporter, keep=False)
        self._tmp = None
        self.workdir = options.workdir
        self.diagnosis = None
        self.key_name = None
        self.private_key = None
        self.flavor = None
        self.network_id = None
        self.reference = None
        self.image_id = None            # the XenServer image volumes are made from
        self.attach_server = None       # (server id, Ssh) volumes are attached to
        self.volume_id = None
        self._volume_handle = None
        self._bfv_ssh = None

    # -- running -------------------------------------------------------------------------------
    def steps(self):
        raise NotImplementedError

    def run(self):
        """All steps, then cleanup; returns the ``Outcome``. Never raises for a failed step: the
        outcome (and the summary printed) says what failed and why. An interrupt (Ctrl-C,
        SIGTERM) is raised again once everything is cleaned up, so the whole run stops."""
        ok = interrupted = False
        with sigterm_as_interrupt():
            try:
                self.run_steps(self.steps())
                ok = True
            except ScenarioError as exc:
                self.diagnosis = exc.diagnosis
                if exc.console:
                    self.reporter.progress("console tail:\n" + exc.console)
            except KeyboardInterrupt:
                interrupted = True
                self.reporter.say("interrupted: cleaning up")
            finally:
                try:
                    self.cleanup(failed=not ok)
                except ScenarioError as exc:        # reported in the summary: the clean up step FAILs
                    self.diagnosis = self.diagnosis or exc.diagnosis
        summary = self.reporter.summary(self.title, diagnosis=self.diagnosis)
        if interrupted:             # the whole run stops (after cleaning up), not just this story
            raise KeyboardInterrupt("interrupted; cleaned up")
        return Outcome(self.title, self.reporter.results(), self.diagnosis, summary)

    def run_steps(self, steps):
        for name, fn in steps:
            with self.reporter.step(name):
                try:
                    fn()
                except ScenarioError as exc:
                    if exc.diagnosis:
                        self.reporter.progress(f"diagnosis: {exc.diagnosis}")
                    raise

    def cleanup(self, failed=False):
        with self.reporter.step("clean up"):
            self.resources.keep = self.options.keep and failed
            for _label, ssh in self._ssh_sessions():
                ssh.close()
            problems = self.resources.cleanup()
            problems += self._sweep()
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
            if problems:
                raise ScenarioError("could not delete: " + "; ".join(problems))

    def _sweep(self):
        """Delete what the run created but never registered (a create whose answer was lost to a
        failure or an interrupt): everything named with this run's prefix. Returns failures."""
        if self.resources.keep:
            return []
        try:
            found = self.cloud.leftovers(self.options.prefix)
        except ScenarioError as exc:
            return [f"listing what is left of {self.options.prefix}: {exc}"]
        delete = {"server": self._delete_server, "volume": self._delete_volume,
                  "image": self.cloud.delete_image, "keypair": self.cloud.delete_keypair}
        order = ("server", "volume", "image", "keypair")
        for kind, ident, name in sorted(found, key=lambda f: order.index(f[0])):
            self.resources.add(f"left-over {kind} {name} {ident}",
                               lambda d=delete[kind], i=ident: d(i))
        return self.resources.cleanup() if found else []

    def _work(self):
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="xen-vhd-tempest-")
            self.workdir = self._tmp.name
        return self.workdir

    # -- common steps --------------------------------------------------------------------------
    def resolve_common(self):
        o, c = self.options, self.cloud
        self.flavor = c.find_flavor(o.flavor)
        self.network_id = c.find_network(o.network) if o.network else None
        self.key_name = f"{o.prefix}-key"
        self.private_key = c.create_keypair(self.key_name)
        self.resources.add(f"keypair {self.key_name}", lambda: c.delete_keypair(self.key_name))
        self.reporter.progress(f"flavor {self.flavor.name} ({self.flavor.disk_gb} GiB root disk), "
                               f"keypair {self.key_name}")

    def boot(self, label, *, image_id=None, volume_id=None):
        """Create a server, wait ACTIVE and SSH-able (failing fast on a console that shows a boot
        failure); returns (server id, connected Ssh)."""
        c, o = self.cloud, self.options
        server_id = c.create_server(f"{o.prefix}-{label}", flavor_id=self.flavor.id, key_name=self.key_name,
                                    image_id=image_id, boot_volume_id=volume_id, network_id=self.network_id)
        self.resources.add(f"server {label} {server_id}", lambda: self._delete_server(server_id))
        self.reporter.progress(f"server {label}: {server_id}")
        started = time.monotonic()
        server = c.wait_server_status(server_id, "ACTIVE", timeout=o.boot_timeout, progress=self.reporter.progress)
        host, port = c.ssh_host(server), o.ssh_port
        check = self._console_check(server_id)
        ssh = c.guest_shell(host, port, o.ssh_user, private_key=self.private_key, password=o.ssh_password,
                            host_key=o.host_key_of(server_id) if o.host_key_of else None)
        self.reporter.progress(f"waiting for SSH on {host}:{port}")
        check()
        ssh.connect(timeout=max(o.boot_timeout - (time.monotonic() - started), 30), check=check)
        self.reporter.progress(f"SSH up {time.monotonic() - started:.0f}s after create")
        return server_id, ssh

    def _console_check(self, server_id):
        last = [0.0]

        def check():
            if time.monotonic() - last[0] < 4:
                return
            last[0] = time.monotonic()
            console = self.cloud.console_output(server_id)
            found = waiters.console_failure(console)
            if found:
                reason, line = found
                raise ScenarioError(f"server {server_id} did not boot: {reason} (console: {line!r})",
                                    console=waiters.console_tail(console))
        return check

    def _delete_server(self, server_id):
        self.cloud.delete_server(server_id)
        self.cloud.wait_server_gone(server_id, timeout=self.options.boot_timeout)

    def _delete_volume(self, volume_id):
        v = self.cloud.get_volume(volume_id) if self.cloud.volume_exists(volume_id) else None
        if v is None:
            return
        if v.status == "in-use":
            self.cloud.wait_volume_status(volume_id, "available", timeout=self.options.volume_timeout)
        self.cloud.delete_volume(volume_id)
        self.cloud.wait_volume_gone(volume_id, timeout=self.options.volume_timeout)

    # -- the volume steps (6-8) ----------------------------------------------------------------
    def volume_steps(self, check_boot):
        return [
            ("create a volume from the image", self.create_volume),
            ("compare the volume's bytes with the reference", self.compare_volume),
            ("boot from the volume and check the data", lambda: check_boot(self.boot_from_volume())),
        ]

    def drop_volume(self):
        """Delete the current volume now (the volume steps can then run again, e.g. per fault)."""
        if self.volume_id is not None:
            if self._bfv_ssh is not None:
                self._bfv_ssh.close()
                self._bfv_ssh = None
            problems = self.resources.release_from(self._volume_handle)   # the server booted from it first
            self.volume_id = self._volume_handle = None
            if problems:
                raise ScenarioError("could not delete: " + "; ".join(problems))

    def create_volume(self):
        size_gb = max(1, math.ceil(self.reference.size / GIB))
        name = f"{self.options.prefix}-volume"
        volume_id = self.cloud.create_volume(name, size_gb, image_id=self.image_id)
        self.volume_id = volume_id
        self._volume_handle = self.resources.add(f"volume {volume_id}", lambda: self._delete_volume(volume_id))
        self.reporter.progress(f"volume {volume_id}: {size_gb} GiB from image {self.image_id}")
        t0 = time.monotonic()
        try:
            self.cloud.wait_volume_status(volume_id, "available", timeout=self.options.volume_timeout,
                                          progress=self.reporter.progress)
        except CloudError as exc:
            volume = self.cloud.get_volume(volume_id)
            if not volume.status.startswith("error"):
                raise
            raise ScenarioError(f"volume {volume_id} went to {volume.status}: {volume.reason or 'no message'}",
                                diagnosis=cinder_failure(volume.reason)) from exc
        seconds = time.monotonic() - t0
        self.reporter.progress(f"the cloud made the volume in {seconds:.1f}s; the reference converter converted "
                               f"the image in {self.reference.seconds:.1f}s")

    def compare_volume(self):
        server_id, ssh = self.attach_server
        before = set(ssh.run(DISKS).split())
        volume_id = self.volume_id
        self.cloud.attach_volume(server_id, volume_id)
        attachment = self.resources.add(f"attachment of volume {volume_id} to server {server_id}",
                                        lambda: self._detach(server_id, volume_id))
        try:
            self.cloud.wait_volume_status(self.volume_id, "in-use", timeout=self.options.volume_timeout,
                                          progress=self.reporter.progress)
            device = self._new_disk(ssh, before)
            ref = self.reference
            mibs = len(ref.mib_md5s)
            self.reporter.progress(f"attached as {device}; comparing {mibs} MiB with the reference")
            t0 = time.monotonic()
            out = ssh.run("sudo sh -c " + _quote(WHOLE_MD5.format(dev=device, name=device.rsplit("/", 1)[-1],
                                                                   size=ref.size)),
                          timeout=max(900.0, mibs * 1.0)).split()
            compare_s = time.monotonic() - t0
            if len(out) < 2 or not out[0].isdigit():
                raise ScenarioError(f"hashing the volume in the guest gave {' '.join(out)[:200]!r}")
            if int(out[0]) < ref.size:      # too small: the MiB walk below finds where it ends
                self.reporter.progress(f"{device} holds {int(out[0])} bytes, the reference {ref.size}")
            whole = out[1]
            if whole == ref.md5:
                self.reporter.progress(f"all {mibs} MiB match the reference conversion (md5 {ref.md5})")
                self._report_read_ratio(ssh, device, mibs, compare_s)
                return
            first, got = self._first_differing_mib(ssh, device, ref, whole)
            self.reporter.progress(f"MiB {first} differs: locating the fault")

            def probe(mibs):
                lines = ssh.run("sudo sh -c " + _quote(PROBE_MIBS.format(dev=device, mibs=" ".join(map(str, mibs)))))
                return {int(a): b for a, b in (line.split() for line in lines.splitlines() if line.strip())}

            found = diagnose(ref, first, got, probe, self._work())
            raise ScenarioError(f"the volume differs from the reference conversion from MiB {first} on",
                                diagnosis=found)
        finally:
            self._detach(server_id, volume_id, progress=self.reporter.progress)
            self.resources.forget(attachment)

    def _first_differing_mib(self, ssh, device, ref, whole):
        """(index, guest md5) of the first MiB of the volume that is not the reference's."""
        def walk(first, step, md5s):
            out = ssh.run("sudo sh -c " + _quote(COMPARE_MIBS.format(dev=device, first=first, step=step)),
                          input="\n".join(md5s) + "\n", timeout=max(900.0, len(ref.mib_md5s) * 1.0)).split()
            if out[:1] != ["DIFF"]:
                raise ScenarioError(f"the volume's md5 {whole} is not the reference's {ref.md5}, yet comparing "
                                    f"{step} MiB at a time gave {' '.join(out)[:200]!r}")
            return int(out[1]), out[2]

        _, chunk_md5s = md5s(ref.raw_path, ref.size, whole=False, span=CHUNK_MIBS * MIB)
        chunk, _ = walk(0, CHUNK_MIBS, chunk_md5s)
        start = chunk * CHUNK_MIBS
        return walk(start, 1, ref.mib_md5s[start:start + CHUNK_MIBS])

    def _report_read_ratio(self, ssh, device, mibs, compare_s):
        """Print the compare's cost against a plain read of the same device (a sample, scaled)."""
        sample = min(mibs, READ_SAMPLE_MIBS)
        t0 = time.monotonic()
        ssh.run("sudo sh -c " + _quote(READ_SAMPLE.format(dev=device, mibs=sample)), timeout=600.0)
        read_s = (time.monotonic() - t0) * mibs / sample
        self.reporter.progress(f"compare took {compare_s:.1f}s; a plain read of the volume takes ~{read_s:.1f}s "
                               f"({sample} MiB read, scaled): {compare_s / read_s:.2f}x the read")

    def _detach(self, server_id, volume_id, progress=None):
        if self.cloud.get_volume(volume_id).status == "in-use":
            self.cloud.detach_volume(server_id, volume_id)
        self.cloud.wait_volume_status(volume_id, "available", timeout=self.options.volume_timeout,
                                      progress=progress)

    def _new_disk(self, ssh, before, timeout=120):
        deadline = time.monotonic() + timeout
        delays = poll_delays(2.0)
        while True:
            now = set(ssh.run(DISKS).split())
            new = sorted(now - before)
            if new:
                return f"/dev/{new[0]}"
            if time.monotonic() > deadline:
                raise ScenarioError(f"the attached volume did not appear in the guest within {timeout}s")
            time.sleep(next(delays))

    def boot_from_volume(self):
        server_id, ssh = self.boot("from-volume", volume_id=self.volume_id)
        self._bfv_ssh = ssh
        return ssh

    def _ssh_sessions(self):
        if self.attach_server:
            yield "attach", self.attach_server[1]
        if self._bfv_ssh is not None:
            yield "from-volume", self._bfv_ssh


class BackupScenario(Story):
    """The seed: a XenServer backup of a booted instance becomes a volume that boots."""

    title = "XenServer backup -> Cinder volume"

    def steps(self):
        return [
            ("resolve image, flavor and keypair", self.resolve),
            ("boot the XenServer image", self.boot_source),
            ("write somefile with dd and record its md5", self.write_file),
            ("nova backup (createBackup)", self.backup),
            ("download and convert the backup with the reference converter", self.make_reference),
        ] + self.volume_steps(self.check_somefile)

    def resolve(self):
        self.resolve_common()
        image = self.cloud.find_image(self.options.image)
        self.source_image = image
        self.reporter.progress(f"image {image.name} ({image.id}, {image.disk_format}/{image.container_format})")

    def boot_source(self):
        self.attach_server = self.boot("source", image_id=self.source_image.id)

    def write_file(self):
        ssh = self.attach_server[1]
        disk = ssh.run(ROOT_DISK).strip().splitlines()[0]
        self.reporter.progress(f"root disk {disk}")
        ssh.run(f"sudo dd if={disk} of=somefile bs=1024 count={self.options.dd_count} 2>/dev/null && "
                "sudo sh -c 'md5sum somefile > somefile.md5' && sync")
        self.somefile_md5 = ssh.run("cat somefile.md5").split()[0]
        self.reporter.progress(f"somefile md5 {self.somefile_md5}")

    def backup(self):
        c, o = self.cloud, self.options
        image_id = c.create_backup(self.attach_server[0], f"{o.prefix}-backup", "daily", 1)
        self.image_id = image_id
        self.resources.add(f"image {image_id}", lambda: c.delete_image(image_id))
        self.reporter.progress(f"backup image {image_id}")
        self.backup_image = c.wait_image_active(image_id, timeout=o.image_timeout, progress=self.reporter.progress)

    def make_reference(self):
        work = self._work()
        path = os.path.join(work, "backup.tgz")
        self.cloud.download_image(self.image_id, path)
        self.reporter.progress(f"downloaded {os.path.getsize(path)} bytes")
        self.reference = build_reference(path, os.path.join(work, "reference.raw"),
                                         disk_format=self.backup_image.disk_format,
                                         container_format=self.backup_image.container_format,
                                         progress=self.reporter.progress)

    def check_somefile(self, ssh):
        out = ssh.run("sudo md5sum -c somefile.md5", check=False).strip()
        self.reporter.progress(out)
        if not out.endswith("OK"):
            raise ScenarioError(f"md5sum -c on the volume-booted server: {out or 'no output'}",
                                diagnosis="the volume boots but somefile's content changed: the guest's "
                                          "writes since boot (0.vhd) were not applied correctly")


class SyntheticScenario(Story):
    """For clouds whose compute is not XenServer: a chain built here, uploaded as vhd/ovf."""

    title = "synthetic XenServer chain -> Cinder volume"
    PATTERN_AT = 4 * MIB + 3 * 512 + 100     # past the base's end, unaligned
    PATTERN_LEN = 3 * MIB + 777

    def steps(self):
        return [
            ("resolve flavor, keypair and raw image", self.resolve),
            ("build a XenServer chain from the raw image", self.build_chain),
            ("upload it as vhd/ovf", self.upload),
            ("boot a server to attach volumes to", self.boot_helper),
        ] + self.volume_steps(self.check_pattern)

    def resolve(self):
        self.resolve_common()
        if not self.options.raw_image or not os.path.isfile(self.options.raw_image):
            raise ScenarioError(f"no bootable raw image at {self.options.raw_image!r} (set the raw image option)")

    def build_chain(self):
        work = self._work()
        builder = ImageBuilder(self.options.raw_image)
        base = builder.size
        builder.snapshot(size=self.flavor.disk_gb * GIB)        # the resize layer, as nova grows the disk
        builder.snapshot()                                       # the leaf: writes since "boot"
        self.pattern_offset = base + self.PATTERN_AT
        pattern = build_pattern(self.pattern_offset, self.PATTERN_LEN)
        builder.write(self.pattern_offset, pattern)
        builder.write(base + 700, b"partial sector write")      # a partially filled block and sector
        self.pattern_md5 = hashlib.md5(pattern).hexdigest()
        path = os.path.join(work, "synthetic.tgz")
        builder.build(path, order="shuffle")
        self.reference = build_reference(path, os.path.join(work, "reference.raw"), disk_format="vhd",
                                         container_format="ovf", progress=self.reporter.progress)
        if self.reference.md5 != builder.expected_md5():
            raise ScenarioError("the reference converter disagrees with the builder's model of the chain "
                                "(a converter bug, not a cloud one)")
        self.image_path = path

    def upload(self):
        c, o = self.cloud, self.options
        image_id = c.upload_image(f"{o.prefix}-synthetic", self.image_path, disk_format="vhd",
                                  container_format="ovf")
        self.image_id = image_id
        self.resources.add(f"image {image_id}", lambda: c.delete_image(image_id))
        c.wait_image_active(image_id, timeout=o.image_timeout, progress=self.reporter.progress)

    def boot_helper(self):
        helper = self.cloud.find_image(self.options.helper_image)
        self.attach_server = self.boot("helper", image_id=helper.id)

    def check_pattern(self, ssh):
        disk = ssh.run(ROOT_DISK).strip().splitlines()[0]
        start, length = self.pattern_offset, self.PATTERN_LEN
        got = ssh.run(f"sudo sh -c 'tail -c +{start + 1} {disk} | head -c {length}' | md5sum").split()[0]
        self.reporter.progress(f"pattern on {disk}: md5 {got}")
        if got != self.pattern_md5:
            raise ScenarioError("the pattern written past the base's end is wrong on the volume-booted server",
                                diagnosis="the leaf's data past the parent's end did not survive the conversion")


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"

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

"""Reliability: the lab misbehaves on purpose (lab/fault_injection.py) and the harness copes.

What real clients retry is retried (503s, timeouts), anything else fails with one clear line
and a diagnosis, and every run - failed, timed out or interrupted - leaves nothing behind:
each test counts the lab's servers, volumes, images, keypairs and attachments through the
admin APIs before and after. One lab for the module; faults that hit before or at boot are
cheap, so most tests stop there.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cloudfixtures import ROOT, cli, running_guest_lab

from xen_vhd_tempest.harness.ssh import Ssh
from xen_vhd_tempest.scenario.cloud import CloudError, SshError, WaitTimeout
from xen_vhd_tempest.scenario.errors import ScenarioError
from xen_vhd_tempest.scenario.options import Options
from xen_vhd_tempest.scenario.report import Reporter
from xen_vhd_tempest.scenario.story import BackupScenario, SyntheticScenario

pytestmark = pytest.mark.lab
BOOT = "boot the XenServer image"


@pytest.fixture(scope="module")
def lab():
    yield from running_guest_lab()


@pytest.fixture
def faults(lab):
    """Set the lab's fault rules; cleared after the test whatever happens."""
    def set_faults(*rules):
        return lab.set_setting(faults=list(rules))["faults"]
    yield set_faults
    lab.set_setting(faults=[])


def census(lab):
    """What the lab holds, through the APIs (admin: every project), by id."""
    nova, cinder, glance = lab.nova(who="admin"), lab.cinder(who="admin"), lab.glance(who="admin")
    volumes = cinder.volumes.list(search_opts={"all_tenants": 1})
    return {
        "servers": sorted(s.id for s in nova.servers.list(search_opts={"all_tenants": 1})),
        "volumes": sorted(v.id for v in volumes),
        "images": sorted(i["id"] for i in glance.images.list()),
        "keypairs": sorted(k.name for k in lab.nova().keypairs.list()),      # the demo user's
        "attachments": sorted(a["attachment_id"] for v in volumes for a in v.attachments),
    }


def assert_nothing_left(lab, before, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        after = census(lab)
        if after == before or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert after == before, f"the run leaked: before {before}, after {after}"
    sys.__stderr__.write(f"[census] before {_counts(before)} after {_counts(after)}\n")
    return after


def _counts(census):
    return ", ".join(f"{kind} {len(ids)}" for kind, ids in census.items())


def cloud_for(lab, timeout=None):
    from xen_vhd_tempest.harness.clients import ClientsCloud, session_for
    return ClientsCloud(session_for("xen-vhd-lab", str(lab.state_dir / "clouds.yaml"), timeout=timeout), name="lab")


def story_for(lab, tmp_path, cls=BackupScenario, *, timeout=None, **options):
    from xen_vhd_tempest.harness.pytest_plugin import lab_host_keys
    options.setdefault("image", lab.default_image_id)
    options.setdefault("host_key_of", lab_host_keys(lab.info))
    story = cls(cloud_for(lab, timeout), Options(workdir=str(tmp_path), **options),
                Reporter(sys.__stderr__, prefix="[faults] "))
    return story


def failed_step(story):
    failed = [s for s in story.reporter.steps if s.status == "FAIL"]
    return failed[0] if failed else None


# -- API faults -------------------------------------------------------------------------------
def test_a_500_on_create_server_is_not_retried_and_fails_with_a_diagnosis(lab, faults, tmp_path):
    before = census(lab)
    faults({"kind": "api", "service": "compute", "method": "POST", "path": "/servers$", "status": 500,
            "count": 2},
           {"kind": "api", "service": "compute", "method": "DELETE", "path": "/os-keypairs/", "status": 500})
    story = story_for(lab, tmp_path)
    assert story.run().passed is False
    step = failed_step(story)
    assert step.name == BOOT and "create server: HTTP 500" in step.detail
    assert "not safe to repeat" in str(story.diagnosis) and "request id" in str(story.diagnosis)
    left = lab.set_setting()["faults"]
    assert left == [{"kind": "api", "service": "compute", "method": "POST", "path": "/servers$",
                     "status": 500, "count": 1}], "the POST was retried (or the DELETE fault not hit)"
    # the keypair's DELETE failed once with a 500 and was tried again: nothing leaks
    assert_nothing_left(lab, before)


def test_503s_and_timeouts_on_reads_are_retried_transparently(lab, faults):
    cloud = cloud_for(lab, timeout=1)
    image = lab.default_image_id
    faults({"kind": "api", "service": "image", "method": "GET", "path": f"/images/{image}$", "status": 503,
            "count": 2},
           {"kind": "api", "service": "compute", "method": "GET", "path": "/flavors/1$", "delay": 3})
    assert cloud.get_image(image).id == image
    t0 = time.monotonic()
    assert cloud.find_flavor("1").name == "m1.tiny"
    assert time.monotonic() - t0 >= 1          # the first attempt timed out, the retry answered
    assert lab.set_setting()["faults"] == []


def test_an_api_that_keeps_hanging_fails_with_a_timeout_diagnosis(lab, faults):
    cloud = cloud_for(lab, timeout=1)
    image = lab.default_image_id
    faults({"kind": "api", "service": "image", "method": "GET", "path": f"/images/{image}$", "delay": 2, "count": 9})
    with pytest.raises(CloudError) as info:
        cloud.get_image(image)
    assert "timed out" in str(info.value)
    assert "did not answer get image within the client timeout (1" in info.value.diagnosis
    assert lab.set_setting()["faults"][0]["count"] == 5       # one attempt and 3 retries


def test_fault_rules_are_admin_only_validated_and_settable_from_the_cli(lab, faults):
    url = f"{lab.url}/lab/settings"
    body = json.dumps({"settings": {"faults": [{"kind": "api", "status": 500}]}})
    r = lab.request("PUT", url, who="demo", headers={"Content-Type": "application/json"}, data=body)
    assert r.status_code == 403
    for bad in ([{"kind": "meteor"}], [{"kind": "api", "status": 200}], [{"kind": "guest", "variant": "x"}],
                [{"kind": "api", "path": "("}], [{"kind": "volume-error", "count": 0}], {"kind": "api"}):
        r = lab.request("PUT", url, who="admin", headers={"Content-Type": "application/json"},
                        data=json.dumps({"settings": {"faults": bad}}))
        assert r.status_code == 400 and "faults" in r.text, (bad, r.text)
    cli("lab", "settings", "--state-dir", lab.state_dir, "--fault",
        "kind=api,service=volume,method=POST,path=/volumes$,status=503,count=2", module="xen_vhd_tempest.lab.commands")
    out = cli("lab", "settings", "--state-dir", lab.state_dir, "--fault", '{"kind": "guest", "variant": "panic"}',
              module="xen_vhd_tempest.lab.commands").stdout
    assert json.loads(out)["faults"] == [
        {"kind": "api", "service": "volume", "method": "POST", "path": "/volumes$", "status": 503, "count": 2},
        {"kind": "guest", "variant": "panic", "count": 1}]
    bad = cli("lab", "settings", "--state-dir", lab.state_dir, "--fault", "kind=api,status=abc", check=False,
              module="xen_vhd_tempest.lab.commands")
    assert bad.returncode == 2 and "status" in bad.stderr
    out = cli("lab", "settings", "--state-dir", lab.state_dir, "--clear-faults",
              module="xen_vhd_tempest.lab.commands").stdout
    assert json.loads(out)["faults"] == []


# -- guests that never boot -------------------------------------------------------------------
def test_a_kernel_panic_fails_fast_quoting_the_console(lab, faults, tmp_path):
    before = census(lab)
    faults({"kind": "guest", "variant": "panic"})
    story = story_for(lab, tmp_path, boot_timeout=300)
    assert story.run().passed is False
    step = failed_step(story)
    assert step.name == BOOT and "the guest kernel panicked" in step.detail, step.detail
    assert "Kernel panic - not syncing" in step.detail
    # failed fast: on the console's panic (seconds after it, TCG on a busy machine is slow),
    # long before the boot timeout
    assert step.seconds < 150, f"the panic took {step.seconds:.0f}s to notice"
    assert_nothing_left(lab, before)


def test_a_silent_guest_times_out_cleanly(lab, faults, tmp_path):
    before = census(lab)
    faults({"kind": "guest", "variant": "silent"})
    story = story_for(lab, tmp_path, boot_timeout=20)
    assert story.run().passed is False
    step = failed_step(story)
    assert step.name == BOOT and "no SSH to" in step.detail and "after" in step.detail, step.detail
    assert step.seconds < 60
    assert_nothing_left(lab, before)


# -- volumes and images -----------------------------------------------------------------------
def test_a_volume_in_error_fails_with_its_user_message(lab, faults, tmp_path):
    before = census(lab)
    faults({"kind": "volume-error", "message": "No valid backend was found. Lab: injected."})
    story = story_for(lab, tmp_path)
    story.image_id = lab.default_image_id
    story.reference = type("Ref", (), {"size": 64 << 20})()
    with pytest.raises(ScenarioError) as info:       # Cinder's user message, and what it means
        story.create_volume()
    assert "went to error: copy image to volume: No valid backend was found. Lab: injected." in str(info.value)
    assert str(info.value.diagnosis) == ("Cinder could not make the volume: copy image to volume: No valid backend "
                                         "was found. Lab: injected.")
    story.cleanup()
    assert_nothing_left(lab, before)


def test_an_image_stuck_in_saving_times_out_and_is_deleted(lab, faults, tmp_path):
    before = census(lab)
    faults({"kind": "image-saving", "name": "-synthetic$"})
    story = story_for(lab, tmp_path, SyntheticScenario, image_timeout=4)
    story.image_path = tmp_path / "chain.tgz"
    story.image_path.write_bytes(b"\0" * 4096)
    with pytest.raises(WaitTimeout) as info:
        story.upload()
    assert "still saving after 4s" in str(info.value)
    story.cleanup()
    assert_nothing_left(lab, before)


def test_cleanup_sweeps_what_the_run_created_but_never_learnt_about(lab, tmp_path):
    """A create whose answer was lost (interrupt, failure after the cloud acted): found by name."""
    before = census(lab)
    story = story_for(lab, tmp_path)
    prefix = story.options.prefix
    lab.nova().keypairs.create(f"{prefix}-key")
    lab.cinder().volumes.create(1, name=f"{prefix}-volume")
    lab.glance().images.create(name=f"{prefix}-backup", disk_format="vhd", container_format="ovf")
    assert census(lab) != before
    story.cleanup()
    assert_nothing_left(lab, before)


# -- a booted guest: host keys, a backup stuck in saving, an SSH connection dropped ---------------
def test_booted_guest_host_keys_stuck_backup_and_dropped_ssh(lab, faults, tmp_path):
    before = census(lab)
    story = story_for(lab, tmp_path, image_timeout=5)
    try:
        story.run_steps(story.steps()[:2])              # resolve, boot (host key verified)
        server_id, ssh = story.attach_server
        published = lab.status()["guests"][server_id]["host_keys"]
        assert {k.split()[0] for k in published} == {"ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"}
        seen = ssh.client.get_transport().get_remote_server_key()
        assert f"{seen.get_name()} {seen.get_base64()}" in published

        # a guest presenting another key is refused at once, with a diagnosis
        wrong = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBGPxZ0Cq5tqB6yvmGRw4DNxXlWQ2cU5gWbdXyS9YZ0F"
        impostor = Ssh(ssh.host, ssh.port, "cirros", password="gocubsgo", host_key=wrong)
        t0 = time.monotonic()
        with pytest.raises(SshError) as info:
            impostor.connect(timeout=60)
        assert "does not match" in str(info.value) and time.monotonic() - t0 < 15
        assert "man in the middle" in info.value.diagnosis

        # the lab and its guests listen on loopback only
        listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
        mine = [line.split()[3] for line in listening.splitlines()
                if any(f"pid={pid}," in line for pid in _lab_pids(lab))]
        assert mine and all(addr.startswith("127.") for addr in mine), mine

        # createBackup's image never leaves saving: a clean timeout
        faults({"kind": "image-saving", "name": "-backup$"})
        with pytest.raises(WaitTimeout) as info:
            story.backup()
        assert "still " in str(info.value) and "after 5s" in str(info.value)
        glance = lab.glance()
        deadline = time.monotonic() + 60
        while glance.images.get(story.image_id).status != "saving" and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        assert glance.images.get(story.image_id).status == "saving"

        # the SSH connection is reset while a command runs: a clear failure, not a hang
        faults({"kind": "ssh-drop", "after": 1})
        t0 = time.monotonic()
        with pytest.raises(SshError) as info:
            ssh.run("sleep 60", timeout=90)
        assert time.monotonic() - t0 < 20
        assert "broke while a command ran" in info.value.diagnosis
    finally:
        story.cleanup()
    assert_nothing_left(lab, before)


def _lab_pids(lab):
    from cloudfixtures import lab_processes
    return lab_processes(lab.state_dir) + [lab.info["pid"]]


# -- SIGINT in the middle of a run --------------------------------------------------------------
def test_sigint_during_a_run_cleans_up_and_exits_non_zero(lab):
    before = census(lab)
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(lab.state_dir / "clouds.yaml"), PYTHONUNBUFFERED="1")
    env.pop("OS_CLOUD", None)
    proc = subprocess.Popen([sys.executable, "-m", "xen_vhd_tempest.cli", "run", "--os-cloud", "xen-vhd-lab",
                             "--image", lab.default_image_id, "--timeout", "120"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            lines.append(line)
            if "backup image " in line:
                break
            assert time.monotonic() < deadline, "".join(lines[-20:])
        else:
            pytest.fail("the run ended before its backup step:\n" + "".join(lines[-30:]))
        during = census(lab)
        assert len(during["servers"]) == len(before["servers"]) + 1
        assert len(during["images"]) == len(before["images"]) + 1
        sys.__stderr__.write(f"[census] SIGINT sent while the lab holds {_counts(during)}\n")
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines)
    sys.__stderr__.write(output[-3000:])
    assert proc.returncode != 0, output[-2000:]
    assert "interrupted: cleaning up" in output
    assert "FAIL" in output.splitlines()[-1]
    assert_nothing_left(lab, before)


# -- what the lab already guarantees, checked where no other test does ---------------------------
def test_image_uploads_stream_to_disk(lab):
    """An upload in progress is on disk (``.part``) before the request ends: nothing buffers it whole."""
    import http.client
    from urllib.parse import urlsplit
    glance = lab.glance()
    image = glance.images.create(name="streamed", disk_format="raw", container_format="bare")
    try:
        url = urlsplit(lab.endpoint("image"))
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.putrequest("PUT", f"{url.path.rstrip('/')}/v2/images/{image.id}/file")
        conn.putheader("X-Auth-Token", lab.token())
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(64 << 20))
        conn.endheaders()
        chunk = b"x" * (1 << 20)
        for _ in range(16):
            conn.send(chunk)
        part = lab.state_dir / "images" / f"{image.id}.part"
        deadline = time.monotonic() + 20
        while not (part.exists() and part.stat().st_size >= 8 << 20) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert part.exists() and part.stat().st_size >= 8 << 20, "16 MiB sent, not on disk yet"
        for _ in range(48):
            conn.send(chunk)
        assert conn.getresponse().status == 204
        assert glance.images.get(image.id).size == 64 << 20
    finally:
        glance.images.delete(image.id)


def test_the_lab_refuses_a_non_loopback_bind():
    from xen_vhd_tempest.lab import httpd
    with pytest.raises(ValueError, match="loopback only"):
        httpd.serve("0.0.0.0", 0, {})

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

"""The lab killed with SIGKILL in the middle of work, then started again on the same state:
nothing stays in a transitional state, nothing half-written is served as active, what was
complete is intact, and no guest of the dead lab keeps running.

What each service does on restart (see lab/recovery.py): an image upload that was ``saving``
goes back to ``queued`` without data; a volume ``creating``/``downloading`` goes to ``error``
(cinder-volume's init_host); a backup being exported is deleted (nova's failed-snapshot rule);
servers do not survive a lab, so their QEMU guests are stopped and their directories removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import time
from urllib.parse import urlsplit

import pytest
from cloudfixtures import (
    LAB_MODULE,
    lab_processes,
    private_dir,
    same_content,
    start_lab,
    stop_lab,
    wait_gone,
    wait_server,
    wait_volume,
)

from xen_vhd_tempest.lab import recovery

MIB = 1024 * 1024


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_lab(lab):
    """SIGKILL the lab process (no handler, no atexit) and wait until it is gone."""
    pid = lab.info["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, f"lab pid {pid} survived SIGKILL"
        time.sleep(0.05)


def records(state_dir):
    return json.loads((state_dir / "db.json").read_text())


def md5_of(chunks):
    h = hashlib.md5()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def start_upload(lab, image_id, total, first):
    """A PUT of ``total`` bytes that sends only ``first`` and then stalls (the socket stays open)."""
    url = urlsplit(lab.endpoint("image"))
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    path = f"{url.path.rstrip('/')}/v2/images/{image_id}/file"
    head = (f"PUT {path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nX-Auth-Token: {lab.token()}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n")
    sock.sendall(head.encode() + os.urandom(first))
    return sock


@pytest.fixture
def state():
    with private_dir("xvt-lab-restart-") as d:
        yield d


def test_killed_during_upload_and_volume_creation(state):
    lab = start_lab(state, module=LAB_MODULE)
    sock = None
    try:
        glance, cinder = lab.glance(), lab.cinder()
        data = os.urandom(3 * MIB)
        done = glance.images.create(name="complete", disk_format="raw", container_format="bare")
        glance.images.upload(done.id, io.BytesIO(data))
        assert glance.images.get(done.id).checksum == hashlib.md5(data).hexdigest()
        ready = cinder.volumes.create(1, name="ready", imageRef=lab.default_image_id)
        wait_volume(cinder, ready.id, timeout=180)
        reference = state / "ready.copy"
        subprocess.run(["cp", "--sparse=always", lab.volume_path(ready.id), reference], check=True)
        default_md5 = glance.images.get(lab.default_image_id).checksum

        half = glance.images.create(name="half", disk_format="raw", container_format="bare")
        sock = start_upload(lab, half.id, 8 * MIB, 2 * MIB)
        deadline = time.monotonic() + 30
        while glance.images.get(half.id).status != "saving":
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.05)
        creating = cinder.volumes.create(1, name="creating", imageRef=lab.default_image_id)
        kill_lab(lab)
        before = records(state)
        assert before["images"][half.id]["status"] == "saving"
        assert before["volumes"][creating.id]["status"] in ("creating", "downloading"), \
            "the volume was finished before the kill: nothing to recover"
        sock.close()
        sock = None

        lab = start_lab(state, module=LAB_MODULE)
        glance, cinder = lab.glance(), lab.cinder()
        # the cut upload: queued (glance's rule for a failed upload), no data served or kept
        cut = glance.images.get(half.id)
        assert cut.status == "queued" and not cut.checksum and cut.size is None
        assert lab.request("GET", f"{lab.endpoint('image')}/v2/images/{half.id}/file").status_code == 204
        assert sorted(p.name for p in (state / "images").iterdir()) == sorted([done.id, lab.default_image_id])
        # the volume under construction: error, with a message; deletable
        vol = cinder.volumes.get(creating.id)
        assert vol.status == "error"
        assert not list((state / "volumes").glob(".*.convert"))
        cinder.volumes.delete(vol.id)
        wait_gone(lambda: cinder.volumes.get(vol.id), what=f"volume {vol.id}")
        # what was complete is intact
        assert glance.images.get(done.id).status == "active"
        assert md5_of(glance.images.data(done.id)) == hashlib.md5(data).hexdigest()
        assert md5_of(glance.images.data(lab.default_image_id)) == default_md5
        assert cinder.volumes.get(ready.id).status == "available"
        assert same_content(lab.volume_path(ready.id), reference)
        # and the restarted lab works
        again = cinder.volumes.create(1, name="after-restart")
        wait_volume(cinder, again.id, timeout=60)
        for vid in (again.id, ready.id):
            cinder.volumes.delete(vid)
    finally:
        if sock is not None:
            sock.close()
        stop_lab(lab, module=LAB_MODULE)


@pytest.mark.lab
def test_killed_during_backup_export_leaves_no_guest(state):
    from xen_vhd_tempest.lab.hypervisor import qemu_available
    reason = qemu_available()
    if reason:
        pytest.fail(f"cannot run QEMU guests here: {reason}", pytrace=False)
    lab = start_lab(state, module=LAB_MODULE)
    try:
        nova, glance = lab.nova("2.60"), lab.glance()
        default_md5 = glance.images.get(lab.default_image_id).checksum
        server = nova.servers.create("doomed", lab.default_image_id, "42", nics="none")
        wait_server(nova, server.id, timeout=300)
        guests = recovery.stale_guests(state / "instances")
        assert len(guests) == 1, guests
        resp = lab.request("POST", f"{lab.endpoint('compute')}/servers/{server.id}/action",
                           headers={"Content-Type": "application/json",
                                    "X-OpenStack-Nova-API-Version": "2.60"},
                           data=json.dumps({"createBackup": {"name": "cut", "backup_type": "daily",
                                                             "rotation": 2}}))
        assert resp.status_code == 202, resp.text
        backup_id = resp.json()["image_id"]
        kill_lab(lab)
        assert records(state)["images"][backup_id]["status"] in ("queued", "saving"), \
            "the backup was finished before the kill: nothing to recover"
        # the guest's watchdog stops QEMU as soon as the lab is gone
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in guests):
            assert time.monotonic() < deadline, f"QEMU {guests} outlived the lab"
            time.sleep(0.1)

        lab = start_lab(state, module=LAB_MODULE)
        nova, glance = lab.nova("2.60"), lab.glance()
        assert [i.id for i in glance.images.list() if i.id == backup_id] == []
        assert nova.servers.list() == []
        assert list((state / "instances").iterdir()) == []
        assert recovery.stale_guests(state / "instances") == []
        assert md5_of(glance.images.data(lab.default_image_id)) == default_md5
    finally:
        stop_lab(lab, module=LAB_MODULE)
    assert lab_processes(state) == []


def test_sweep_stops_a_guest_whose_watchdog_died_too(tmp_path):
    """The backstop: a QEMU naming a file under instances/ is killed at start (no watchdog)."""
    import shutil

    from xen_vhd_tempest.lab.hypervisor import QEMU
    if shutil.which(QEMU) is None:
        pytest.fail(f"{QEMU} not installed (bindep.txt, profile lab)", pytrace=False)
    instances = tmp_path / "instances"
    (instances / "abc").mkdir(parents=True)
    drive = instances / "abc" / "config-drive.img"
    drive.write_bytes(bytes(MIB))
    proc = subprocess.Popen([QEMU, "-accel", "tcg", "-m", "16", "-nodefaults", "-display", "none", "-S",
                             "-drive", f"file={drive},format=raw,if=none,id=d0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while proc.pid not in recovery.stale_guests(instances):
            assert time.monotonic() < deadline and proc.poll() is None, "QEMU did not start"
            time.sleep(0.05)
        lines = []
        assert recovery.stop_stale_guests(instances, log=lines.append) == [proc.pid]
        assert proc.wait(timeout=5) == -signal.SIGKILL and len(lines) == 1
        assert recovery.clear_instances(instances, log=lines.append) == ["abc"]
        assert list(instances.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sweep_stops_a_cinder_worker_left_converting_with_its_children(tmp_path):
    """A worker of this state directory (and what it runs, e.g. qemu-img) is killed at start;
    one of another state directory is not."""
    import sys
    conf = tmp_path / "state" / "cinder" / "cinder.conf"
    other = tmp_path / "other" / "cinder" / "cinder.conf"
    child = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"

    def worker(path):
        return subprocess.Popen([sys.executable, "-c", child, "-m", "xen_vhd_tempest.lab.volume.cinder_worker",
                                 "--config-file", str(path)], start_new_session=True)
    mine, theirs = worker(conf), worker(other)
    try:
        deadline = time.monotonic() + 10
        while len(subprocess.run(["pgrep", "-g", str(mine.pid)], capture_output=True, text=True).stdout.split()) < 2:
            assert time.monotonic() < deadline, "the worker's child did not start"
            time.sleep(0.05)
        lines = []
        assert recovery.stop_stale_cinder_workers(tmp_path / "state", log=lines.append) == [mine.pid]
        assert mine.wait(timeout=5) == -signal.SIGKILL and len(lines) == 1
        deadline = time.monotonic() + 5
        while subprocess.run(["pgrep", "-g", str(mine.pid)], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "the worker's child outlived it"
            time.sleep(0.05)
        assert theirs.poll() is None
    finally:
        for p in (mine, theirs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

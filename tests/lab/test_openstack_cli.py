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

"""The stock ``openstack`` CLI (python-openstackclient) runs the seed story against the lab with the
lab's own clouds.yaml: boot from the XenServer image, console log, ``server backup create``,
``image save`` (a XenServer chain tgz), ``volume create --image``, attach and detach, stop, start
and reboot, boot from the volume, and every delete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from cloudfixtures import running_guest_lab

pytestmark = pytest.mark.lab

OPENSTACK = Path(sys.executable).parent / "openstack"


@pytest.fixture(scope="module")
def lab():
    yield from running_guest_lab()


@pytest.fixture(scope="module")
def osc(lab):
    if not OPENSTACK.exists():
        pytest.fail(f"no openstack command next to {sys.executable} (pip install .[test])", pytrace=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_CLIENT_CONFIG_FILE=str(lab.state_dir / "clouds.yaml"), OS_CLOUD=lab.info["cloud"])

    def run(*args, timeout=300):
        proc = subprocess.run([str(OPENSTACK), *args], capture_output=True, text=True, env=env, timeout=timeout)
        if proc.returncode:
            raise AssertionError(f"openstack {' '.join(args)} -> {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return json.loads(proc.stdout) if "-f" in args and "json" in args else proc.stdout
    return run


def poll(get, done, *, timeout=300, what):
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout}s")
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_seed_story_with_the_openstack_cli(lab, osc, tmp_path):
    server = osc("server", "create", "--image", lab.default_image_id, "--flavor", "m1.tiny", "--wait",
                 "cli-image-boot", "-f", "json")
    assert server["status"] == "ACTIVE", server
    poll(lambda: osc("console", "log", "show", "cli-image-boot"), lambda text: "login:" in text,
         what="console log of cli-image-boot")

    osc("server", "backup", "create", "--name", "cli-backup", "--type", "daily", "--rotate", "1", "--wait",
        "cli-image-boot")
    backup = osc("image", "show", "cli-backup", "-f", "json")
    assert (backup["status"], backup["disk_format"], backup["container_format"]) == ("active", "vhd", "ovf")

    saved = tmp_path / "backup.tgz"
    osc("image", "save", "--file", str(saved), backup["id"])
    assert saved.stat().st_size == backup["size"]
    with tarfile.open(saved) as tar:
        members = sorted(m.name for m in tar.getmembers() if m.isfile())
        leaf = tar.extractfile("./0.vhd").read()
    assert members == ["./0.vhd", "./1.vhd", "./2.vhd"]
    assert leaf[:8] == b"conectix" and leaf[-512:-504] == b"conectix"

    osc("volume", "create", "--image", backup["id"], "--size", "1", "cli-volume")
    volume = poll(lambda: osc("volume", "show", "cli-volume", "-f", "json"),
                  lambda v: v["status"] in ("available", "error"), what="cli-volume")
    assert (volume["status"], str(volume["bootable"]).lower()) == ("available", "true"), volume

    osc("server", "add", "volume", "cli-image-boot", "cli-volume")
    attached = osc("volume", "show", "cli-volume", "-f", "json")
    assert attached["status"] == "in-use" and attached["attachments"][0]["server_id"] == server["id"]
    osc("server", "remove", "volume", "cli-image-boot", "cli-volume")
    poll(lambda: osc("volume", "show", "cli-volume", "-f", "value", "-c", "status").strip(),
         lambda s: s == "available", timeout=60, what="cli-volume after detach")

    osc("server", "stop", "cli-image-boot")
    poll(lambda: osc("server", "show", "cli-image-boot", "-f", "value", "-c", "status").strip(),
         lambda s: s == "SHUTOFF", timeout=120, what="cli-image-boot after stop")
    osc("server", "start", "cli-image-boot")
    poll(lambda: osc("server", "show", "cli-image-boot", "-f", "value", "-c", "status").strip(),
         lambda s: s == "ACTIVE", timeout=120, what="cli-image-boot after start")
    poll(lambda: osc("console", "log", "show", "cli-image-boot"), lambda text: "login:" in text,
         what="console log of cli-image-boot after start")
    osc("server", "reboot", "--hard", "--wait", "cli-image-boot")
    assert osc("server", "show", "cli-image-boot", "-f", "value", "-c", "status").strip() == "ACTIVE"
    poll(lambda: osc("console", "log", "show", "cli-image-boot"), lambda text: "login:" in text,
         what="console log of cli-image-boot after reboot")

    from_volume = osc("server", "create", "--volume", "cli-volume", "--flavor", "m1.tiny", "--wait",
                      "cli-volume-boot", "-f", "json")
    assert from_volume["status"] == "ACTIVE", from_volume
    assert osc("volume", "show", "cli-volume", "-f", "json")["status"] == "in-use"

    osc("server", "delete", "--wait", "cli-volume-boot", "cli-image-boot")
    poll(lambda: osc("volume", "show", "cli-volume", "-f", "value", "-c", "status").strip(),
         lambda s: s == "available", timeout=60, what="cli-volume after its server's delete")
    osc("volume", "delete", "cli-volume")
    osc("image", "delete", backup["id"])
    status = poll(lab.status, lambda s: (s["servers"], s["volumes"], s["images"]) == (0, 0, 1), timeout=60,
                  what="lab after every delete")
    assert not status["guests"]

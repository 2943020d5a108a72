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

"""``xen-vhd-tempest lab up/status/env/down`` as a user runs them: the generated clouds.yaml and
tempest.conf work, state survives a restart where a real cloud's would, and ``lab down``
leaves no process, socket or guest behind.
"""

from __future__ import annotations

import configparser
import io
import json
import socket
import time

import pytest
from cloudfixtures import LabHandle, cli, lab_processes, private_dir, start_lab, wait_image, wait_server, wait_volume

pytestmark = pytest.mark.lab


@pytest.fixture
def private_state():
    with private_dir("xvt-lab-life-") as d:
        yield d / "state"


def _running(pid):
    """Is ``pid`` a live process (a zombie waiting for its reaper is not)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _refused(host, port):
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True


def test_up_status_env_files_restart_down(private_state):
    from xen_vhd_tempest.lab.hypervisor import qemu_available
    reason = qemu_available()
    if reason:
        pytest.fail(f"cannot run QEMU guests here: {reason}", pytrace=False)
    state = private_state
    lab = start_lab(state)
    stopped = False
    try:
        print(f"lab up (background, default image uploaded) in {lab.up_seconds:.1f}s")
        # status / env
        out = cli("lab", "status", "--state-dir", state, "--json").stdout
        assert json.loads(out)["up"] is True
        env = cli("lab", "env", "--state-dir", state).stdout
        assert f"OS_CLIENT_CONFIG_FILE={state / 'clouds.yaml'}" in env and "OS_CLOUD=xen-vhd-lab" in env
        # clouds.yaml works with openstacksdk, unmodified
        from openstack import config as os_config
        from openstack import connection
        region = os_config.OpenStackConfig(config_files=[str(state / "clouds.yaml")],
                                           load_envvars=False).get_one(cloud="xen-vhd-lab")
        conn = connection.Connection(config=region)
        assert "m1.tiny" in {f.name for f in conn.compute.flavors()}
        conn.close()
        # tempest.conf names the lab's endpoints and default image
        conf = configparser.ConfigParser()
        conf.read(state / "tempest.conf")
        assert conf["identity"]["uri_v3"] == f"{lab.auth_url}/v3"
        assert conf["compute"]["image_ref"] == lab.default_image_id
        assert conf["validation"]["image_ssh_user"] == "cirros"
        # things that must survive a restart, and a guest that must not
        glance, cinder, nova = lab.glance(), lab.cinder(), lab.nova("2.60")
        image = glance.images.create(name="keep-me", disk_format="raw", container_format="bare")
        glance.images.upload(image.id, io.BytesIO(b"x" * 4096))
        wait_image(glance, image.id)
        vol = wait_volume(cinder, cinder.volumes.create(1, name="keep-vol").id)
        server = wait_server(nova, nova.servers.create("short-lived", image=lab.default_image_id, flavor="1",
                                                       nics="none").id, timeout=120)
        guest_addr = server.addresses["private"][0]["addr"]
        status = lab.status()
        qemu_pids = [g["pid"] for g in status["guests"].values()]
        assert qemu_pids and all(_running(p) for p in qemu_pids)
        deadline = time.monotonic() + 60
        while _refused(guest_addr, 22):          # QEMU forwards the guest's SSH port
            assert time.monotonic() < deadline
            time.sleep(0.5)
        host, port = lab.url.split("//")[1].split(":")
        lab_pid = lab.info["pid"]

        cli("lab", "down", "--state-dir", state)
        stopped = True
        assert not _running(lab_pid)
        assert not [p for p in qemu_pids if _running(p)]
        assert lab_processes(state) == []
        assert _refused(host, int(port)) and _refused(guest_addr, 22)
        assert not (state / "lab.json").exists()
        assert not any((state / "instances").iterdir())
        assert cli("lab", "status", "--state-dir", state, check=False).returncode == 3

        lab2 = start_lab(state)
        stopped = False
        assert lab2.default_image_id == lab.default_image_id       # not uploaded twice
        glance, cinder, nova = lab2.glance(), lab2.cinder(), lab2.nova("2.60")
        assert glance.images.get(image.id).status == "active"
        assert b"".join(glance.images.data(image.id)) == b"x" * 4096
        assert cinder.volumes.get(vol.id).status == "available"
        assert nova.servers.list() == []                          # guests died with the lab
        cli("lab", "down", "--state-dir", state)
        stopped = True
        assert lab_processes(state) == []
    finally:
        if not stopped:
            cli("lab", "down", "--state-dir", state, check=False)


def test_up_refuses_a_non_loopback_address(tmp_path):
    proc = cli("lab", "up", "--state-dir", tmp_path, "--host", "0.0.0.0", check=False)
    assert proc.returncode == 2 and "loopback" in proc.stderr


def test_settings_command_changes_a_running_lab(private_state):
    state = private_state
    cli("lab", "up", "--state-dir", state, "--port", "0", "--no-default-image")
    try:
        lab = LabHandle(state, 0)
        out = cli("lab", "settings", "--state-dir", state, "--conversion-mode", "leaf-only").stdout
        assert json.loads(out)["conversion_mode"] == "leaf-only"
        assert lab.set_mode("reference")["conversion_mode"] == "reference"
        assert json.loads(cli("lab", "settings", "--state-dir", state).stdout)["conversion_mode"] == "reference"
    finally:
        cli("lab", "down", "--state-dir", state)


def test_a_harness_lab_takes_a_free_port_when_the_default_is_held(private_state):
    """ensure_up (what the harness calls): another lab, or anything, on 8780 is no failure."""
    from xen_vhd_tempest.lab import commands as lab
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", lab.DEFAULT_PORT))
        holder.listen()
    except OSError:
        pass                                # already held by someone else: the same situation
    try:
        info = lab.ensure_up(private_state)
        assert not info["url"].endswith(f":{lab.DEFAULT_PORT}"), info["url"]
        assert lab.admin_token(info)
    finally:
        lab.ensure_down(private_state)
        holder.close()

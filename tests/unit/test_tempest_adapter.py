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

"""The tempest plugin's adapter without a cloud: ``RemoteSsh`` over a RemoteClient double that runs
commands in a local shell, ``TempestCloud`` over service-client doubles (cleanups registered with
the test, leftovers listed), the outcome's named fault."""

import subprocess
import types

import pytest
from tempest.lib import exceptions as lib_exc  # noqa: E402
from tempest.lib.common import rest_client  # noqa: E402

from xen_vhd_tempest.scenario.cloud import CloudError, SshError, WaitTimeout  # noqa: E402
from xen_vhd_tempest.scenario.diagnose import Diagnosis  # noqa: E402
from xen_vhd_tempest.scenario.outcome import Outcome  # noqa: E402
from xen_vhd_tempest.scenario.report import StepResult  # noqa: E402
from xen_vhd_tempest.tempest_plugin import cloud as tempest_cloud  # noqa: E402
from xen_vhd_tempest.tempest_plugin import remote  # noqa: E402


class LocalRemote:
    """RemoteClient's exec_command contract (prologue, raise on non-zero), in a local sh."""

    def __init__(self, tmp_path):
        self.commands = []
        self.ssh_client = types.SimpleNamespace(timeout=300, port=22)
        self.tmp = tmp_path

    def exec_command(self, cmd):
        self.commands.append(cmd)
        full = "set -eu -o pipefail; PATH=$PATH:/sbin; " + cmd.replace("/tmp/", f"{self.tmp}/")
        proc = subprocess.run(["bash", "-c", full], capture_output=True, text=True, timeout=60)
        if proc.returncode:
            raise lib_exc.SSHExecCommandFailed(command=cmd, exit_status=proc.returncode, stderr=proc.stderr,
                                               stdout=proc.stdout)
        return proc.stdout


@pytest.fixture
def ssh(tmp_path):
    s = remote.RemoteSsh.__new__(remote.RemoteSsh)
    s.host, s.port, s.user, s.connected = "127.0.0.9", 22, "cirros", True
    s.remote = LocalRemote(tmp_path)
    return s


def test_run_returns_stdout_and_raises_on_failure(ssh):
    assert ssh.run("echo hello") == "hello\n"
    with pytest.raises(SshError, match="exit status: 3"):
        ssh.run("echo out; echo err >&2; exit 3")


def test_run_without_check_keeps_stdout_of_a_failing_command(ssh):
    assert ssh.run("echo 'somefile: FAILED'; exit 1", check=False) == "somefile: FAILED\n"
    assert ssh.run("printf x", check=False) == "x"
    assert ssh.run("false", check=False) == ""
    assert ssh.run("echo a; echo b", check=False) == "a\nb\n"


def test_input_reaches_stdin_in_pieces_dropbear_accepts(ssh, tmp_path):
    lines = "".join(f"{i:032x}\n" for i in range(1024))
    out = ssh.run("i=0; while read want; do i=$((i+1)); done; echo $i; md5sum | cut -c1-8", input=lines)
    assert out.split()[0] == "1024"
    assert all(len(c) < 4200 for c in ssh.remote.commands)
    assert len(ssh.remote.commands) > 3                       # staged, run, removed
    assert ssh.remote.commands[-1].startswith("rm -f /tmp/xen-vhd-tempest-input-")
    assert not list(tmp_path.glob("xen-vhd-tempest-input-*"))
    assert ssh.run("cat", input="it's \"quoted\" $HOME `x`\nno newline") == "it's \"quoted\" $HOME `x`\nno newline"


def test_input_file_is_removed_when_the_command_fails(ssh, tmp_path):
    with pytest.raises(SshError):
        ssh.run("cat >/dev/null; exit 4", input="x\n")
    assert not list(tmp_path.glob("xen-vhd-tempest-input-*"))


def test_pieces_cut_at_newlines():
    text = "".join(f"line {i}\n" for i in range(2000))
    pieces = list(remote._pieces(text, 1000))
    assert "".join(pieces) == text and all(p.endswith("\n") for p in pieces) and max(map(len, pieces)) <= 1000
    assert list(remote._pieces("x" * 10, 4)) == ["xxxx", "xxxx", "xx"]


def _body(status, headers=None, **body):
    return rest_client.ResponseBody({"status": str(status), **(headers or {})}, body)


def _cloud(**clients):
    test = types.SimpleNamespace(servers_client=None, keypairs_client=None, flavors_client=None, image_client=None,
                                 volumes_client=None, os_primary=types.SimpleNamespace(), cleanups=[])
    test.addCleanup = lambda fn, *args, **kw: test.cleanups.append((fn, args, kw))
    for name, client in clients.items():
        setattr(test, name, client)
    return tempest_cloud.TempestCloud(test)


def test_create_backup_reads_the_image_id_from_body_or_location():
    servers = types.SimpleNamespace(create_backup=lambda server_id, **kw: _body(202, image_id="img-1"))
    assert _cloud(servers_client=servers).create_backup("s", "b", "daily", 1) == "img-1"
    servers.create_backup = lambda server_id, **kw: _body(202, {"location": "http://x/image/v2/images/img-2"})
    assert _cloud(servers_client=servers).create_backup("s", "b", "daily", 1) == "img-2"
    servers.create_backup = lambda server_id, **kw: _body(202)
    with pytest.raises(CloudError, match="neither body nor Location"):
        _cloud(servers_client=servers).create_backup("s", "b", "daily", 1)


def test_tempest_errors_become_scenario_errors():
    def missing(volume_id):
        raise lib_exc.NotFound("Volume v1 could not be found.")

    def slow(*args, **kw):
        raise lib_exc.TimeoutException("volume v1 failed to reach available")

    volumes = types.SimpleNamespace(show_volume=missing, build_timeout=10)
    cloud = _cloud(volumes_client=volumes)
    with pytest.raises(CloudError, match="get volume: .*could not be found"):
        cloud.get_volume("v1")
    assert cloud.volume_exists("v1") is False
    volumes.show_volume = slow
    with pytest.raises(WaitTimeout, match="get volume"):
        cloud.get_volume("v1")


def test_volume_reason_comes_from_the_user_messages():
    volumes = types.SimpleNamespace(show_volume=lambda v: {"volume": {"id": v, "status": "error", "size": 1}})
    cloud = _cloud(volumes_client=volumes)
    cloud.messages = types.SimpleNamespace(list_messages=lambda: {"messages": [
        {"resource_uuid": "other", "user_message": "no"},
        {"resource_uuid": "v1", "user_message": "create volume from image: image too big"}]})
    volume = cloud.get_volume("v1")
    assert (volume.status, volume.reason, volume.bootable) == ("error", "create volume from image: image too big",
                                                              False)


def _outcome(diagnosis):
    return Outcome("t", (StepResult("compare", "FAIL", 1.0, "differs"),), diagnosis, "summary")


def test_the_outcome_names_the_fault_its_diagnosis_found():
    assert _outcome(None).fault is None
    assert _outcome(types.SimpleNamespace(variant="no-resize")).fault == "no-resize"
    assert _outcome(Diagnosis(0, "leaf-only", 12, "... matches the 'leaf-only' conversion")).fault == "leaf-only"
    assert _outcome(Diagnosis(0, "wrong-order", 3, "text")).fault == "wrong-order"
    # a diagnosis in words names no fault, whatever its text says: nothing is read from text
    assert _outcome("... (the volume matches the 'leaf-only' conversion at all 12 MiB checked)").fault is None
    assert _outcome(Diagnosis(9, None, 4, "not a known conversion bug")).fault is None


def test_every_created_resource_is_also_registered_with_the_test_and_gone_is_fine(monkeypatch):
    deleted = []

    def gone(resource_id):
        deleted.append(resource_id)
        raise lib_exc.NotFound("already deleted by the story")

    servers = types.SimpleNamespace(create_server=lambda **kw: {"server": {"id": "s1"}}, delete_server=gone,
                                    show_server=lambda i: (_ for _ in ()).throw(lib_exc.NotFound("gone")))
    volumes = types.SimpleNamespace(create_volume=lambda **kw: {"volume": {"id": "v1"}}, delete_volume=gone)
    keypairs = types.SimpleNamespace(create_keypair=lambda name: {"keypair": {"private_key": "KEY"}},
                                     delete_keypair=gone)
    cloud = _cloud(servers_client=servers, volumes_client=volumes, keypairs_client=keypairs)
    monkeypatch.setattr(tempest_cloud, "CONF", types.SimpleNamespace(
        service_available=types.SimpleNamespace(neutron=False), compute=types.SimpleNamespace(build_timeout=5)))
    assert cloud.create_keypair("p-key") == "KEY"
    assert cloud.create_server("p-source", flavor_id="1", key_name="p-key", image_id="i") == "s1"
    assert cloud.create_volume("p-volume", 1, image_id="i") == "v1"
    assert len(cloud.test.cleanups) == 3
    for fn, args, kw in reversed(cloud.test.cleanups):     # as testtools runs them: newest first
        fn(*args, **kw)
    assert deleted == ["v1", "s1", "p-key"]


def test_leftovers_lists_what_carries_the_run_prefix():
    servers = types.SimpleNamespace(list_servers=lambda: {"servers": [{"id": "s1", "name": "p-source"},
                                                                      {"id": "s2", "name": "other"}]})
    volumes = types.SimpleNamespace(list_volumes=lambda: {"volumes": [{"id": "v1", "name": "p-volume"},
                                                                      {"id": "v2", "name": None}]})
    owners = []
    images = types.SimpleNamespace(list_images=lambda params: owners.append(params["owner"]) or {
        "images": [{"id": "i1", "name": "p-backup"}, {"id": "i2", "name": "p"}]})
    keypairs = types.SimpleNamespace(list_keypairs=lambda: {"keypairs": [{"keypair": {"name": "p-key"}},
                                                                         {"keypair": {"name": "mine"}}]})
    cloud = _cloud(servers_client=servers, volumes_client=volumes, image_client=images, keypairs_client=keypairs)
    cloud.test.os_primary.credentials = types.SimpleNamespace(project_id="proj")
    assert cloud.leftovers("p") == [("server", "s1", "p-source"), ("volume", "v1", "p-volume"),
                                    ("image", "i1", "p-backup"), ("keypair", "p-key", "p-key")]
    assert owners == ["proj"]

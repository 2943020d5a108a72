"""The tempest plugin's adapter without a cloud: ``RemoteSsh`` over a RemoteClient double that runs
commands in a local shell, ``TempestCloud`` over service-client doubles, fault names."""

import subprocess
import types

import pytest

pytest.importorskip("tempest", reason="tempest is not installed (pip install .[tempest])")

from tempest.lib import exceptions as lib_exc  # noqa: E402
from tempest.lib.common import rest_client  # noqa: E402

from xen_vhd_tempest.scenario.cloud import CloudError, WaitTimeout  # noqa: E402
from xen_vhd_tempest.scenario.ssh import SshError  # noqa: E402
from xen_vhd_tempest.tests.scenario import tempest_cloud  # noqa: E402
from xen_vhd_tempest.tests.scenario.test_xenserver_image_to_volume import _fault_named  # noqa: E402


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
    s = tempest_cloud.RemoteSsh.__new__(tempest_cloud.RemoteSsh)
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
    pieces = list(tempest_cloud._pieces(text, 1000))
    assert "".join(pieces) == text and all(p.endswith("\n") for p in pieces) and max(map(len, pieces)) <= 1000
    assert list(tempest_cloud._pieces("x" * 10, 4)) == ["xxxx", "xxxx", "xx"]


def _body(status, headers=None, **body):
    return rest_client.ResponseBody({"status": str(status), **(headers or {})}, body)


def _cloud(**clients):
    test = types.SimpleNamespace(servers_client=None, keypairs_client=None, flavors_client=None, image_client=None,
                                 volumes_client=None, os_primary=types.SimpleNamespace())
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


def test_fault_named_reads_the_variant_or_the_diagnosis_text():
    assert _fault_named(None) is None
    assert _fault_named(types.SimpleNamespace(variant="no-resize")) == "no-resize"
    assert _fault_named("... (the volume matches the 'leaf-only' conversion at all 12 MiB checked)") == "leaf-only"
    assert _fault_named("... (matches 'wrong-order')") == "wrong-order"
    assert _fault_named("not a known conversion bug") is None

"""The scenario library's ``Cloud`` and ``Ssh`` over tempest: service clients, waiters, RemoteClient.

``TempestCloud(test)`` takes a running ``tempest.scenario.manager.ScenarioTest`` and uses its
clients (``servers_client``, ``keypairs_client``, ``flavors_client``, ``image_client``,
``volumes_client``), its helpers for what depends on the cloud's networking (security group,
``get_server_ip``: fixed or floating per ``[validation] connect_method``) and tempest's waiters.
Every tempest exception leaves as ``CloudError`` naming the call, as ``scenario.clients`` does
for python-*clients, so the story reports it as a failed step.

``RemoteSsh`` has the contract of ``scenario.ssh.Ssh`` (``connect``, ``run``, ``close``) on
tempest's ``RemoteClient``, so commands run with tempest's shell prologue and debug logging.
"""

import contextlib
import functools
import shlex
import time
import uuid

from oslo_log import log as logging
from tempest import config
from tempest.common import waiters
from tempest.common.utils.linux import remote_client
from tempest.lib import exceptions as lib_exc

from xen_vhd_tempest.scenario.cloud import (
    Cloud,
    CloudError,
    Flavor,
    Image,
    Server,
    Volume,
    WaitTimeout,
    backup_image_id,
)
from xen_vhd_tempest.scenario.ssh import SshError

CONF = config.CONF
LOG = logging.getLogger(__name__)
CHUNK = 1 << 20
RC_MARK = "xen-vhd-tempest-exit="
INPUT_PIECE = 4000                   # characters of stdin sent per command


def _calls(fn):
    """Tempest exceptions -> CloudError naming the call and the API's message, on one line."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kw):
        call = fn.__name__.replace("_", " ")
        try:
            return fn(self, *args, **kw)
        except CloudError:
            raise
        except lib_exc.TimeoutException as exc:
            raise WaitTimeout(f"{call}: {_one_line(exc)}") from None
        except lib_exc.RestClientException as exc:
            status = getattr(exc, "resp", None) and exc.resp.get("status")
            raise CloudError(f"{call}: {f'HTTP {status}: ' if status else ''}{_one_line(exc)}") from None
        except lib_exc.TempestException as exc:
            raise CloudError(f"{call}: {_one_line(exc)}") from None
    return wrapper


def _one_line(exc):
    return " ".join(str(exc).replace("\nDetails: ", ": ").split())


def _is_uuid(ref):
    try:
        uuid.UUID(str(ref))
        return True
    except ValueError:
        return False


class TempestCloud(Cloud):
    name = "tempest"

    def __init__(self, test):
        self.test = test
        self.servers = test.servers_client
        self.keypairs = test.keypairs_client
        self.flavors = test.flavors_client
        self.images = test.image_client
        self.volumes = test.volumes_client
        self.messages = getattr(test.os_primary, "volume_messages_client_latest", None)
        self.security_group = None
        self._server_bodies = {}

    # -- lookups ---------------------------------------------------------------------------------
    @_calls
    def find_image(self, ref):
        if not ref:
            raise CloudError("no image given: set [xen_vhd] image_ref or [compute] image_ref")
        if _is_uuid(ref):
            try:
                return _image(self.images.show_image(ref))
            except lib_exc.NotFound:
                pass
        matches = self.images.list_images(params={"name": ref})["images"]
        if not matches:
            raise CloudError(f"image {ref!r}: no image with that id or name")
        return _image(matches[0])

    @_calls
    def find_flavor(self, ref):
        try:
            f = self.flavors.show_flavor(ref)["flavor"]
        except lib_exc.NotFound:
            named = [f for f in self.flavors.list_flavors(detail=True)["flavors"] if f["name"] == ref]
            if not named:
                raise CloudError(f"flavor {ref!r}: no flavor with that id or name") from None
            f = named[0]
        return Flavor(f["id"], f["name"], int(f["disk"]), int(f["ram"]))

    @_calls
    def find_network(self, ref):
        """The network servers are booted on: none without neutron (nova picks), else the
        project's network as tempest's credentials provider knows it, else ``ref`` by name."""
        if not CONF.service_available.neutron:
            return None
        network = self.test.get_tenant_network()
        if network:
            return network["id"]
        found = self.test.os_primary.networks_client.list_networks(name=ref)["networks"] if ref else []
        return found[0]["id"] if found else None

    # -- keypairs --------------------------------------------------------------------------------
    @_calls
    def create_keypair(self, name):
        return self.keypairs.create_keypair(name=name)["keypair"]["private_key"]

    @_calls
    def delete_keypair(self, name):
        try:
            self.keypairs.delete_keypair(name)
        except lib_exc.NotFound:
            pass

    # -- servers ---------------------------------------------------------------------------------
    @_calls
    def create_server(self, name, *, flavor_id, key_name, image_id=None, boot_volume_id=None, network_id=None):
        kwargs = {"name": name, "flavorRef": flavor_id, "key_name": key_name, "imageRef": image_id or ""}
        if boot_volume_id:
            kwargs["block_device_mapping_v2"] = [{
                "boot_index": 0, "uuid": boot_volume_id, "source_type": "volume",
                "destination_type": "volume", "delete_on_termination": False}]
        if network_id:
            kwargs["networks"] = [{"uuid": network_id}]
        if CONF.service_available.neutron:
            if self.security_group is None:
                self.security_group = self.test.create_security_group()
            kwargs["security_groups"] = [{"name": self.security_group["name"]}]
        return self.servers.create_server(**kwargs)["server"]["id"]

    @_calls
    def get_server(self, server_id):
        body = self.servers.show_server(server_id)["server"]
        self._server_bodies[server_id] = body
        fault = body.get("fault") or {}
        return Server(body["id"], body["status"], fault.get("message", ""), dict(body.get("addresses") or {}))

    def server_exists(self, server_id):
        try:
            self.servers.show_server(server_id)
            return True
        except lib_exc.NotFound:
            return False

    @_calls
    def delete_server(self, server_id):
        try:
            self.servers.delete_server(server_id)
        except lib_exc.NotFound:
            pass

    @_calls
    def console_output(self, server_id, lines=60):
        if not CONF.compute_feature_enabled.console_output:
            return ""
        return self.servers.get_console_output(server_id, length=lines)["output"] or ""

    @_calls
    def ssh_endpoint(self, server):
        """Fixed or floating address as ``[validation] connect_method`` says (tempest's own
        ``get_server_ip``, which creates the floating IP and its cleanup); ``[xen_vhd] ssh_port``."""
        body = self._server_bodies.get(server.id) or self.servers.show_server(server.id)["server"]
        return self.test.get_server_ip(body), CONF.xen_vhd.ssh_port

    @_calls
    def create_backup(self, server_id, name, backup_type, rotation):
        body = self.servers.create_backup(server_id, name=name, backup_type=backup_type, rotation=rotation)
        return backup_image_id(body, body.response.get("location", ""))

    # -- images ----------------------------------------------------------------------------------
    @_calls
    def get_image(self, image_id):
        return _image(self.images.show_image(image_id))

    @_calls
    def download_image(self, image_id, path):
        resp = self.images.show_image_file(image_id, chunked=True)
        try:
            with open(path, "wb") as f:
                for piece in resp.stream(CHUNK):
                    f.write(piece)
        finally:
            resp.release_conn()

    @_calls
    def upload_image(self, name, path, *, disk_format, container_format):
        # The images client directly: the manager's image_create takes any tarball for a UEC bundle.
        image = self.images.create_image(name=name, disk_format=disk_format, container_format=container_format,
                                         visibility="private")
        with open(path, "rb") as f:
            self.images.store_image_file(image["id"], f)
        return image["id"]

    @_calls
    def delete_image(self, image_id):
        try:
            self.images.delete_image(image_id)
        except lib_exc.NotFound:
            pass

    # -- volumes ---------------------------------------------------------------------------------
    @_calls
    def create_volume(self, name, size_gb, *, image_id=None):
        kwargs = {"name": name, "size": size_gb}
        if image_id:
            kwargs["imageRef"] = image_id
        return self.volumes.create_volume(**kwargs)["volume"]["id"]

    @_calls
    def get_volume(self, volume_id):
        v = self.volumes.show_volume(volume_id)["volume"]
        reason = self._latest_message(volume_id) if v["status"].startswith("error") else ""
        return Volume(v["id"], v["status"], int(v["size"]), str(v.get("bootable", "false")).lower() == "true",
                      reason)

    def _latest_message(self, volume_id):
        if self.messages is None:
            return ""
        try:
            listed = self.messages.list_messages()["messages"]
        except lib_exc.TempestException:
            return ""
        texts = [m.get("user_message", "") for m in listed if m.get("resource_uuid") == volume_id]
        return texts[-1] if texts else ""

    def volume_exists(self, volume_id):
        try:
            self.volumes.show_volume(volume_id)
            return True
        except lib_exc.NotFound:
            return False

    @_calls
    def delete_volume(self, volume_id):
        try:
            self.volumes.delete_volume(volume_id)
        except lib_exc.NotFound:
            pass

    @_calls
    def attach_volume(self, server_id, volume_id):
        self.servers.attach_volume(server_id, volumeId=volume_id)

    @_calls
    def detach_volume(self, server_id, volume_id):
        self.servers.detach_volume(server_id, volume_id)

    # -- tempest's waiters ----------------------------------------------------------------------
    # The story waits through ``scenario.waiters``; these are tempest's own waiters behind the
    # same (id, status, timeout) shape, for a story that lets the cloud wait natively.
    @_calls
    def wait_server_status(self, server_id, status, *, timeout=None, progress=None):
        extra = max(0, int(timeout or 0) - self.servers.build_timeout)
        waiters.wait_for_server_status(self.servers, server_id, status, extra_timeout=extra)
        return self.get_server(server_id)

    @_calls
    def wait_image_active(self, image_id, *, timeout=None, progress=None):
        with _at_least(self.images, timeout):
            waiters.wait_for_image_status(self.images, image_id, "active")
        return self.get_image(image_id)

    @_calls
    def wait_volume_status(self, volume_id, status, *, timeout=None, progress=None):
        with _at_least(self.volumes, timeout):
            waiters.wait_for_volume_resource_status(self.volumes, volume_id, status)
        return self.get_volume(volume_id)


@contextlib.contextmanager
def _at_least(client, timeout):
    """The client's build_timeout raised to ``timeout`` for one wait."""
    saved = client.build_timeout
    client.build_timeout = max(saved, int(timeout or 0))
    try:
        yield
    finally:
        client.build_timeout = saved


def _image(body):
    return Image(body["id"], body.get("name") or "", body["status"], body.get("disk_format"),
                 body.get("container_format"), body.get("size"))


class RemoteSsh:
    """``scenario.ssh.Ssh``'s contract on tempest's ``RemoteClient``.

    ``connect`` retries in short attempts so ``check()`` (the story's console check) can stop
    the wait early; ``run`` gives each command its own timeout and returns stdout, raising
    ``SshError`` on a non-zero exit when ``check``; ``input`` goes to the command's stdin.
    ``host_key`` is not enforced: tempest's client accepts the guest's key, as tempest does for
    every scenario.
    """

    ATTEMPT = 10

    def __init__(self, host, port, user, *, private_key=None, password=None, host_key=None, servers_client=None,
                 server=None):
        self.host, self.port, self.user = host, port, user
        self.remote = remote_client.RemoteClient(host, user, password=password, pkey=private_key, server=server,
                                                 servers_client=servers_client)
        self.remote.ssh_client.port = port
        self.connected = False

    def __repr__(self):
        return f"{self.user}@{self.host}:{self.port}"

    def connect(self, timeout=300.0, check=None):
        deadline = time.monotonic() + timeout
        client = self.remote.ssh_client
        saved = client.timeout
        client.timeout = self.ATTEMPT
        try:
            while True:
                try:
                    self.remote.validate_authentication()
                    self.connected = True
                    return self
                except lib_exc.SSHTimeout as exc:
                    last = exc
                if check:
                    check()
                if time.monotonic() > deadline:
                    raise SshError(f"no SSH to {self} after {timeout:.0f}s: {last}")
        finally:
            client.timeout = saved

    def run(self, command, timeout=600.0, check=True, input=None):
        client = self.remote.ssh_client
        client.timeout = int(max(timeout, 1))
        staged = None
        try:
            if input is not None:
                # tempest's client closes stdin at once, and dropbear caps a command's length
                # (MAX_CMD_LEN): the input goes to a file in the guest, a few KiB per command.
                staged = f"/tmp/xen-vhd-tempest-input-{uuid.uuid4().hex[:12]}"
                for piece in _pieces(input, INPUT_PIECE):
                    self.remote.exec_command(f"printf '%s' {shlex.quote(piece)} >> {staged}")
                command = f"( {command} ) < {staged}"
            if check:
                return self.remote.exec_command(command)
            # RemoteClient raises on a non-zero exit and keeps no stdout: report the status instead.
            out = self.remote.exec_command(f"rc=0; ( {command} ) || rc=$?; echo; echo {RC_MARK}$rc")
            return out[:out.rindex(RC_MARK)][:-1]          # without the newline the first echo added
        except lib_exc.SSHExecCommandFailed as exc:
            raise SshError(f"{self}: {exc}") from None
        except (lib_exc.SSHTimeout, lib_exc.TimeoutException, OSError, EOFError) as exc:
            raise SshError(f"{self}: `{command}` failed: {exc or type(exc).__name__}") from None
        finally:
            if staged:
                try:
                    self.remote.exec_command(f"rm -f {staged}")
                except Exception as exc:       # the command's own outcome matters more
                    LOG.warning("could not remove %s on %s: %s", staged, self, exc)

    def close(self):
        self.connected = False        # tempest's client opens one connection per command


def _pieces(text, size):
    """``text`` in pieces of at most ``size`` characters, cut after a newline where possible."""
    while text:
        cut = text.rfind("\n", 0, size) + 1 if len(text) > size else len(text)
        cut = cut or size
        yield text[:cut]
        text = text[cut:]


def ssh_factory(test):
    """A story ``ssh_factory`` whose sessions know the test's servers client (console on failure)."""
    def make(host, port, user, *, private_key=None, password=None, host_key=None):
        return RemoteSsh(host, port, user, private_key=private_key, password=password, host_key=host_key,
                         servers_client=test.servers_client)
    return make

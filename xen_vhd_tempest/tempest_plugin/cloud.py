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

"""``scenario.cloud.Cloud`` over tempest: the test's service clients, its manager's helpers, RemoteClient.

``TempestCloud(test)`` takes a running ``tempest.scenario.manager.ScenarioTest`` and uses its
clients (``servers_client``, ``keypairs_client``, ``flavors_client``, ``image_client``,
``volumes_client``) and its helpers for what depends on the cloud's networking (security group,
``get_server_ip``: fixed or floating per ``[validation] connect_method``). Only tempest's stable
plugin interface is used (``tempest.lib``, ``tempest.config``, ``tempest.scenario.manager``).

Waits are the contract's own (``scenario.waiters``: polling these clients with the story's
explicit timeouts); no shared client's ``build_timeout`` is touched. Every resource is also
registered with the test's ``addCleanup`` the moment it exists, as tempest's manager does: the
story deletes everything itself, and these cleanups (NotFound ignored) catch what a story that
died mid-step could not. Every tempest exception leaves as ``CloudError`` naming the call, as
``harness.clients`` does for python-*clients, so the story reports it as a failed step.
"""

import functools
import uuid

from tempest import config
from tempest.lib import exceptions as lib_exc
from tempest.lib.common.utils import test_utils

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
from xen_vhd_tempest.tempest_plugin.remote import RemoteSsh

CONF = config.CONF
CHUNK = 1 << 20


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

    def _on_cleanup(self, fn, *args):
        """Run ``fn(*args)`` at the test's cleanup (``addCleanup``); a resource already gone is fine."""
        self.test.addCleanup(test_utils.call_and_ignore_notfound_exc, fn, *args)

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
        private_key = self.keypairs.create_keypair(name=name)["keypair"]["private_key"]
        self._on_cleanup(self.keypairs.delete_keypair, name)
        return private_key

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
        server_id = self.servers.create_server(**kwargs)["server"]["id"]
        self._on_cleanup(self._delete_server_and_wait, server_id)
        return server_id

    def _delete_server_and_wait(self, server_id):
        self.servers.delete_server(server_id)
        self.wait_server_gone(server_id, timeout=CONF.compute.build_timeout)

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
    def ssh_host(self, server):
        """Fixed or floating address as ``[validation] connect_method`` says (the manager's
        ``get_server_ip``, which creates the floating IP and registers its cleanup)."""
        body = self._server_bodies.get(server.id) or self.servers.show_server(server.id)["server"]
        return self.test.get_server_ip(body)

    def guest_shell(self, host, port, user, *, private_key=None, password=None, host_key=None):
        return RemoteSsh(host, port, user, private_key=private_key, password=password, host_key=host_key,
                         servers_client=self.servers)

    @_calls
    def create_backup(self, server_id, name, backup_type, rotation):
        body = self.servers.create_backup(server_id, name=name, backup_type=backup_type, rotation=rotation)
        image_id = backup_image_id(body, body.response.get("location", ""))
        self._on_cleanup(self._delete_image_and_wait, image_id)
        return image_id

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
        self._on_cleanup(self._delete_image_and_wait, image["id"])
        with open(path, "rb") as f:
            self.images.store_image_file(image["id"], f)
        return image["id"]

    def _delete_image_and_wait(self, image_id):
        self.images.delete_image(image_id)
        self.images.wait_for_resource_deletion(image_id)

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
        volume_id = self.volumes.create_volume(**kwargs)["volume"]["id"]
        self._on_cleanup(self._delete_volume_and_wait, volume_id)
        return volume_id

    def _delete_volume_and_wait(self, volume_id):
        self.volumes.delete_volume(volume_id)
        self.volumes.wait_for_resource_deletion(volume_id)

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
        self._on_cleanup(self._detach_if_attached, server_id, volume_id)

    def _detach_if_attached(self, server_id, volume_id):
        """The attachment's cleanup: detach and wait available, unless the story has already."""
        volume = self.volumes.show_volume(volume_id)["volume"]
        if any(a.get("server_id") == server_id for a in volume.get("attachments") or []):
            self.servers.detach_volume(server_id, volume_id)
            self.wait_volume_status(volume_id, "available", timeout=CONF.volume.build_timeout)

    @_calls
    def detach_volume(self, server_id, volume_id):
        self.servers.detach_volume(server_id, volume_id)

    # -- what a run left behind ---------------------------------------------------------------
    @_calls
    def leftovers(self, prefix):
        """(kind, id, name) of the project's servers, volumes, images and keypairs named ``prefix-...``."""
        def mine(name):
            return (name or "").startswith(prefix + "-")
        found = [("server", s["id"], s["name"]) for s in self.servers.list_servers()["servers"] if mine(s["name"])]
        found += [("volume", v["id"], v.get("name")) for v in self.volumes.list_volumes()["volumes"]
                  if mine(v.get("name"))]
        owner = self.test.os_primary.credentials.project_id
        found += [("image", i["id"], i.get("name")) for i in self.images.list_images(params={"owner": owner})["images"]
                  if mine(i.get("name"))]
        found += [("keypair", k["keypair"]["name"], k["keypair"]["name"])
                  for k in self.keypairs.list_keypairs()["keypairs"] if mine(k["keypair"]["name"])]
        return found


def _image(body):
    return Image(body["id"], body.get("name") or "", body["status"], body.get("disk_format"),
                 body.get("container_format"), body.get("size"))

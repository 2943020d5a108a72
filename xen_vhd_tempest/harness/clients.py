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

"""``Cloud`` over a keystoneauth session and python-novaclient, -glanceclient, -cinderclient;
guests over paramiko (``harness.ssh``).

The session comes from clouds.yaml (``OS_CLOUD`` / ``--xvt-os-cloud``) through openstacksdk's
config loader, as every OpenStack CLI does. createBackup is sent through the session itself
so both microversion behaviours are visible: the image id in the body (>= 2.45) or in the
``Location`` header (before).

Retries are keystoneauth's, as real clients configure them: connection failures and timeouts
(``connect_retries``) and 503 answers (``status_code_retries``) are retried with back-off, for
every method. Any other error status is not retried - a 500 on a POST may have done its work -
and becomes a CloudError naming the call, the status, the request id and a diagnosis. Every
request has a timeout (clouds.yaml ``api_timeout``, else ``DEFAULT_TIMEOUT``): a hung API fails
the run instead of hanging it.
"""

import functools

from xen_vhd_tempest.harness.ssh import Ssh
from xen_vhd_tempest.scenario.cloud import Cloud, CloudError, Flavor, Image, Server, Volume, backup_image_id

DEFAULT_TIMEOUT = 120.0           # seconds per request without a response, when clouds.yaml has no api_timeout
CONNECT_RETRIES = 3
STATUS_RETRIES = 3
NOVA_MICROVERSION = "2.60"        # bdm v2 with volume_type, image id in createBackup's body
CINDER_MICROVERSION = "3.60"      # user messages (3.3+)


def session_for(cloud_name=None, config_file=None, *, timeout=None):
    """A keystoneauth session for a clouds.yaml entry (None: $OS_CLOUD); ``timeout`` (seconds)
    overrides the entry's ``api_timeout``."""
    from openstack import config as os_config
    try:
        loader = os_config.OpenStackConfig(config_files=[config_file] if config_file else None)
        region = loader.get_one(cloud=cloud_name)
    except Exception as exc:                       # openstacksdk raises its own config errors
        raise CloudError(f"cloud {cloud_name or '$OS_CLOUD'}: {exc}") from None
    base = region.get_session()
    return RetryingSession(auth=base.auth, verify=base.verify, cert=base.cert,
                           timeout=timeout or base.timeout or DEFAULT_TIMEOUT)


def _retrying_session_class():
    from keystoneauth1 import session as ks_session

    class RetryingSession(ks_session.Session):
        """Retries what real clients retry: failed connections and 503s from busy endpoints."""

        def request(self, *args, **kw):
            for key, value in (("connect_retries", CONNECT_RETRIES), ("status_code_retries", STATUS_RETRIES),
                               ("retriable_status_codes", [503])):
                if kw.get(key) is None:
                    kw[key] = value
            return super().request(*args, **kw)

    return RetryingSession


def RetryingSession(**kw):   # noqa: N802 - a class, made on first use so importing stays cheap
    return _retrying_session_class()(**kw)


SAFE_TO_REPEAT = {"find_image", "find_flavor", "get_server", "get_image", "get_volume", "console_output",
                  "download_image", "delete_server", "delete_image", "delete_volume", "delete_keypair",
                  "leftovers"}


def _calls(fn):
    """Turn client exceptions into CloudError naming the call, with a diagnosis for failures
    of the cloud itself (5xx, timeouts, refused connections)."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kw):
        try:
            return fn(self, *args, **kw)
        except CloudError:
            raise
        except Exception as exc:
            call = fn.__name__.replace("_", " ")
            status = getattr(exc, "http_status", None) or getattr(exc, "code", None)
            text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            request_id = getattr(exc, "request_id", None)
            if not request_id and getattr(exc, "request_ids", None):
                request_id = list(exc.request_ids)[0]
            message = f"{call}: {f'HTTP {status}: ' if status else ''}{text}"
            if request_id and request_id not in message:
                message += f" (request {request_id})"
            raise CloudError(message, diagnosis=_diagnose_call(fn.__name__, status, exc, self)) from None
    return wrapper


def _diagnose_call(name, status, exc, cloud):
    """Why a call failed, in terms of the cloud rather than the scenario (None: a plain 4xx)."""
    from keystoneauth1 import exceptions as ksa
    call = name.replace("_", " ")
    timeout = getattr(getattr(cloud, "session", None), "timeout", None)
    seen = exc                  # glanceclient re-raises keystoneauth's errors as its own
    while seen is not None and not isinstance(seen, ksa.ConnectionError):
        seen = seen.__cause__ or seen.__context__
    exc = seen or exc
    if isinstance(exc, ksa.ConnectTimeout):
        return (f"the cloud's API did not answer {call} within the client timeout ({timeout}s), "
                f"also after {CONNECT_RETRIES} retries: the service hangs or is overloaded")
    if isinstance(exc, ksa.ConnectionError):
        return (f"no connection to the cloud's API for {call} after {CONNECT_RETRIES} retries: "
                "the endpoint is down or unreachable")
    if isinstance(status, int) and status == 503:
        return f"the service was unavailable (HTTP 503) for {call}, also after {STATUS_RETRIES} retries"
    if isinstance(status, int) and status >= 500:
        repeat = ("it is safe to repeat but real clients do not retry a 500" if name in SAFE_TO_REPEAT else
                  "it is not safe to repeat (it may have been carried out), so it was not retried")
        return (f"the cloud failed {call} with HTTP {status} (a server-side error, not the scenario's "
                f"request); {repeat}; the request id above finds it in the service's log")
    return None


class ClientsCloud(Cloud):
    def __init__(self, session, *, name="cloud"):
        from cinderclient import client as cinder_client
        from glanceclient import Client as GlanceClient
        from novaclient import client as nova_client

        self.name = name
        self.session = session
        self.nova = nova_client.Client(NOVA_MICROVERSION, session=session)
        self.glance = GlanceClient("2", session=session)
        self.cinder = cinder_client.Client(CINDER_MICROVERSION, session=session)

    # -- lookups ---------------------------------------------------------------------------------
    @_calls
    def find_image(self, ref):
        if not ref:
            raise CloudError("no image given (set the image option)")
        try:
            found = self.glance.images.get(ref)
        except Exception:
            matches = list(self.glance.images.list(filters={"name": ref}))
            if not matches:
                raise CloudError(f"image {ref!r}: no image with that id or name") from None
            found = matches[0]
        return _image(found)

    @_calls
    def find_flavor(self, ref):
        try:
            f = self.nova.flavors.get(ref)
        except Exception:
            f = self.nova.flavors.find(name=ref)
        return Flavor(f.id, f.name, int(f.disk), int(f.ram))

    @_calls
    def find_network(self, ref):
        return ref

    # -- keypairs --------------------------------------------------------------------------------
    @_calls
    def create_keypair(self, name):
        return self.nova.keypairs.create(name).private_key

    @_calls
    def delete_keypair(self, name):
        self.nova.keypairs.delete(name)

    # -- servers ---------------------------------------------------------------------------------
    @_calls
    def create_server(self, name, *, flavor_id, key_name, image_id=None, boot_volume_id=None, network_id=None):
        bdm = None
        if boot_volume_id:
            bdm = [{"boot_index": 0, "uuid": boot_volume_id, "source_type": "volume",
                    "destination_type": "volume", "delete_on_termination": False}]
        nics = [{"net-id": network_id}] if network_id else "auto"
        server = self.nova.servers.create(name, image_id or None, flavor_id, key_name=key_name,
                                          block_device_mapping_v2=bdm, nics=nics)
        return server.id

    @_calls
    def get_server(self, server_id):
        s = self.nova.servers.get(server_id)
        fault = getattr(s, "fault", None) or {}
        return Server(s.id, s.status, fault.get("message", ""), dict(getattr(s, "addresses", {}) or {}))

    def server_exists(self, server_id):
        from novaclient import exceptions
        try:
            self.nova.servers.get(server_id)
            return True
        except exceptions.NotFound:
            return False

    @_calls
    def delete_server(self, server_id):
        from novaclient import exceptions
        try:
            self.nova.servers.delete(server_id)
        except exceptions.NotFound:
            pass

    @_calls
    def console_output(self, server_id, lines=60):
        return self.nova.servers.get_console_output(server_id, length=lines) or ""

    def ssh_host(self, server):
        """A floating address when there is one, else the first fixed one."""
        addresses = [a for net in server.addresses.values() for a in net]
        floating = [a for a in addresses if a.get("OS-EXT-IPS:type") == "floating"]
        chosen = (floating or addresses or [None])[0]
        if chosen is None:
            raise CloudError(f"server {server.id} has no address to SSH to")
        return chosen["addr"]

    def guest_shell(self, host, port, user, *, private_key=None, password=None, host_key=None):
        return Ssh(host, port, user, private_key=private_key, password=password, host_key=host_key)

    @_calls
    def create_backup(self, server_id, name, backup_type, rotation):
        resp = self.session.post(f"/servers/{server_id}/action",
                                 json={"createBackup": {"name": name, "backup_type": backup_type,
                                                        "rotation": rotation}},
                                 endpoint_filter={"service_type": "compute", "interface": "public"},
                                 headers={"OpenStack-API-Version": f"compute {NOVA_MICROVERSION}",
                                          "X-OpenStack-Nova-API-Version": NOVA_MICROVERSION},
                                 raise_exc=False)
        if resp.status_code >= 400:
            raise CloudError(f"createBackup: HTTP {resp.status_code}: {resp.text[:300]}")
        return backup_image_id(resp.json() if resp.content else {}, resp.headers.get("Location", ""))

    # -- images ----------------------------------------------------------------------------------
    @_calls
    def get_image(self, image_id):
        return _image(self.glance.images.get(image_id))

    @_calls
    def download_image(self, image_id, path):
        data = self.glance.images.data(image_id)
        with open(path, "wb") as f:
            for chunk in data:
                f.write(chunk)

    @_calls
    def upload_image(self, name, path, *, disk_format, container_format):
        image = self.glance.images.create(name=name, disk_format=disk_format, container_format=container_format)
        with open(path, "rb") as f:
            self.glance.images.upload(image.id, f)
        return image.id

    @_calls
    def delete_image(self, image_id):
        from glanceclient import exc
        try:
            self.glance.images.delete(image_id)
        except exc.HTTPNotFound:
            pass

    # -- volumes ---------------------------------------------------------------------------------
    @_calls
    def create_volume(self, name, size_gb, *, image_id=None):
        return self.cinder.volumes.create(size_gb, name=name, imageRef=image_id).id

    @_calls
    def get_volume(self, volume_id):
        v = self.cinder.volumes.get(volume_id)
        reason = ""
        if v.status.startswith("error"):
            reason = self._latest_message(volume_id)
        return Volume(v.id, v.status, int(v.size), str(getattr(v, "bootable", "false")).lower() == "true", reason)

    def _latest_message(self, volume_id):
        try:
            messages = self.cinder.messages.list(search_opts={"resource_uuid": volume_id})
        except Exception:
            return ""
        texts = [getattr(m, "user_message", "") for m in messages]
        return texts[-1] if texts else ""

    def volume_exists(self, volume_id):
        from cinderclient import exceptions
        try:
            self.cinder.volumes.get(volume_id)
            return True
        except exceptions.NotFound:
            return False

    @_calls
    def delete_volume(self, volume_id):
        from cinderclient import exceptions
        try:
            self.cinder.volumes.delete(volume_id)
        except exceptions.NotFound:
            pass

    # -- what a run left behind ---------------------------------------------------------------
    @_calls
    def leftovers(self, prefix):
        """(kind, id, name) of this project's servers, volumes, images and keypairs whose name
        starts with ``prefix-``: what a run created even if it never learnt the id (a request
        interrupted or failed after the cloud acted on it)."""
        def mine(name):
            return (name or "").startswith(prefix + "-")
        found = [("server", s.id, s.name) for s in self.nova.servers.list() if mine(s.name)]
        found += [("volume", v.id, v.name) for v in self.cinder.volumes.list() if mine(v.name)]
        images = self.glance.images.list(filters={"owner": self._project_id()})
        found += [("image", i["id"], i.get("name")) for i in images if mine(i.get("name"))]
        found += [("keypair", k.name, k.name) for k in self.nova.keypairs.list() if mine(k.name)]
        return found

    def _project_id(self):
        return self.session.get_project_id()

    @_calls
    def attach_volume(self, server_id, volume_id):
        self.nova.volumes.create_server_volume(server_id, volume_id)

    @_calls
    def detach_volume(self, server_id, volume_id):
        self.nova.volumes.delete_server_volume(server_id, volume_id)


def _image(g):
    get = g.get if hasattr(g, "get") else lambda k, d=None: getattr(g, k, d)
    return Image(get("id"), get("name") or "", get("status"), get("disk_format"), get("container_format"),
                 get("size"))

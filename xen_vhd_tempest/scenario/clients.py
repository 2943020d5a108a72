"""``Cloud`` over a keystoneauth session and python-novaclient, -glanceclient, -cinderclient.

The session comes from clouds.yaml (``OS_CLOUD`` / ``--os-cloud``) through openstacksdk's
config loader, as every OpenStack CLI does. createBackup is sent through the session itself
so both microversion behaviours are visible: the image id in the body (>= 2.45) or in the
``Location`` header (before).
"""

import functools

from xen_vhd_tempest.scenario.cloud import Cloud, CloudError, Flavor, Image, Server, Volume

NOVA_MICROVERSION = "2.60"        # bdm v2 with volume_type, image id in createBackup's body
CINDER_MICROVERSION = "3.60"      # user messages (3.3+)


def session_for(cloud_name=None, config_file=None):
    """A keystoneauth session for a clouds.yaml entry (None: $OS_CLOUD)."""
    from openstack import config as os_config
    try:
        loader = os_config.OpenStackConfig(config_files=[config_file] if config_file else None)
        region = loader.get_one(cloud=cloud_name)
    except Exception as exc:                       # openstacksdk raises its own config errors
        raise CloudError(f"cloud {cloud_name or '$OS_CLOUD'}: {exc}") from None
    base = region.get_session()
    return RetryingSession(auth=base.auth, verify=base.verify, cert=base.cert, timeout=base.timeout)


def _retrying_session_class():
    from keystoneauth1 import session as ks_session

    class RetryingSession(ks_session.Session):
        """Retries what real clients retry: failed connections and 503s from busy endpoints."""

        def request(self, *args, **kw):
            for key, value in (("connect_retries", 3), ("status_code_retries", 3),
                               ("retriable_status_codes", [503])):
                if kw.get(key) is None:
                    kw[key] = value
            return super().request(*args, **kw)

    return RetryingSession


def RetryingSession(**kw):   # noqa: N802 - a class, made on first use so importing stays cheap
    return _retrying_session_class()(**kw)


def _calls(fn):
    """Turn client exceptions into CloudError naming the call."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kw):
        try:
            return fn(self, *args, **kw)
        except CloudError:
            raise
        except Exception as exc:
            status = getattr(exc, "http_status", None) or getattr(exc, "code", None)
            text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise CloudError(f"{fn.__name__.replace('_', ' ')}: {f'HTTP {status}: ' if status else ''}{text}") from None
    return wrapper


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

    def ssh_endpoint(self, server):
        """A floating address when there is one, else the first fixed one; port 22."""
        addresses = [a for net in server.addresses.values() for a in net]
        floating = [a for a in addresses if a.get("OS-EXT-IPS:type") == "floating"]
        chosen = (floating or addresses or [None])[0]
        if chosen is None:
            raise CloudError(f"server {server.id} has no address to SSH to")
        return chosen["addr"], 22

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
        body = resp.json() if resp.content else {}
        if body.get("image_id"):
            return body["image_id"]
        location = resp.headers.get("Location", "")
        if location:
            return location.rstrip("/").rsplit("/", 1)[-1]
        raise CloudError("createBackup answered without an image id (neither body nor Location)")

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

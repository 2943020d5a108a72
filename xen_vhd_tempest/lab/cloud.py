"""The lab as one object: services wired together on a loopback port, bootstrap, config files.

``Lab(config).start()`` serves keystone v3 (``/identity``), nova v2.1 (``/compute/v2.1``),
glance v2 (``/image``), cinder v3 (``/volume/v3/<project>``) and the lab's own admin API
(``/lab``) on ``http://127.0.0.1:PORT``, creates devstack's flavors, uploads the default
XenServer image (the lab guest as ``./0.vhd`` in a tgz, vhd/ovf), and writes ``clouds.yaml``,
``tempest.conf`` and ``lab.json`` into the state directory. ``stop()`` stops every guest.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

from . import httpd, recovery
from .compute import models as compute_models
from .compute import responses as compute_responses
from .config import CONVERSION_MODES, REGION, LabConfig, Settings
from .faults import Faults
from .identity import models as identity_models
from .identity import responses as identity_responses
from .image import models as image_models
from .image import responses as image_responses
from .store import Store
from .volume import models as volume_models
from .volume import responses as volume_responses
from .xenserver import XenServerDriver, image_to_volume

DEFAULT_IMAGE_NAME = "cirros-xenserver"
DEFAULT_IMAGE_MARKER = "xen_vhd_tempest_lab_default"
CLOUD_NAME = "xen-vhd-lab"


class Lab:
    def __init__(self, config: LabConfig, *, log_to_stderr=False):
        self.config = config
        self.state_dir = config.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("images", "volumes", "instances", "cache"):
            (self.state_dir / sub).mkdir(exist_ok=True)
        self._log_lock = threading.Lock()
        self._log_to_stderr = log_to_stderr
        self.server = None
        self.default_image_id = None
        self.started_at = None
        self.start_seconds = None

    # -- logging
    def log(self, message):
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n"
        with self._log_lock:
            with open(self.state_dir / "lab.log", "a") as f:
                f.write(line)
            if self._log_to_stderr:
                import sys
                sys.stderr.write(line)

    # -- wiring
    @property
    def url(self):
        return self.server.base_url

    def catalog(self, ctx):
        base = self.url
        project = ctx["project_id"]
        services = [
            ("identity", "keystone", f"{base}/identity"),
            ("compute", "nova", f"{base}/compute/v2.1"),
            ("image", "glance", f"{base}/image"),
            ("volumev3", "cinderv3", f"{base}/volume/v3/{project}"),
            ("block-storage", "cinder", f"{base}/volume/v3/{project}"),
        ]
        out = []
        for stype, name, url in services:
            sid = uuid.uuid5(uuid.NAMESPACE_URL, f"lab:{stype}").hex
            out.append({"type": stype, "name": name, "id": sid, "endpoints": [
                {"id": uuid.uuid5(uuid.NAMESPACE_URL, f"lab:{stype}:{iface}").hex, "interface": iface,
                 "region_id": REGION, "region": REGION, "url": url}
                for iface in ("public", "internal", "admin")]})
        return out

    def _authenticate(self, request):
        try:
            return self.identity.validate(request.headers.get("X-Auth-Token"))
        except identity_models.Unauthorized:
            error = httpd.HTTPError(401, "The request you have made requires authentication.")
            error.response = identity_responses.unauthorized_response(f"{self.url}/identity")
            raise error from None

    def _convert(self, image, image_path, dest, size):
        mode = self.settings.get("conversion_mode")
        if mode != "reference":
            self.log(f"volume from image {image['id']}: faulty conversion {mode!r}")
        image_to_volume(image, image_path, dest, size, mode=mode)

    def start(self):
        t0 = time.monotonic()
        cfg = self.config
        self.store = Store(cfg.path("db.json"))
        self.settings = Settings(cfg.path("settings.json"))
        self.identity = identity_models.IdentityBackend(
            self.store, self.settings, cfg.path("secret"),
            admin_password=cfg.admin_password, demo_password=cfg.demo_password)
        self.images = image_models.ImageBackend(self.store, cfg.path("images"))
        self.volumes = volume_models.VolumeBackend(self.store, cfg.path("volumes"), self.images,
                                                   self._convert, log=self.log)
        recovery.stop_stale_guests(cfg.path("instances"), self.log)   # a lab that died left them
        recovery.clear_instances(cfg.path("instances"), self.log)
        self.driver = XenServerDriver(cfg, log=self.log)
        self.faults = Faults(self.settings, log=self.log)
        self.driver.faults = self.faults
        self.volumes.fault = self.faults.volume_error
        self.images.stuck = self.faults.image_stuck
        services = {}
        # The HTTP server first (port 0 = pick one), so URLs are known to the catalog.
        self.server, self._thread = httpd.serve(cfg.host, cfg.port, services,
                                                log=None)
        self.server.fault_hook = self.faults.api_fault
        self.faults.start_ssh_watcher(lambda: list(self.driver.addresses.values()))
        self.compute = compute_models.ComputeBackend(self.store, self.images, self.volumes, self.driver,
                                                     image_url=f"{self.url}/image", log=self.log)
        self.compute.ensure_default_flavors()
        services["identity"] = identity_responses.build(self.identity, self.catalog)
        for name, svc in (("compute", compute_responses.build(self.compute, f"{self.url}/image")),
                          ("image", image_responses.build(self.images)),
                          ("volume", volume_responses.build(self.volumes)),
                          ("lab", self._lab_service())):
            svc.authenticate = self._authenticate
            services[name] = svc
        self.started_at = time.time()
        self.log(f"lab serving on {self.url} (state {self.state_dir})")
        if cfg.default_image:
            self.default_image_id = self._ensure_default_image()
        self.write_files()
        self.start_seconds = time.monotonic() - t0
        self.log(f"lab ready in {self.start_seconds:.1f}s")
        return self

    def _admin_ctx(self):
        user = self.identity.users["admin"]
        return {"user": user, "project": self.identity.projects[user["project"]], "user_id": user["id"],
                "project_id": user["project"], "is_admin": True, "roles": user["roles"]}

    def _ensure_default_image(self):
        for image in self.images.list(None, {}):
            if image["properties"].get(DEFAULT_IMAGE_MARKER) == "1" and image["status"] == "active":
                return image["id"]
        from .guest import build_guest_image
        guest = build_guest_image(progress=lambda msg: self.log(f"guest image: {msg}"))
        if guest.xenserver_image_path is None:
            raise RuntimeError("the lab guest build produced no XenServer image")
        image = self.images.add_from_file(self._admin_ctx(), {
            "name": DEFAULT_IMAGE_NAME, "disk_format": "vhd", "container_format": "ovf",
            "visibility": "public", "os_distro": "cirros", DEFAULT_IMAGE_MARKER: "1",
            "ssh_user": guest.ssh_user, "ssh_password": guest.password,
        }, Path(guest.xenserver_image_path))
        self.log(f"default image {image['id']} uploaded ({image['size']} bytes)")
        return image["id"]

    @property
    def guest_raw_path(self):
        """The lab guest's bootable raw disk (cached build): the synthetic scenario's base."""
        from .guest import build_guest_image
        return build_guest_image().raw_path

    def _lab_service(self):
        svc = httpd.Service("lab")

        def require_admin(req):
            if not (req.context and req.context.get("is_admin")):
                raise httpd.HTTPError(403, "The lab's admin API needs an admin token.", kind="forbidden")

        def get_settings(req):
            require_admin(req)
            return httpd.Response.json(200, {"settings": self.settings.current(),
                                             "conversion_modes": list(CONVERSION_MODES)})

        def put_settings(req):
            require_admin(req)
            body = req.json()
            if not isinstance(body, dict) or not isinstance(body.get("settings"), dict):
                raise httpd.bad_request("Expected {\"settings\": {...}}")
            try:
                current = self.settings.update(**body["settings"])
            except ValueError as error:
                raise httpd.bad_request(str(error)) from None
            self.log(f"settings changed: {body['settings']}")
            return httpd.Response.json(200, {"settings": current, "conversion_modes": list(CONVERSION_MODES)})

        def status(req):
            require_admin(req)
            return httpd.Response.json(200, self.status())

        svc.route("GET", "/settings", get_settings)
        svc.route("PUT", "/settings", put_settings)
        svc.route("GET", "/status", status)
        return svc

    def status(self):
        guests = {}
        for sid, guest in self.driver.running_guests().items():
            guests[sid] = {"ssh": list(guest.ssh_address or ()), "running": guest.running,
                           "pid": guest.proc.pid if guest.proc else None,
                           "host_keys": self.driver.host_keys(sid)}
        return {"url": self.url, "pid": os.getpid(), "state_dir": str(self.state_dir),
                "started_at": self.started_at, "default_image_id": self.default_image_id,
                "settings": self.settings.current(), "guests": guests,
                "servers": len(self.compute.servers), "images": len(self.images.images),
                "volumes": len(self.volumes.volumes)}

    # -- files for clients
    def credentials(self):
        cfg = self.config
        return {
            "auth_url": f"{self.url}/identity",
            "admin": {"username": "admin", "password": cfg.admin_password, "project_name": "admin"},
            "demo": {"username": "demo", "password": cfg.demo_password, "project_name": "demo"},
        }

    def write_files(self):
        creds = self.credentials()
        auth_url = creds["auth_url"]

        def cloud(who):
            c = creds[who]
            return {"auth": {"auth_url": auth_url, "username": c["username"], "password": c["password"],
                             "project_name": c["project_name"], "user_domain_name": "Default",
                             "project_domain_name": "Default"},
                    "region_name": REGION, "identity_api_version": 3, "image_api_version": 2,
                    "volume_api_version": 3, "interface": "public"}
        clouds = {"clouds": {CLOUD_NAME: cloud("demo"), f"{CLOUD_NAME}-admin": cloud("admin")}}
        _write(self.state_dir / "clouds.yaml", _yaml(clouds))
        accounts = [{"username": "demo", "project_name": "demo", "password": creds["demo"]["password"],
                     "user_domain_name": "Default", "project_domain_name": "Default", "roles": ["member"]},
                    {"username": "admin", "project_name": "admin", "password": creds["admin"]["password"],
                     "user_domain_name": "Default", "project_domain_name": "Default", "roles": ["admin"],
                     "types": ["admin"]}]
        _write(self.state_dir / "accounts.yaml", _yaml(accounts))
        _write(self.state_dir / "tempest.conf", self.tempest_conf())
        info = {"pid": os.getpid(), "url": self.url, "auth_url": auth_url, "state_dir": str(self.state_dir),
                "started_at": self.started_at, "default_image_id": self.default_image_id,
                "cloud": CLOUD_NAME, "clouds_yaml": str(self.state_dir / "clouds.yaml"),
                "tempest_conf": str(self.state_dir / "tempest.conf"), "credentials": creds,
                "ssh_user": "cirros", "ssh_password": "gocubsgo", "network": "private"}
        _write(self.state_dir / "lab.json", json.dumps(info, indent=2) + "\n")

    def tempest_conf(self):
        creds = self.credentials()
        image = self.default_image_id or ""
        return f"""# Generated by xen-vhd-tempest lab for {self.url}
[DEFAULT]
log_dir = {self.state_dir}
log_file = tempest.log

[oslo_concurrency]
lock_path = {self.state_dir / 'tempest_lock'}

[auth]
use_dynamic_credentials = False
test_accounts_file = {self.state_dir / 'accounts.yaml'}
admin_username = admin
admin_password = {creds['admin']['password']}
admin_project_name = admin
admin_domain_name = Default
default_credentials_domain_name = Default

[identity]
uri_v3 = {creds['auth_url']}/v3
auth_version = v3
region = {REGION}
catalog_type = identity
disable_ssl_certificate_validation = True

[identity-feature-enabled]
api_v2 = False
api_v3 = True

[compute]
image_ref = {image}
image_ref_alt = {image}
flavor_ref = 1
flavor_ref_alt = 84
min_microversion = {compute_responses.MIN_VERSION}
max_microversion = {compute_responses.MAX_VERSION}
fixed_network_name = private
build_timeout = 300
build_interval = 1
region = {REGION}
catalog_type = compute

[compute-feature-enabled]
console_output = True
resize = False
snapshot = False
live_migration = False
vnc_console = False
spice_console = False
serial_console = False
rescue = False
suspend = False
pause = False
shelve = False
interface_attach = False
attach_encrypted_volume = False
config_drive = True
personality = False

[image]
catalog_type = image
region = {REGION}
disk_formats = vhd,raw,qcow2
container_formats = ovf,bare

[image-feature-enabled]
import_image = False

[volume]
catalog_type = volumev3
region = {REGION}
min_microversion = {volume_responses.MIN_VERSION}
max_microversion = {volume_responses.MAX_VERSION}
volume_size = 1
build_timeout = 300
build_interval = 1

[volume-feature-enabled]
backup = False
snapshot = False
clone = False
manage_volume = False
extend_attached_volume = False

[network]
public_network_id =
floating_network_name =

[network-feature-enabled]
floating_ips = False

[validation]
run_validation = True
connect_method = fixed
auth_method = keypair
image_ssh_user = cirros
image_ssh_password = gocubsgo
image_alt_ssh_user = cirros
network_for_ssh = private
ip_version_for_ssh = 4
ssh_timeout = 300
security_group = False

[service_available]
nova = True
glance = True
cinder = True
neutron = False
swift = False

[xen_vhd]
# The lab's compute has XenServer semantics: the backup scenario runs; the synthetic one
# builds its chain from the lab guest's raw disk.
compute_is_xenserver = True
raw_image = {self.guest_raw_path or ''}
"""

    # -- the end
    def stop(self):
        self.log("lab stopping")
        if getattr(self, "faults", None) is not None:
            self.faults.stop()
        try:
            self.compute.shutdown()
        finally:
            self.driver.shutdown()
            if self.server is not None:
                self.server.shutdown()
                self.server.server_close()
            try:
                os.unlink(self.state_dir / "lab.json")
            except FileNotFoundError:
                pass
        self.log("lab stopped")


def _write(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _yaml(data, indent=0) -> str:
    """A small YAML emitter (dicts, lists, scalars) so the lab needs no PyYAML."""
    pad = "  " * indent
    lines = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.append(_yaml(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}")
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                body = _yaml(item, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return "\n".join(lines) + ("\n" if indent == 0 else "")


def _scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, dict)):
        return "[]" if isinstance(value, list) else "{}"
    return json.dumps(str(value))

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

"""The lab as one object: services wired together on a loopback port, bootstrap, config files.

``Lab(config).start()`` serves keystone v3 (``/identity``), nova v2.1 (``/compute/v2.1``),
glance v2 (``/image``), cinder v3 (``/volume/v3/<project>``) and the lab's own admin API
(``/lab``) on ``http://127.0.0.1:PORT``, creates devstack's flavors, uploads the default
XenServer image (the lab guest as ``./0.vhd`` in a tgz, vhd/ovf), and writes ``clouds.yaml``,
``tempest.conf`` and ``lab.json`` into the state directory. ``stop()`` stops every guest.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

from . import client_files, httpd, recovery
from .admin import responses as admin_responses
from .admin import urls as admin_urls
from .compute import models as compute_models
from .compute import responses as compute_responses
from .compute import urls as compute_urls
from .compute.driver import XenServerDriver
from .config import REGION, LabConfig, Settings
from .errors import Unauthorized
from .fault_injection import Faults
from .identity import models as identity_models
from .identity import responses as identity_responses
from .identity import urls as identity_urls
from .image import models as image_models
from .image import responses as image_responses
from .image import urls as image_urls
from .store import Store
from .volume import models as volume_models
from .volume import responses as volume_responses
from .volume import urls as volume_urls
from .volume.cinder import CinderWorker
from .volume.conversion import CINDER, image_to_volume

DEFAULT_IMAGE_NAME = "cirros-xenserver"
DEFAULT_IMAGE_MARKER = "xen_vhd_tempest_lab_default"


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
        self._cinder_worker = None
        self._cinder_lock = threading.Lock()

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
        """keystonemiddleware in front of a service: keystone's 401 and ``WWW-Authenticate``."""
        try:
            return self.identity.validate(request.headers.get("X-Auth-Token"))
        except Unauthorized:
            raise Unauthorized(headers={"WWW-Authenticate": f'Keystone uri="{self.url}/identity"'}) from None

    def _convert(self, image, image_path, dest, size, volume):
        settings = self.settings.current()
        mode = settings["conversion_mode"]
        if mode == CINDER:
            log_path = self.volumes.log_path(volume["id"])
            reply = image_to_volume(image, image_path, dest, size, mode=mode, volume=volume, log_path=log_path,
                                    cinder=self._cinder(settings["cinder_src"], settings["vhd_util"]))
            self.log(f"volume {volume['id']}: Cinder converted image {image['id']} in {reply['seconds']:.1f}s "
                     f"(log {log_path})")
            return
        if mode != "reference":
            self.log(f"volume from image {image['id']}: known-wrong conversion {mode!r}")
        image_to_volume(image, image_path, dest, size, mode=mode)

    def _cinder(self, cinder_src, vhd_util) -> CinderWorker:
        """The Cinder worker for these settings (a new one when they changed)."""
        with self._cinder_lock:
            worker = self._cinder_worker
            if worker is None or worker.settings != (cinder_src, vhd_util):
                if worker is not None:
                    worker.stop()
                worker = self._cinder_worker = CinderWorker(self.state_dir, cinder_src=cinder_src,
                                                            vhd_util=vhd_util, log=self.log)
            return worker

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
        recovery.after_crash(cfg.state_dir, self.log)     # what a lab that died left running
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
        self.volumes.quiesce = self.compute.volume_quiesced
        services["identity"] = httpd.Service(
            "identity", identity_responses.IdentityResponses(self.identity, self.catalog), identity_urls.ROUTES)
        for name, responses, routes in (
                ("compute", compute_responses.ComputeResponses(self.compute, f"{self.url}/image"),
                 compute_urls.ROUTES),
                ("image", image_responses.ImageResponses(self.images), image_urls.ROUTES),
                ("volume", volume_responses.VolumeResponses(self.volumes), volume_urls.ROUTES),
                ("lab", admin_responses.AdminResponses(self.settings, self.status, log=self.log), admin_urls.ROUTES)):
            services[name] = httpd.Service(name, responses, routes, authenticate=self._authenticate,
                                           strict_slashes=name in ("compute", "image", "volume"),
                                           rbac=name in ("compute", "image", "volume"))
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
                "volumes": len(self.volumes.volumes), "cinder": self._cinder_status()}

    def _cinder_status(self):
        """The Cinder worker, when one runs: its pid, Cinder's version and where it came from."""
        worker = self._cinder_worker
        if worker is None or not worker.alive():
            return None
        return {k: worker.ready.get(k) for k in ("pid", "cinder", "path", "start_seconds")}

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
        client_files.write(self.state_dir / "clouds.yaml", client_files.clouds_yaml(creds))
        client_files.write(self.state_dir / "accounts.yaml", client_files.accounts_yaml(creds))
        client_files.write(self.state_dir / "tempest.conf", self.tempest_conf())
        client_files.write(self.state_dir / "lab.json", client_files.lab_json(
            url=self.url, state_dir=self.state_dir, creds=creds, started_at=self.started_at,
            default_image_id=self.default_image_id))

    def tempest_conf(self):
        return client_files.tempest_conf(self.url, state_dir=self.state_dir, creds=self.credentials(),
                                         image_id=self.default_image_id or "", raw_image=self.guest_raw_path)

    # -- the end
    def stop(self):
        self.log("lab stopping")
        if getattr(self, "faults", None) is not None:
            self.faults.stop()
        try:
            self.compute.shutdown()
        finally:
            self.driver.shutdown()
            if self._cinder_worker is not None:
                self._cinder_worker.stop()
            if self.server is not None:
                self.server.shutdown()
                self.server.server_close()
            try:
                os.unlink(self.state_dir / "lab.json")
            except FileNotFoundError:
                pass
        self.log("lab stopped")

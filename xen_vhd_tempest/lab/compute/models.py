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

"""Nova v2.1 state and behaviour: flavors, keypairs, servers, backups, volume attachments.

Servers run on a *driver* (``compute.driver.XenServerDriver``: QEMU guests
with XenServer image semantics). The models own the state machine:

    BUILD (vm building, task scheduling→spawning) → ACTIVE | ERROR (with a fault)
    ACTIVE + createBackup: task image_backup while the chain is exported, image queued→active
    delete: task deleting, guest stopped, volumes detached, record gone

Servers are not persistent: guests die with the lab, so a restarted lab starts without
servers (and the volumes they had attached are available again). Flavors and keypairs persist.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
import threading
import traceback

from ..errors import LabError, bad_request, conflict, not_found
from ..util import new_id, now

GIB = 1024 ** 3

# devstack's flavors (plus its m1.nano / m1.micro for tempest).
DEFAULT_FLAVORS = [
    {"id": "1", "name": "m1.tiny", "ram": 512, "vcpus": 1, "disk": 1},
    {"id": "2", "name": "m1.small", "ram": 2048, "vcpus": 1, "disk": 20},
    {"id": "3", "name": "m1.medium", "ram": 4096, "vcpus": 2, "disk": 40},
    {"id": "4", "name": "m1.large", "ram": 8192, "vcpus": 4, "disk": 80},
    {"id": "5", "name": "m1.xlarge", "ram": 16384, "vcpus": 8, "disk": 160},
    {"id": "42", "name": "m1.nano", "ram": 128, "vcpus": 1, "disk": 1},
    {"id": "84", "name": "m1.micro", "ram": 192, "vcpus": 1, "disk": 1},
]


MAX_LIMIT = 1000     # nova's [api] max_limit


def _policy(rule):
    return LabError(403, f"Policy doesn't allow {rule} to be performed.", kind="forbidden")


class ComputeBackend:
    def __init__(self, store, images, volumes, driver, *, image_url, log=print):
        self.store = store
        self.images = images
        self.volumes = volumes
        self.driver = driver
        self.image_url = image_url  # glance endpoint, for the pre-2.45 backup Location header
        self.log = log
        self.flavors = store.collection("flavors")
        self.keypairs = store.collection("keypairs")  # "user_id/name" -> record
        self.servers: dict[str, dict] = {}
        self.lock = store.lock
        self._instance_counter = 0
        self._drop_unfinished_backups()

    def _drop_unfinished_backups(self):
        """A restarted lab has no servers: a backup that was being exported never will be.
        Nova deletes the image of a backup that failed before it became active; so does the lab."""
        for image in self.images.list(None, {}):
            if image["properties"].get("image_type") == "backup" and image["status"] != "active":
                try:
                    self.images.delete(None, image["id"])
                except LabError:
                    continue
                self.log(f"deleted backup {image['id']} left unfinished by a previous lab")

    # -- flavors -------------------------------------------------------------------------------
    def ensure_default_flavors(self):
        with self.lock:
            for f in DEFAULT_FLAVORS:
                if f["id"] not in self.flavors:
                    self.flavors[f["id"]] = dict(f, swap=0, ephemeral=0, rxtx_factor=1.0,
                                                 is_public=True, disabled=False, description=None,
                                                 extra_specs={})
            self.store.save()

    def flavor(self, flavor_id, *, for_create=False) -> dict:
        with self.lock:
            f = self.flavors.get(str(flavor_id))
        if f is None:
            if for_create:
                raise bad_request(f"Flavor {flavor_id} could not be found.")
            raise not_found(f"Flavor {flavor_id} could not be found.")
        return dict(f)

    def list_flavors(self, *, min_ram=None, min_disk=None, sort_key="flavorid", sort_dir="asc", marker=None,
                     limit=None):
        """Nova's flavor list: ``minRam``/``minDisk`` filters, sorted (flavorid asc by default), paged."""
        def number(name, value):
            try:
                out = int(value)
            except (TypeError, ValueError):
                raise bad_request(f"Invalid {name} filter [{value}]") from None
            if out < 0:
                raise bad_request(f"Invalid {name} filter [{value}]")
            return out
        keys = {"flavorid": "id", "id": "id", "name": "name", "memory_mb": "ram", "vcpus": "vcpus",
                "root_gb": "disk", "ephemeral_gb": "ephemeral", "swap": "swap", "created_at": "id"}
        if sort_key not in keys:
            raise bad_request(f"Invalid input for query parameters sort_key. Value: {sort_key}.")
        if sort_dir not in ("asc", "desc"):
            raise bad_request(f"Invalid input for query parameters sort_dir. Value: {sort_dir}.")
        with self.lock:
            flavors = [dict(f) for f in self.flavors.values()]
        if min_ram is not None:
            flavors = [f for f in flavors if f["ram"] >= number("minRam", min_ram)]
        if min_disk is not None:
            flavors = [f for f in flavors if f["disk"] >= number("minDisk", min_disk)]
        field = keys[sort_key]
        flavors.sort(key=lambda f: (f[field] if isinstance(f[field], int) else str(f[field]), f["id"]),
                     reverse=sort_dir == "desc")
        return _page(flavors, "id", marker, limit, missing="marker [{}] not found")

    def create_flavor(self, ctx, body):
        if not ctx.get("is_admin"):
            raise _policy("os_compute_api:os-flavor-manage:create")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute flavor.")
        try:
            flavor = {"id": str(body.get("id") or new_id()), "name": str(body["name"]),
                      "ram": int(body["ram"]), "vcpus": int(body["vcpus"]), "disk": int(body["disk"]),
                      "swap": int(body.get("swap") or 0),
                      "ephemeral": int(body.get("OS-FLV-EXT-DATA:ephemeral") or 0),
                      "rxtx_factor": float(body.get("rxtx_factor", 1.0)),
                      "is_public": bool(body.get("os-flavor-access:is_public", True)),
                      "disabled": False, "description": body.get("description"), "extra_specs": {}}
        except (KeyError, TypeError, ValueError) as e:
            raise bad_request(f"Invalid input for field/attribute flavor: {e}") from None
        if flavor["ram"] < 1 or flavor["vcpus"] < 1 or flavor["disk"] < 0:
            raise bad_request("Invalid input for field/attribute flavor: ram and vcpus must be positive, "
                              "disk not negative.")
        with self.lock:
            if flavor["id"] in self.flavors or any(f["name"] == flavor["name"] for f in self.flavors.values()):
                raise conflict(f"Flavor with name {flavor['name']} already exists.")
            self.flavors[flavor["id"]] = flavor
            self.store.save()
        return dict(flavor)

    def delete_flavor(self, ctx, flavor_id):
        if not ctx.get("is_admin"):
            raise _policy("os_compute_api:os-flavor-manage:delete")
        with self.lock:
            if self.flavors.pop(str(flavor_id), None) is None:
                raise not_found(f"Flavor {flavor_id} could not be found.")
            self.store.save()

    # -- keypairs ------------------------------------------------------------------------------
    def list_keypairs(self, ctx, *, marker=None, limit=None):
        """The user's keypairs by name; ``marker``/``limit`` page them (microversion 2.35)."""
        with self.lock:
            keys = sorted((dict(k) for k in self.keypairs.values() if k["user_id"] == ctx["user_id"]),
                          key=lambda k: k["name"])
        return _page(keys, "name", marker, limit, missing="Marker {} could not be found.", cap=MAX_LIMIT)

    def keypair(self, ctx, name, *, user_id=None):
        with self.lock:
            k = self.keypairs.get(f"{user_id or ctx['user_id']}/{name}")
        if k is None:
            raise not_found(f"Keypair {name} not found for user {user_id or ctx['user_id']}")
        return dict(k)

    def create_keypair(self, ctx, body, *, allow_generate=True):
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute keypair.")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255 or not all(
                c.isalnum() or c in "-_ .@" for c in name):
            raise bad_request("Keypair data is invalid: Keypair name contains unsafe characters")
        key_type = body.get("type", "ssh")
        if key_type not in ("ssh", "x509"):
            raise bad_request(f"Invalid input for field/attribute type. Value: {key_type}.")
        public = body.get("public_key")
        private = None
        if public is None:
            if not allow_generate:
                raise bad_request("Invalid input for field/attribute keypair. Value: {...}. "
                                  "'public_key' is a required property")
            private, public = generate_keypair()
        if not isinstance(public, str):
            raise bad_request("Keypair data is invalid: failed to generate fingerprint")
        fingerprint = fingerprint_of(public)
        if fingerprint is None:
            raise bad_request("Keypair data is invalid: failed to generate fingerprint")
        key = f"{ctx['user_id']}/{name}"
        with self.lock:
            if key in self.keypairs:
                raise conflict(f"Key pair '{name}' already exists.")
            record = {"name": name, "public_key": public.strip(), "fingerprint": fingerprint,
                      "user_id": ctx["user_id"], "type": key_type, "created_at": now(),
                      "id": 1 + max([k["id"] for k in self.keypairs.values()] or [0])}
            self.keypairs[key] = record
            self.store.save()
        out = dict(record)
        if private is not None:
            out["private_key"] = private
        return out

    def delete_keypair(self, ctx, name):
        with self.lock:
            if self.keypairs.pop(f"{ctx['user_id']}/{name}", None) is None:
                raise not_found(f"Keypair {name} not found for user {ctx['user_id']}")
            self.store.save()

    # -- servers -------------------------------------------------------------------------------
    def _visible(self, ctx, server):
        return ctx.get("is_admin") or server["project_id"] == ctx["project_id"]

    def server(self, ctx, server_id) -> dict:
        with self.lock:
            s = self.servers.get(server_id)
            if s is None or not self._visible(ctx, s) or s["status"] == "DELETED":
                raise not_found(f"Instance {server_id} could not be found.")
            return _copy(s)

    def list_servers(self, ctx, all_tenants=False):
        with self.lock:
            out = [_copy(s) for s in self.servers.values()
                   if s["status"] != "DELETED"
                   and ((all_tenants and ctx.get("is_admin")) or s["project_id"] == ctx["project_id"])]
        return sorted(out, key=lambda s: s["created"], reverse=True)

    def create_server(self, ctx, body: dict, microversion) -> dict:
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute server. Value: None. None is not of type 'object'")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise bad_request(f"Invalid input for field/attribute name. Value: {name!r}. "
                              f"{name!r} is not valid under any of the given schemas")
        if "flavorRef" not in body:
            raise bad_request("Invalid input for field/attribute server. 'flavorRef' is a required property")
        flavor_ref = str(body["flavorRef"]).rstrip("/").rsplit("/", 1)[-1]
        flavor = self.flavor(flavor_ref, for_create=True)
        if microversion >= (2, 37) and "networks" not in body:
            raise bad_request("Invalid input for field/attribute server. Value: {...}. "
                              "'networks' is a required property")
        networks = body.get("networks", "auto")
        if isinstance(networks, str) and networks not in ("auto", "none"):
            raise bad_request(f"Invalid input for field/attribute networks. Value: {networks}.")
        bdms = body.get("block_device_mapping_v2") or []
        if not isinstance(bdms, list):
            raise bad_request("Invalid input for field/attribute block_device_mapping_v2.")
        root_volume = None
        for bdm in bdms:
            if not isinstance(bdm, dict):
                raise bad_request("Invalid input for field/attribute block_device_mapping_v2.")
            if str(bdm.get("boot_index", "-1")) == "0":
                source, destination = bdm.get("source_type"), bdm.get("destination_type", "volume")
                if source == "image" and destination == "local":
                    # the image's local root disk spelled as a mapping (what the openstack CLI sends)
                    if body.get("imageRef") and str(bdm.get("uuid")) != str(body["imageRef"]):
                        raise bad_request("Block Device Mapping is Invalid: the boot image of the mapping "
                                          "is not imageRef.")
                    body = dict(body, imageRef=bdm.get("uuid"))
                    continue
                if source != "volume" or destination != "volume":
                    raise bad_request("Block Device Mapping is Invalid: the lab boots from an image (source_type="
                                      "image, destination_type=local) or a volume (source_type=volume, "
                                      "destination_type=volume).")
                root_volume = bdm
            elif bdm.get("source_type") not in (None, "volume"):
                raise bad_request("Block Device Mapping is Invalid: the lab supports volume mappings only.")
        image_ref = body.get("imageRef") or ""
        image = None
        if root_volume is None:
            if not image_ref:
                raise bad_request("Block Device Mapping is Invalid: You specified more local devices "
                                  "than the limit allows")
            image_id = str(image_ref).rstrip("/").rsplit("/", 1)[-1]
            image = self.images.find(image_id)
            if image is None or not self.images.visible(ctx, image):
                raise bad_request(f"Image {image_id} could not be found.")
            if image["status"] != "active":
                raise bad_request(f"Image {image_id} is not active.")
            if image["min_ram"] and image["min_ram"] > flavor["ram"]:
                raise bad_request("Flavor's memory is too small for requested image.")
            if image["min_disk"] and image["min_disk"] > flavor["disk"]:
                raise bad_request("Flavor's disk is too small for requested image. Flavor disk is "
                                  f"{flavor['disk'] * GIB} bytes, minimum disk is {image['min_disk'] * GIB} bytes.")
            if flavor["disk"] and (image.get("virtual_size") or image["size"] or 0) > flavor["disk"] * GIB:
                raise bad_request("Flavor's disk is too small for requested image. Flavor disk is "
                                  f"{flavor['disk'] * GIB} bytes, image is "
                                  f"{image['virtual_size'] or image['size']} bytes.")
        key_name = body.get("key_name")
        keypair = None
        if key_name is not None:
            try:
                keypair = self.keypair(ctx, key_name)
            except LabError:
                raise bad_request("Invalid key_name provided.") from None
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise bad_request("Invalid input for field/attribute metadata.")
        server_id = new_id()
        with self.lock:
            self._instance_counter += 1
            counter = self._instance_counter
        ts = now()
        server = {
            "id": server_id, "name": name, "status": "BUILD", "vm_state": "building",
            "task_state": "scheduling", "power_state": 0, "user_id": ctx["user_id"],
            "project_id": ctx["project_id"], "flavor": flavor, "image_id": image["id"] if image else "",
            "key_name": key_name, "metadata": dict(metadata), "created": ts, "updated": ts,
            "launched_at": None, "address": None, "mac": None, "fault": None, "attachments": [],
            "root_volume_id": None, "description": body.get("description"), "tags": [],
            "hostname": _requested_hostname(body, microversion) or _hostname(name),
            "admin_pass": body.get("adminPass") or _password(),
            "availability_zone": body.get("availability_zone") or "nova", "config_drive": "True",
            "instance_name": f"instance-{counter:08x}", "progress": 0, "user_data": body.get("user_data"),
            "access_ipv4": _access_ip(body, "accessIPv4", 4), "access_ipv6": _access_ip(body, "accessIPv6", 6),
        }
        if root_volume is not None:
            vid = root_volume.get("uuid")
            try:
                self.volumes.reserve(ctx, vid, server_id)
            except LabError as e:
                raise bad_request(f"Invalid volume: {e.message}") from None
            server["root_volume_id"] = vid
            server["attachments"].append({
                "volume_id": vid, "device": "/dev/vda", "attachment_id": new_id(), "bdm_uuid": new_id(),
                "delete_on_termination": bool(root_volume.get("delete_on_termination", False)),
                "tag": root_volume.get("tag"), "device_id": None, "root": True})
        try:
            address = self.driver.allocate_address(server_id)
        except Exception as e:
            if server["root_volume_id"]:
                self.volumes.unreserve(server["root_volume_id"])
            raise LabError(500, f"No address available: {e}", kind="computeFault") from None
        server["address"], server["mac"] = address.host, address.mac
        with self.lock:
            self.servers[server_id] = server
            created = _copy(server)  # as created: the build thread changes the record
        self._spawn_thread(self._build, server_id, image, keypair)
        return created

    def _spawn_thread(self, fn, *args):
        thread = threading.Thread(target=fn, args=args, daemon=True, name=f"{fn.__name__}-{args[0][:8]}")
        thread.start()

    def _set(self, server_id, **changes):
        with self.lock:
            s = self.servers.get(server_id)
            if s is None:
                return None
            s.update(changes)
            s["updated"] = now()
            return s

    def _build(self, server_id, image, keypair):
        with self.lock:
            server = _copy(self.servers[server_id])
        self._set(server_id, task_state="spawning")
        try:
            keys = {keypair["name"]: keypair["public_key"]} if keypair else {}
            root = None
            if server["root_volume_id"]:
                root = self.volumes.path(server["root_volume_id"])
                self.volumes.attached(server["root_volume_id"], server_id, "/dev/vda",
                                      server["attachments"][0]["attachment_id"])
            self.driver.spawn(server, image=image, image_path=self.images.data_path(image["id"]) if image else None,
                              root_volume=root, public_keys=keys)
        except Exception as error:
            message = _one_line(error)
            if not isinstance(error, LabError):
                traceback.print_exc()
            self.log(f"server {server_id}: spawn failed: {message}")
            with self.lock:
                s = self.servers.get(server_id)
                if s is None or s["task_state"] == "deleting":
                    return
                s.update(status="ERROR", vm_state="error", task_state=None, power_state=0,
                         fault={"code": 500, "message": message, "created": now(),
                                "details": getattr(error, "details", "") or message})
            return
        with self.lock:
            s = self.servers.get(server_id)
            deleted = s is None or s["task_state"] == "deleting"
            if not deleted:
                s.update(status="ACTIVE", vm_state="active", task_state=None, power_state=1,
                         launched_at=now(), progress=100, updated=now())
        if deleted:  # deleted while spawning: the guest started after the delete looked for it
            self.driver.destroy(server_id)
            return
        self.log(f"server {server_id}: ACTIVE at {server['address']}")

    def update_server(self, ctx, server_id, body):
        if not isinstance(body, dict) or set(body) - {"name", "description", "accessIPv4", "accessIPv6"}:
            raise bad_request("Invalid input for field/attribute server: only name, description and access IPs "
                              "can be updated.")
        self.server(ctx, server_id)
        for key, version in (("accessIPv4", 4), ("accessIPv6", 6)):
            if key in body:
                body = dict(body, **{"access_ipv%d" % version: _access_ip(body, key, version)})
                del body[key]
        if "name" in body and (not isinstance(body["name"], str) or not body["name"].strip()):
            raise bad_request("Invalid input for field/attribute name.")
        self._set(server_id, **body)
        return self.server(ctx, server_id)

    def delete_server(self, ctx, server_id):
        self.server(ctx, server_id)  # 404 when not there / not visible
        with self.lock:
            s = self.servers[server_id]
            if s["task_state"] == "deleting":
                return
            s["task_state"] = "deleting"
        self._spawn_thread(self._destroy, server_id)

    def _destroy(self, server_id):
        try:
            self.driver.destroy(server_id)
        except Exception:
            traceback.print_exc()
        with self.lock:
            s = self.servers.get(server_id)
            attachments = list(s["attachments"]) if s else []
        for a in attachments:
            self.volumes.unreserve(a["volume_id"])
            if a.get("delete_on_termination"):
                try:
                    self.volumes.delete(None, a["volume_id"])
                except LabError:
                    pass
        with self.lock:
            self.servers.pop(server_id, None)
        self.driver.release_address(server_id)

    def _require_state(self, server, action, states=("active",)):
        if server["vm_state"] not in states or server["task_state"] not in (None,):
            if server["task_state"] not in (None,):
                raise conflict(f"Cannot '{action}' instance {server['id']} while it is in task_state "
                               f"{server['task_state']}")
            raise conflict(f"Cannot '{action}' instance {server['id']} while it is in vm_state {server['vm_state']}")

    # -- actions -------------------------------------------------------------------------------
    def console_output(self, ctx, server_id, length):
        server = self.server(ctx, server_id)
        if server["vm_state"] == "building":
            raise conflict(f"Cannot 'get_console_output' instance {server_id} while it is in vm_state building")
        text = self.driver.console_output(server_id)
        if text is None:
            raise LabError(404, "Guest does not have a console available.", kind="itemNotFound")
        if length is not None:
            lines = text.splitlines(True)
            text = "".join(lines[-length:]) if length > 0 else ""
        return text

    def power(self, ctx, server_id, on: bool):
        """``os-start`` / ``os-stop``: SHUTOFF keeps the instance's disk; volumes come back at start."""
        server = self.server(ctx, server_id)
        action = "start" if on else "stop"
        self._require_state(server, action, ("stopped",) if on else ("active",))
        self._set(server_id, task_state="powering-on" if on else "powering-off")
        self._spawn_thread(self._power, server_id, on)

    def reboot(self, ctx, server_id, kind):
        """``reboot``: SOFT is an ACPI power-off then a new boot, HARD kills QEMU first; the disk and
        attached volumes stay, as with stop/start."""
        if kind not in ("SOFT", "HARD"):
            raise bad_request(f"Invalid input for field/attribute type. Value: {kind}. "
                              f"{kind!r} is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']")
        server = self.server(ctx, server_id)
        self._require_state(server, "reboot", ("active",) if kind == "SOFT" else ("active", "stopped"))
        self._set(server_id, status="REBOOT" if kind == "SOFT" else "HARD_REBOOT",
                  task_state="rebooting" if kind == "SOFT" else "rebooting_hard")
        self._spawn_thread(self._power, server_id, True, kind)

    def _power(self, server_id, on, reboot=None):
        try:
            if reboot and self.servers[server_id]["vm_state"] == "active":
                self.driver.power_off(server_id, timeout=30 if reboot == "SOFT" else 0)
            if on:
                self.driver.power_on(server_id)
                with self.lock:
                    attachments = [a for a in self.servers[server_id]["attachments"] if not a.get("root")]
                for a in attachments:       # hot-plugged again, in their order
                    device_id, _ = self.driver.attach_volume(server_id, self.volumes.path(a["volume_id"]))
                    with self.lock:
                        for mine in self.servers[server_id]["attachments"]:
                            if mine["volume_id"] == a["volume_id"]:
                                mine["device_id"] = device_id
            else:
                self.driver.power_off(server_id)
        except Exception as error:
            if not isinstance(error, LabError):
                traceback.print_exc()
            message = _one_line(error)
            self.log(f"server {server_id}: {reboot and 'reboot' or ('start' if on else 'stop')} failed: {message}")
            self._set(server_id, status="ERROR", vm_state="error", task_state=None, power_state=0,
                      fault={"code": 500, "message": message, "created": now(), "details": message})
            return
        if on:
            self._set(server_id, status="ACTIVE", vm_state="active", task_state=None, power_state=1)
        else:
            self._set(server_id, status="SHUTOFF", vm_state="stopped", task_state=None, power_state=4)
        self.log(f"server {server_id}: {'rebooted' if reboot else 'started' if on else 'stopped'}")

    def create_image(self, ctx, server_id, body, microversion):
        """``createImage``: with XenServer semantics a snapshot is exported like a backup (a VHD chain
        in a tgz), as the XenAPI driver uploaded both; ``image_type`` says ``snapshot``."""
        server = self.server(ctx, server_id)
        if not isinstance(body, dict) or "name" not in body:
            raise bad_request(f"Invalid input for field/attribute createImage. Value: {body}. "
                              "'name' is a required property")
        name = body["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise bad_request(f"Invalid input for field/attribute name. Value: {name!r}. "
                              f"{name!r} is not valid under any of the given schemas")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise bad_request("Invalid input for field/attribute metadata.")
        if server["root_volume_id"]:
            raise bad_request("The lab cannot snapshot volume-backed servers: it has no volume snapshots.")
        self._require_state(server, "createImage")
        props = {"image_type": "snapshot", "instance_uuid": server_id, "user_id": ctx["user_id"],
                 "base_image_ref": server["image_id"], "image_location": "snapshot",
                 "owner_project_name": ctx["project"]["name"]}
        props.update(metadata)
        image = self.images.create(ctx, dict(props, name=name, disk_format="vhd", container_format="ovf",
                                             visibility="private",
                                             min_disk=server["flavor"]["disk"]))
        self._set(server_id, task_state="image_snapshot")
        self._spawn_thread(self._backup, server_id, image["id"], ctx, None, None)
        return image

    def create_backup(self, ctx, server_id, body, microversion):
        server = self.server(ctx, server_id)
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute createBackup.")
        for key in ("name", "backup_type", "rotation"):
            if key not in body:
                raise bad_request(f"Invalid input for field/attribute createBackup. Value: {body}. "
                                  f"'{key}' is a required property")
        name, backup_type, rotation = body["name"], body["backup_type"], body["rotation"]
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise bad_request(f"Invalid input for field/attribute name. Value: {name!r}.")
        if not isinstance(backup_type, str):
            raise bad_request(f"Invalid input for field/attribute backup_type. Value: {backup_type!r}.")
        if isinstance(rotation, str) and rotation.isdigit():
            rotation = int(rotation)
        if not isinstance(rotation, int) or isinstance(rotation, bool) or rotation < 0:
            raise bad_request(f"Invalid input for field/attribute rotation. Value: {body['rotation']!r}. "
                              f"{body['rotation']!r} is not valid under any of the given schemas")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise bad_request("Invalid input for field/attribute metadata.")
        if server["root_volume_id"]:
            raise bad_request("Backup is not supported for volume-backed instances.")
        self._require_state(server, "createBackup")
        props = {"image_type": "backup", "backup_type": backup_type, "instance_uuid": server_id,
                 "user_id": ctx["user_id"], "base_image_ref": server["image_id"],
                 "image_location": "snapshot", "owner_project_name": ctx["project"]["name"]}
        props.update({k: str(v) for k, v in metadata.items()})
        image = self.images.create(ctx, dict(props, name=name, disk_format="vhd", container_format="ovf",
                                             visibility="private"))
        self._set(server_id, task_state="image_backup")
        self._spawn_thread(self._backup, server_id, image["id"], ctx, backup_type, rotation)
        return image

    def _backup(self, server_id, image_id, ctx, backup_type, rotation):
        path = None
        try:
            path = self.driver.backup(server_id, image_id)
            self.images.add_data_from_file(ctx, image_id, path)
            self.log(f"server {server_id}: backup {image_id} active")
        except Exception as error:
            if not isinstance(error, LabError):
                traceback.print_exc()
            self.log(f"server {server_id}: backup {image_id} failed: {_one_line(error)}")
            try:
                self.images.delete(None, image_id)
            except LabError:
                pass
        finally:
            if path is not None:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            self._set(server_id, task_state=None)
        if backup_type is not None:
            self._rotate(ctx, server_id, backup_type, rotation)

    def _rotate(self, ctx, server_id, backup_type, rotation):
        """Delete the oldest backups of this type beyond ``rotation`` (nova's _rotate_backups)."""
        backups = [i for i in self.images.list(None, {})
                   if i["properties"].get("image_type") == "backup"
                   and i["properties"].get("instance_uuid") == server_id
                   and i["properties"].get("backup_type") == backup_type]
        backups.sort(key=lambda i: i["created_at"], reverse=True)
        for old in backups[rotation:]:
            try:
                self.images.delete(None, old["id"])
                self.log(f"server {server_id}: rotated out backup {old['id']}")
            except LabError:
                pass

    # -- volume attachments --------------------------------------------------------------------
    def volume_quiesced(self, volume_id):
        """Cinder's hook for a snapshot of an in-use volume: the guest using it paused inside
        (a stopped server's QEMU is gone; its files need nothing)."""
        with self.lock:
            owners = [sid for sid, s in self.servers.items()
                      if any(a["volume_id"] == volume_id for a in s["attachments"])]
        return self.driver.quiesced(owners[0] if owners else None)

    def attach_volume(self, ctx, server_id, body, microversion):
        server = self.server(ctx, server_id)
        if not isinstance(body, dict) or "volumeId" not in body:
            raise bad_request("Invalid input for field/attribute volumeAttachment. 'volumeId' is a required property")
        volume_id = body["volumeId"]
        device = body.get("device")
        if device is not None and (not isinstance(device, str) or not device.startswith("/dev/")):
            raise bad_request(f"Invalid input for field/attribute device. Value: {device!r}.")
        try:
            self.volumes.get(ctx, volume_id)
        except LabError:
            raise not_found(f"Volume {volume_id} could not be found.") from None
        if any(a["volume_id"] == volume_id for a in server["attachments"]):
            raise conflict(f"Volume {volume_id} is already attached to instance {server_id}")
        self._require_state(server, "attach_volume", ("active", "stopped"))
        self.volumes.reserve(ctx, volume_id, server_id)
        attachment = {"volume_id": volume_id, "attachment_id": new_id(), "bdm_uuid": new_id(),
                      "delete_on_termination": bool(body.get("delete_on_termination", False)),
                      "tag": body.get("tag"), "device_id": None, "root": False}
        try:
            if server["vm_state"] == "stopped":       # hot-plugged when the server starts
                attachment["device"] = "/dev/vd" + chr(ord("c") + sum(not a.get("root") for a in server["attachments"]))
            else:
                attachment["device_id"], attachment["device"] = self.driver.attach_volume(
                    server_id, self.volumes.path(volume_id))
        except Exception as error:
            self.volumes.unreserve(volume_id)
            if not isinstance(error, LabError):
                traceback.print_exc()
            raise LabError(500, f"Failed to attach volume {volume_id}: {_one_line(error)}",
                            kind="computeFault") from None
        self.volumes.attached(volume_id, server_id, attachment["device"], attachment["attachment_id"])
        with self.lock:
            self.servers[server_id]["attachments"].append(attachment)
        return dict(attachment)

    def attachment(self, ctx, server_id, volume_id):
        server = self.server(ctx, server_id)
        for a in server["attachments"]:
            if a["volume_id"] == volume_id:
                return a
        raise not_found(f"Volume {volume_id} is not attached to {server_id}")

    def detach_volume(self, ctx, server_id, volume_id):
        server = self.server(ctx, server_id)
        attachment = self.attachment(ctx, server_id, volume_id)
        if attachment.get("root"):
            raise bad_request("Cannot detach a root device volume")
        self._require_state(server, "detach_volume", ("active", "stopped"))
        self.volumes.begin_detaching(volume_id)

        def work(_sid=server_id):
            try:
                if server["vm_state"] != "stopped":
                    self.driver.detach_volume(server_id, attachment["device_id"])
            except Exception:
                traceback.print_exc()
            with self.lock:
                s = self.servers.get(server_id)
                if s is not None:
                    s["attachments"] = [a for a in s["attachments"] if a["volume_id"] != volume_id]
            self.volumes.unreserve(volume_id)
        self._spawn_thread(work, server_id)

    # -- lifecycle -----------------------------------------------------------------------------
    def shutdown(self):
        with self.lock:
            ids = list(self.servers)
        for sid in ids:
            try:
                self.driver.destroy(sid)
            except Exception:
                traceback.print_exc()
            with self.lock:
                s = self.servers.pop(sid, None)
            for a in (s or {}).get("attachments", []):
                self.volumes.unreserve(a["volume_id"])


def _copy(server):
    out = dict(server)
    out["attachments"] = [dict(a) for a in server["attachments"]]
    out["metadata"] = dict(server["metadata"])
    out["flavor"] = dict(server["flavor"])
    return out


def _requested_hostname(body, microversion):
    """``hostname`` (2.90+): a hostname of up to 63 characters; from 2.94 a FQDN of up to 255."""
    if "hostname" not in body:
        return None
    value = body["hostname"]
    if microversion < (2, 90):
        raise bad_request("Invalid input for field/attribute server. Additional properties are not allowed "
                          "('hostname' was unexpected)")
    fqdn = microversion >= (2, 94)
    label = r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    pattern = rf"^{label}(\.{label})*\.?$" if fqdn else rf"^{label}$"
    if not isinstance(value, str) or len(value) > (255 if fqdn else 63) or not re.match(pattern, value):
        raise bad_request(f"Invalid input for field/attribute hostname. Value: {value!r}.")
    return value


def _access_ip(body, key, version):
    value = body.get(key)
    if value in (None, ""):
        return ""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is None or address.version != version:
        raise bad_request(f"Invalid input for field/attribute {key}. Value: {value}. "
                          f"'{value}' is not a 'ipv{version}'")
    return str(address)


def _one_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _hostname(name):
    out = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")
    return out[:63] or "server"


def _password():
    return base64.b32encode(os.urandom(10)).decode().rstrip("=")[:12]


def generate_keypair():
    """(private PEM, public OpenSSH) — an RSA 2048 key as nova generates."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:  # no cryptography: ssh-keygen does the same
        import subprocess
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "",
                            "-f", f"{d}/key"], check=True, capture_output=True)
            with open(f"{d}/key") as f, open(f"{d}/key.pub") as g:
                return f.read(), " ".join(g.read().split()[:2]) + " Generated-by-Nova"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public + " Generated-by-Nova"


def fingerprint_of(public_key: str):
    """Nova's fingerprint: md5 of the key blob, colon separated; None when not a key."""
    parts = public_key.strip().split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    kind = parts[0].encode()
    if len(blob) < 11 or int.from_bytes(blob[:4], "big") != len(kind) or blob[4:4 + len(kind)] != kind:
        return None
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def _page(items, key, marker, limit, *, missing, cap=None):
    """Nova's paging of a sorted list: after the item whose ``key`` is ``marker`` (400 with
    ``missing`` when there is none), at most ``limit`` items (400 when not a count)."""
    if marker is not None:
        keys = [item[key] for item in items]
        if marker not in keys:
            raise bad_request(missing.format(marker))
        items = items[keys.index(marker) + 1:]
    if limit is not None:
        try:
            count = int(limit)
        except ValueError:
            count = -1
        if count < 0:
            raise bad_request(f"Invalid input for query parameters limit. Value: {limit}.")
        items = items[:count if cap is None else min(count, cap)]
    return items

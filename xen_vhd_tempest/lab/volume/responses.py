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

"""Cinder v3 over HTTP: views and :class:`VolumeResponses` (one method per route of ``urls.py``):
volumes, snapshots and their metadata, actions, types, messages, version documents,
microversions. Errors are worded by
``errors.generic_body`` (cinder's shape)."""

from __future__ import annotations

from ..errors import LabError, bad_request, forbidden
from ..httpd import Response
from ..util import cinder_time, requested_microversion
from .models import DEFAULT_TYPE_ID, DEFAULT_TYPE_NAME, VOLUME_TYPES

MIN_VERSION = "3.0"
MAX_VERSION = "3.71"
MAX_LIMIT = 1000        # cinder's osapi_max_limit
SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at", "availability_zone", "bootable")
SNAPSHOT_SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at", "volume_id")


def version_doc(host_url):
    return {
        "id": "v3.0", "status": "CURRENT", "version": MAX_VERSION, "min_version": MIN_VERSION,
        "updated": "2023-08-31T00:00:00Z",
        "links": [{"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
                  {"rel": "self", "href": f"{host_url}/volume/v3/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.volume+json;version=3"}],
    }


def mv(req):
    return getattr(req, "microversion", (3, 0))


def view_summary(req, vol):
    base = f"{req.base_url}/v3/{vol['project_id']}/volumes/{vol['id']}"
    return {"id": vol["id"], "name": vol["name"],
            "links": [{"rel": "self", "href": base},
                      {"rel": "bookmark", "href": base.replace("/v3/", "/", 1)}]}


def view_detail(req, vol, *, extended=True):
    out = view_summary(req, vol)
    admin = bool(req.context and req.context.get("is_admin"))
    out.update({
        "status": vol["status"], "size": vol["size"], "availability_zone": vol["availability_zone"],
        "created_at": cinder_time(vol["created_at"]), "updated_at": cinder_time(vol["updated_at"]),
        "attachments": [{
            "id": a["id"], "attachment_id": a["attachment_id"], "volume_id": a["volume_id"],
            "server_id": a["server_id"], "host_name": a["host_name"], "device": a["device"],
            "attached_at": cinder_time(a["attached_at"])} for a in vol["attachments"]],
        "description": vol["description"], "volume_type": vol["volume_type"],
        "snapshot_id": vol.get("snapshot_id"), "source_volid": None, "metadata": vol["metadata"],
        "user_id": vol["user_id"], "bootable": "true" if vol["bootable"] else "false",
        "encrypted": False, "replication_status": None, "consistencygroup_id": None,
        "multiattach": vol["multiattach"], "migration_status": None,
    })
    version = mv(req)
    if version >= (3, 13):
        out["group_id"] = None
    if version >= (3, 21) and admin:
        out["provider_id"] = None
    if version >= (3, 48):
        out["shared_targets"] = False
        out["service_uuid"] = None
    if version >= (3, 61) and admin:
        out["cluster_name"] = None
    if version >= (3, 63):
        out["volume_type_id"] = DEFAULT_TYPE_ID
    if version >= (3, 65):
        out["consumes_quota"] = True
    if extended:
        out["os-vol-tenant-attr:tenant_id"] = vol["project_id"]
        if admin:
            out["os-vol-host-attr:host"] = "lab@lab#lab"
            out["os-vol-mig-status-attr:migstat"] = None
            out["os-vol-mig-status-attr:name_id"] = None
        if vol.get("volume_image_metadata"):
            out["volume_image_metadata"] = vol["volume_image_metadata"]
    return out


def view_snapshot(req, snap, *, extended=True):
    """cinder's snapshot view; the extended attributes (progress, project) in show and detail."""
    out = {"id": snap["id"], "name": snap["name"], "description": snap["description"],
           "volume_id": snap["volume_id"], "status": snap["status"], "size": snap["size"],
           "metadata": snap["metadata"], "created_at": cinder_time(snap["created_at"]),
           "updated_at": cinder_time(snap["updated_at"])}
    version = mv(req)
    if version >= (3, 14):
        out["group_snapshot_id"] = None
    if version >= (3, 41):
        out["user_id"] = snap["user_id"]
    if version >= (3, 65):
        out["consumes_quota"] = True
    if extended:
        out["os-extended-snapshot-attributes:progress"] = snap["progress"]
        out["os-extended-snapshot-attributes:project_id"] = snap["project_id"]
    return out


def volume_type(req):
    return {"id": DEFAULT_TYPE_ID, "name": DEFAULT_TYPE_NAME, "description": "Default Volume Type",
            "is_public": True, "extra_specs": {}, "qos_specs_id": None,
            "os-volume-type-access:is_public": True}


class VolumeResponses:
    """Cinder's HTTP in and out over ``backend`` (``models.VolumeBackend``)."""

    def __init__(self, backend):
        self.backend = backend

    def prepare(self, req):
        """Routes under ``/v3/{project_id}``: the microversion, and the project must be the token's."""
        req.microversion = requested_microversion(req.headers, "volume", None, MIN_VERSION, MAX_VERSION)
        pid = req.params.get("project_id")
        if pid and req.context and pid != req.context["project_id"] and not req.context.get("is_admin"):
            raise forbidden("Policy doesn't allow this project to be used.")

    def decorate(self, req, resp):
        if req.path.startswith("/v3/") and req.path not in ("/v3/",):
            version = getattr(req, "microversion", None)
            if version is not None:
                resp.headers["OpenStack-API-Version"] = f"volume {version[0]}.{version[1]}"
                resp.headers["Vary"] = "OpenStack-API-Version"

    def versions(self, req):
        return Response.json(300, {"versions": [version_doc(req.host_url)]})

    def v3_root(self, req):
        return Response.json(200, {"versions": [version_doc(req.host_url)]})

    def create(self, req):
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("volume"), dict):
            raise bad_request("Missing required element 'volume' in request body.")
        vol = self.backend.create(req.context, body["volume"])
        return Response.json(202, {"volume": view_detail(req, vol, extended=False)})

    def _listing(self, req, view):
        all_tenants = req.arg("all_tenants") in ("1", "true", "True")
        vols = self._filter(req, self.backend.list(req.context, all_tenants))
        return self._collection(req, "volumes", vols, view)

    def _collection(self, req, name, items, view):
        """One page of ``items`` with ``<name>_links`` when it is full, ``count`` from 3.45."""
        count = len(items)
        items, next_marker = self._page(req, items)
        body = {name: [view(req, v) for v in items]}
        if next_marker:
            query = "&".join(f"{k}={v[-1]}" for k, v in req.query.items() if k != "marker")
            href = f"{req.base_url}{req.path}?{query}{'&' if query else ''}marker={next_marker}"
            body[f"{name}_links"] = [{"href": href, "rel": "next"}]
        if mv(req) >= (3, 45) and req.arg("with_count") in ("true", "True", "1"):
            body["count"] = count
        return Response.json(200, body)

    def index(self, req):
        return self._listing(req, view_summary)

    def detail(self, req):
        return self._listing(req, view_detail)

    def _filter(self, req, vols):
        for key in ("name", "status"):
            value = req.arg(key)
            if value is not None:
                vols = [v for v in vols if v.get(key) == value]
        return self._sort(req, vols)

    @staticmethod
    def _sort(req, vols, sort_keys=SORT_KEYS):
        """cinder's ``sort=key:dir,...`` or ``sort_key``/``sort_dir``; created_at desc by default."""
        if req.arg("sort"):
            keys = [((part.split(":") + ["desc"])[:2]) for part in req.arg("sort").split(",")]
        else:
            keys = [[req.arg("sort_key", "created_at"), req.arg("sort_dir", "desc")]]
        # cinder maps the v2 names of its sort keys (display_name) to the v3 ones
        keys = [["name" if key == "display_name" else key, direction] for key, direction in keys]
        for key, direction in keys:
            if key not in sort_keys:
                raise bad_request(f"Invalid input received: Invalid sort key {key}.")
            if direction not in ("asc", "desc"):
                raise bad_request("Invalid input received: Unknown sort direction, must be 'desc' or 'asc'.")
        for key, direction in reversed(keys):
            vols.sort(key=lambda v: (v.get(key) is None, v.get(key) if key == "size" else str(v.get(key))),
                      reverse=direction == "desc")
        return vols

    @staticmethod
    def _page(req, vols):
        """``marker``/``limit``; a full page has a next link (cinder's _get_collection_links)."""
        marker = req.arg("marker")
        if marker:
            ids = [v["id"] for v in vols]
            if marker not in ids:
                raise LabError(404, f"Marker {marker} could not be found.", kind="itemNotFound")
            vols = vols[ids.index(marker) + 1:]
        offset = req.arg("offset")
        if offset is not None:
            try:
                offset = int(offset)
            except ValueError:
                raise bad_request(f"Invalid input received: offset {offset!r} is not an integer") from None
            if offset < 0:
                raise bad_request("Invalid input received: offset must be >= 0")
            vols = vols[offset:]
        limit = req.arg("limit")
        if limit is None:
            limit = MAX_LIMIT
        else:
            try:
                limit = int(limit)
            except ValueError:
                raise bad_request(f"Invalid input received: limit {limit!r} is not an integer") from None
            if limit < 0:
                raise bad_request("Invalid input received: limit must be >= 0")
        page = vols[:min(limit, MAX_LIMIT)]
        full = page and len(page) == min(limit, MAX_LIMIT) and (req.arg("limit") is not None or len(vols) > MAX_LIMIT)
        return page, (page[-1]["id"] if full else None)

    def summary(self, req):
        if mv(req) < (3, 12):
            raise LabError(404, "The resource could not be found.", kind="itemNotFound")
        all_tenants = req.arg("all_tenants") in ("1", "true", "True")
        vols = self.backend.list(req.context, all_tenants)
        body = {"total_size": sum(v["size"] for v in vols), "total_count": len(vols)}
        if mv(req) >= (3, 36):
            metadata = {}
            for v in vols:
                for key, value in v["metadata"].items():
                    metadata.setdefault(key, [])
                    if value not in metadata[key]:
                        metadata[key].append(value)
            body["metadata"] = metadata
        return Response.json(200, {"volume-summary": body})

    def show(self, req):
        return Response.json(200, {"volume": view_detail(req, self.backend.get(req.context, req.params["volume_id"]))})

    def update(self, req):
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("volume"), dict):
            raise bad_request("Missing required element 'volume' in request body.")
        vol = self.backend.update_fields(req.context, req.params["volume_id"], body["volume"])
        # cinder's update answers the core detail view: no extension attributes
        return Response.json(200, {"volume": view_detail(req, vol, extended=False)})

    def delete(self, req):
        self.backend.delete(req.context, req.params["volume_id"], force=req.arg("force") in ("true", "True"),
                            cascade=req.arg("cascade") in ("true", "True", "1"))
        return Response.empty(202)

    def action(self, req):
        body = req.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise bad_request("Invalid request body: exactly one action expected.")
        (name, arg), = body.items()
        vid = req.params["volume_id"]
        backend = self.backend
        if name == "os-reserve":
            backend.action_reserve(req.context, vid)
        elif name == "os-unreserve":
            backend.action_unreserve(req.context, vid)
        elif name == "os-attach":
            if not isinstance(arg, dict) or not (arg.get("instance_uuid") or arg.get("host_name")):
                raise bad_request("Invalid request to attach volume to an invalid target")
            backend.get(req.context, vid)
            if not arg.get("mountpoint"):
                raise bad_request("Must specify 'mountpoint'")
            backend.action_attach(req.context, vid, arg.get("instance_uuid"), arg["mountpoint"])
        elif name == "os-detach":
            backend.action_detach(req.context, vid, (arg or {}).get("attachment_id") if isinstance(arg, dict) else None)
        elif name == "os-extend":
            if not isinstance(arg, dict) or "new_size" not in arg:
                raise bad_request("Invalid input for field/attribute extend. 'new_size' is a required property")
            backend.extend(req.context, vid, arg["new_size"])
        elif name == "os-reset_status":
            if not isinstance(arg, dict) or "status" not in arg:
                raise bad_request("Must specify 'status'")
            self.backend.reset_status(req.context, vid, arg["status"])
        elif name == "os-set_bootable":
            if not isinstance(arg, dict) or "bootable" not in arg:
                raise bad_request("Must specify bootable in request.")
            value = arg["bootable"]
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise bad_request(f"Invalid value '{value}' for bootable.")
                value = value.lower() in ("true", "1", "yes")
            self.backend.set_bootable(req.context, vid, value)
            return Response.empty(200)
        else:
            raise bad_request(f"There is no such action: {name}")
        return Response.empty(202)

    # -- snapshots
    def snapshot_create(self, req):
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("snapshot"), dict):
            raise bad_request("Missing required element 'snapshot' in request body.")
        snap = self.backend.create_snapshot(req.context, body["snapshot"])
        return Response.json(202, {"snapshot": view_snapshot(req, snap, extended=False)})

    def _snapshots(self, req, extended):
        all_tenants = req.arg("all_tenants") in ("1", "true", "True")
        snaps = self.backend.list_snapshots(req.context, all_tenants)
        for key in ("name", "status", "volume_id"):
            value = req.arg(key)
            if value is not None:
                snaps = [s for s in snaps if s.get(key) == value]
        snaps = self._sort(req, snaps, SNAPSHOT_SORT_KEYS)
        return self._collection(req, "snapshots", snaps,
                                lambda r, s: view_snapshot(r, s, extended=extended))

    def snapshot_index(self, req):
        return self._snapshots(req, extended=False)

    def snapshot_detail(self, req):
        return self._snapshots(req, extended=True)

    def snapshot_show(self, req):
        snap = self.backend.get_snapshot(req.context, req.params["snapshot_id"])
        return Response.json(200, {"snapshot": view_snapshot(req, snap)})

    def snapshot_update(self, req):
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("snapshot"), dict):
            raise bad_request("Missing required element 'snapshot' in request body.")
        snap = self.backend.update_snapshot(req.context, req.params["snapshot_id"], body["snapshot"])
        return Response.json(200, {"snapshot": view_snapshot(req, snap, extended=False)})

    def snapshot_delete(self, req):
        self.backend.delete_snapshot(req.context, req.params["snapshot_id"])
        return Response.empty(202)

    def snapshot_action(self, req):
        body = req.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise bad_request("Invalid request body: exactly one action expected.")
        (name, arg), = body.items()
        sid = req.params["snapshot_id"]
        if name == "os-reset_status":
            if not isinstance(arg, dict) or "status" not in arg:
                raise bad_request("Must specify 'status'")
            self.backend.reset_snapshot_status(req.context, sid, arg["status"])
        elif name == "os-force_delete":
            if not req.context.get("is_admin"):
                raise forbidden("Policy doesn't allow volume_extension:snapshot_admin_actions:force_delete "
                                "to be performed.")
            self.backend.reset_snapshot_status(req.context, sid, "error")
            self.backend.delete_snapshot(req.context, sid)
        else:
            raise bad_request(f"There is no such action: {name}")
        return Response.empty(202)

    @staticmethod
    def _metadata_body(req, key="metadata"):
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get(key), dict):
            raise bad_request("Malformed request body")
        return body[key]

    def snapshot_metadata(self, req):
        return Response.json(200, {"metadata": self.backend.snapshot_metadata(
            req.context, req.params["snapshot_id"])})

    def snapshot_metadata_create(self, req):
        return Response.json(200, {"metadata": self.backend.snapshot_metadata(
            req.context, req.params["snapshot_id"], self._metadata_body(req))})

    def snapshot_metadata_replace(self, req):
        return Response.json(200, {"metadata": self.backend.snapshot_metadata(
            req.context, req.params["snapshot_id"], self._metadata_body(req), replace=True)})

    def snapshot_metadata_show(self, req):
        key = req.params["key"]
        metadata = self.backend.snapshot_metadata(req.context, req.params["snapshot_id"])
        if key not in metadata:
            raise LabError(404, f"Snapshot {req.params['snapshot_id']} has no metadata with key {key}.",
                           kind="itemNotFound")
        return Response.json(200, {"meta": {key: metadata[key]}})

    def snapshot_metadata_update(self, req):
        key = req.params["key"]
        meta = self._metadata_body(req, "meta")
        if len(meta) != 1:
            raise bad_request("Request body contains too many items")
        if key not in meta:
            raise bad_request("Request body and URI mismatch")
        self.backend.snapshot_metadata(req.context, req.params["snapshot_id"], meta)
        return Response.json(200, {"meta": meta})

    def snapshot_metadata_delete(self, req):
        self.backend.snapshot_metadata(req.context, req.params["snapshot_id"], delete_key=req.params["key"])
        return Response.empty(200)

    def types(self, req):
        return Response.json(200, {"volume_types": [volume_type(req)]})

    def show_type(self, req):
        if req.params["type_id"] not in VOLUME_TYPES + ("default",):
            raise LabError(404, f"Volume type {req.params['type_id']} could not be found.", kind="itemNotFound")
        return Response.json(200, {"volume_type": volume_type(req)})

    def messages(self, req):
        if mv(req) < (3, 3):
            raise LabError(404, "The resource could not be found.", kind="itemNotFound")
        msgs = self.backend.messages_for(req.context, req.arg("resource_uuid"))
        return Response.json(200, {"messages": [{
            "id": m["id"], "resource_uuid": m["resource_uuid"], "resource_type": m["resource_type"],
            "event_id": m["event_id"], "message_level": m["message_level"],
            "user_message": m["user_message"], "request_id": m["request_id"],
            "created_at": cinder_time(m["created_at"]), "guaranteed_until": None,
            "links": []} for m in msgs]})

    def limits(self, req):
        return Response.json(200, {"limits": {"rate": [], "absolute": {
            "maxTotalVolumes": 100, "maxTotalVolumeGigabytes": 1000, "maxTotalSnapshots": 10,
            "maxTotalBackups": 10, "maxTotalBackupGigabytes": 1000,
            "totalVolumesUsed": len(self.backend.list(req.context)),
            "totalGigabytesUsed": sum(v["size"] for v in self.backend.list(req.context)),
            "totalSnapshotsUsed": len(self.backend.list_snapshots(req.context)), "totalBackupsUsed": 0, "totalBackupGigabytesUsed": 0}}})

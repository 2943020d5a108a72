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

"""Glance v2 over HTTP: views, schemas and :class:`ImageResponses` (one method per route of
``urls.py``): images, image data (chunked uploads streamed), versions. Errors are worded by
``errors.glance_body`` (webob's text page)."""

from __future__ import annotations

from ..errors import LabError, bad_request
from ..httpd import Response
from ..util import glance_time
from .models import CONTAINER_FORMATS, DISK_FORMATS

UUID_PATTERN = ("^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-"
                "([0-9a-fA-F]){12}$")


def image_schema():
    props = {
        "id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
        "name": {"type": ["null", "string"], "description": "Descriptive name for the image", "maxLength": 255},
        "status": {"type": "string", "readOnly": True, "description": "Status of the image",
                   "enum": ["queued", "saving", "active", "killed", "deleted", "uploading",
                            "importing", "pending_delete", "deactivated"]},
        "visibility": {"type": "string", "description": "Scope of image accessibility",
                       "enum": ["community", "public", "private", "shared"]},
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {"type": "boolean",
                      "description": "If true, image will not appear in default image list response."},
        "checksum": {"type": ["null", "string"], "readOnly": True, "maxLength": 32,
                     "description": "md5 hash of image contents."},
        "os_hash_algo": {"type": ["null", "string"], "readOnly": True, "maxLength": 64,
                         "description": "Algorithm to calculate the os_hash_value"},
        "os_hash_value": {"type": ["null", "string"], "readOnly": True, "maxLength": 128,
                          "description": "Hexdigest of the image contents using the algorithm "
                                         "specified by the os_hash_algo"},
        "owner": {"type": ["null", "string"], "description": "Owner of the image", "maxLength": 255},
        "size": {"type": ["null", "integer"], "readOnly": True, "description": "Size of image file in bytes"},
        "virtual_size": {"type": ["null", "integer"], "readOnly": True,
                         "description": "Virtual size of image in bytes"},
        "container_format": {"type": ["null", "string"], "description": "Format of the container",
                             "enum": [None] + CONTAINER_FORMATS},
        "disk_format": {"type": ["null", "string"], "description": "Format of the disk",
                        "enum": [None] + DISK_FORMATS},
        "created_at": {"type": "string", "readOnly": True, "description": "Date and time of image registration"},
        "updated_at": {"type": "string", "readOnly": True,
                       "description": "Date and time of the last image modification"},
        "tags": {"type": "array", "description": "List of strings related to the image",
                 "items": {"type": "string", "maxLength": 255}},
        "direct_url": {"type": "string", "readOnly": True},
        "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image."},
        "min_disk": {"type": "integer", "description": "Amount of disk space (in GB) required to boot image."},
        "self": {"type": "string", "readOnly": True},
        "file": {"type": "string", "readOnly": True},
        "stores": {"type": "string", "readOnly": True},
        "schema": {"type": "string", "readOnly": True},
        "locations": {"type": "array", "items": {"type": "object", "properties": {
            "url": {"type": "string", "maxLength": 255}, "metadata": {"type": "object"},
            "validation_data": {"type": "object"}}, "required": ["url", "metadata"]}},
        "kernel_id": {"type": ["null", "string"], "pattern": UUID_PATTERN, "is_base": False},
        "ramdisk_id": {"type": ["null", "string"], "pattern": UUID_PATTERN, "is_base": False},
        "instance_uuid": {"type": "string", "is_base": False},
        "architecture": {"type": "string", "is_base": False},
        "os_distro": {"type": "string", "is_base": False},
        "os_version": {"type": "string", "is_base": False},
        "description": {"type": "string", "is_base": False},
        "cim_pasd_resourceid": {"type": "string", "is_base": False},
        "image_type": {"type": "string", "is_base": False},
    }
    return {
        "name": "image", "properties": props,
        "additionalProperties": {"type": "string"},
        "links": [{"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }


def images_schema():
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"}, "first": {"type": "string"}, "next": {"type": "string"},
        },
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }


def member_schema():
    return {"name": "member", "properties": {
        "created_at": {"type": "string", "description": "Date and time of image member creation"},
        "image_id": {"type": "string", "pattern": UUID_PATTERN, "description": "An identifier for the image"},
        "member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"},
        "schema": {"type": "string", "readOnly": True},
        "status": {"type": "string", "enum": ["pending", "accepted", "rejected"],
                   "description": "The status of this image member"},
        "updated_at": {"type": "string", "description": "Date and time of last modification of image member"},
    }}


def members_schema():
    return {"name": "members", "properties": {"members": {"type": "array", "items": member_schema()},
                                              "schema": {"type": "string"}},
            "links": [{"rel": "describedby", "href": "{schema}"}]}


def _metadef(name, properties, required=()):
    return {"name": name, "properties": properties, "required": list(required), "additionalProperties": False}


def metadefs_schemas():
    """The metadata-definition schemas' documents (the lab has no metadefs catalog of its own)."""
    text = {"type": "string"}
    stamp = {"type": "string", "readOnly": True, "format": "date-time"}
    prop = {"type": {"type": "string"}, "title": text, "description": text, "default": {}, "enum": {"type": "array"}}
    association = {"name": {"type": "string", "maxLength": 80}, "prefix": text, "properties_target": text,
                   "created_at": stamp, "updated_at": stamp}
    namespace = {"namespace": {"type": "string", "maxLength": 80}, "display_name": text, "description": text,
                 "visibility": {"type": "string", "enum": ["public", "private"]}, "protected": {"type": "boolean"},
                 "owner": text, "created_at": stamp, "updated_at": stamp, "schema": text, "self": text,
                 "resource_type_associations": {"type": "array", "items": {"type": "object",
                                                                           "properties": association}},
                 "properties": {"type": "object"}, "objects": {"type": "array"}, "tags": {"type": "array"}}
    obj = {"name": {"type": "string", "maxLength": 255}, "description": text, "required": {"type": "array"},
           "properties": {"type": "object"}, "schema": text, "self": text, "created_at": stamp,
           "updated_at": stamp}
    tag = {"name": {"type": "string", "maxLength": 255}, "created_at": stamp, "updated_at": stamp}
    listing = {"first": text, "next": text, "schema": text}
    out = {
        "namespace": _metadef("namespace", namespace, ["namespace"]),
        "object": _metadef("object", obj, ["name"]),
        "property": _metadef("property", dict(prop, name={"type": "string", "maxLength": 255}), ["type", "title"]),
        "tag": _metadef("tag", tag, ["name"]),
        "resource_type": _metadef("resource_type_association", association, ["name"]),
    }
    for single, plural, key in (("namespace", "namespaces", "namespaces"), ("object", "objects", "objects"),
                                ("tag", "tags", "tags"),
                                ("resource_type", "resource_types", "resource_type_associations")):
        name = "resource_type_associations" if single == "resource_type" else plural
        out[plural] = {"name": name, "properties": dict(listing, **{key: {"type": "array", "items": out[single]}})}
    out["properties"] = {"name": "properties", "properties": {
        "properties": {"type": "object", "additionalProperties": out["property"]}}}
    return out


VERSIONS = ["2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8", "2.9", "2.10",
            "2.11", "2.12", "2.13", "2.14", "2.15", "2.16", "2.17"]


def view(image: dict) -> dict:
    out = {k: image[k] for k in ("id", "name", "status", "disk_format", "container_format",
                                 "visibility", "protected", "min_disk", "min_ram", "owner", "size",
                                 "virtual_size", "checksum", "os_hash_algo", "os_hash_value",
                                 "os_hidden", "tags")}
    out["created_at"] = glance_time(image["created_at"])
    out["updated_at"] = glance_time(image["updated_at"])
    out.update(image.get("properties", {}))
    out["self"] = f"/v2/images/{image['id']}"
    out["file"] = f"/v2/images/{image['id']}/file"
    out["schema"] = "/v2/schemas/image"
    return out


def _sort_value(value):
    """Numbers by value (size, min_ram), the rest as text; None sorts as glance's NULL, after all."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value)) if value is not None else (2, 0, "")


def member_view(member):
    return dict(member, created_at=glance_time(member["created_at"]), updated_at=glance_time(member["updated_at"]))


def _patch_v20(changes):
    """The v2.0 patch media type names the op as the key: ``{"replace": "/name", "value": ...}``."""
    if not isinstance(changes, list):
        return changes
    out = []
    for change in changes:
        ops = [op for op in ("add", "replace", "remove") if isinstance(change, dict) and op in change]
        if len(ops) != 1:
            raise bad_request('Operation objects must contain exactly one member named "add", "remove", '
                              'or "replace".')
        converted = {"op": ops[0], "path": change[ops[0]]}
        if "value" in change:
            converted["value"] = change["value"]
        out.append(converted)
    return out


class ImageResponses:
    """Glance's HTTP in and out over ``backend`` (``models.ImageBackend``)."""

    def __init__(self, backend):
        self.backend = backend

    def versions(self, req):
        values = []
        for v in reversed(VERSIONS):
            values.append({"id": f"v{v}", "status": "CURRENT" if v == VERSIONS[-1] else "SUPPORTED",
                           "links": [{"rel": "self", "href": f"{req.base_url}/v2/"}]})
        return Response.json(300, {"versions": values})

    def create(self, req):
        body = req.json()
        image = self.backend.create(req.context, body)
        return Response.json(201, view(image), {"Location": f"{req.base_url}/v2/images/{image['id']}"})

    def index(self, req):
        filters = {}
        for key, values in req.query.items():
            if key in ("limit", "marker", "sort_key", "sort_dir", "sort", "member_status"):
                continue
            filters[key] = values[-1]
        if "os_hidden" not in filters:
            filters["os_hidden"] = "False"
        images = self.backend.list(req.context, filters, req.arg("member_status", "accepted"))
        sort = req.arg("sort")
        keys = [(req.arg("sort_key", "created_at"), req.arg("sort_dir", "desc"))]
        if sort:
            keys = [(s.split(":")[0], (s.split(":") + ["desc"])[1]) for s in sort.split(",")]
        for key, direction in reversed(keys):
            images.sort(key=lambda i: _sort_value(i.get(key)), reverse=(direction == "desc"))
        marker = req.arg("marker")
        if marker:
            ids = [i["id"] for i in images]
            if marker not in ids:
                raise bad_request(f"Invalid marker. Image {marker} could not be found.")
            images = images[ids.index(marker) + 1:]
        limit = req.arg("limit")
        body = {"first": "/v2/images", "schema": "/v2/schemas/images"}
        if limit is not None:
            try:
                limit = int(limit)
                assert limit >= 0
            except (ValueError, AssertionError):
                raise bad_request("limit param must be an integer") from None
            if len(images) > limit:
                images = images[:limit]
                body["next"] = f"/v2/images?marker={images[-1]['id']}&limit={limit}" if images else None
        body["images"] = [view(i) for i in images]
        return Response.json(200, body)

    def show(self, req):
        return Response.json(200, view(self.backend.get(req.context, req.params["image_id"])))

    def update(self, req):
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype not in ("application/openstack-images-v2.1-json-patch",
                         "application/openstack-images-v2.0-json-patch"):
            raise LabError(415, f"Unsupported Content-Type {ctype}",
                            headers={"Accept-Patch": "application/openstack-images-v2.1-json-patch"})
        changes = req.json()
        if ctype == "application/openstack-images-v2.0-json-patch":
            changes = _patch_v20(changes)
        return Response.json(200, view(self.backend.update(req.context, req.params["image_id"], changes)))

    def deactivate(self, req):
        self.backend.set_active(req.context, req.params["image_id"], False)
        return Response.empty(204)

    def reactivate(self, req):
        self.backend.set_active(req.context, req.params["image_id"], True)
        return Response.empty(204)

    def add_member(self, req):
        body = req.json()
        member = body.get("member") if isinstance(body, dict) else None
        return Response.json(200, member_view(self.backend.add_member(req.context, req.params["image_id"], member)))

    def members(self, req):
        members = self.backend.members(req.context, req.params["image_id"])
        return Response.json(200, {"members": [member_view(m) for m in members], "schema": "/v2/schemas/members"})

    def show_member(self, req):
        p = req.params
        return Response.json(200, member_view(self.backend.member(req.context, p["image_id"], p["member_id"])))

    def update_member(self, req):
        body = req.json()
        status = body.get("status") if isinstance(body, dict) else None
        p = req.params
        member = self.backend.set_member_status(req.context, p["image_id"], p["member_id"], status)
        return Response.json(200, member_view(member))

    def delete_member(self, req):
        self.backend.remove_member(req.context, req.params["image_id"], req.params["member_id"])
        return Response.empty(204)

    def delete(self, req):
        self.backend.delete(req.context, req.params["image_id"])
        return Response.empty(204)

    def upload(self, req):
        ctype = (req.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip()
        if ctype != "application/octet-stream":
            raise LabError(415, f"Content-Type must be application/octet-stream, not {ctype}")
        self.backend.upload(req.context, req.params["image_id"], req.stream())
        return Response.empty(204)

    def download(self, req):
        image, f = self.backend.open_data(req.context, req.params["image_id"])
        if f is None:
            return Response.empty(204)
        size = image["size"]

        def chunks():
            with f:
                while True:
                    data = f.read(1024 * 1024)
                    if not data:
                        return
                    yield data
        headers = {"Content-Type": "application/octet-stream", "Content-MD5": image["checksum"]}
        return Response(200, chunks(), headers, length=size)

    def add_tag(self, req):
        self.backend.set_tag(req.context, req.params["image_id"], req.params["tag"], True)
        return Response.empty(204)

    def delete_tag(self, req):
        self.backend.set_tag(req.context, req.params["image_id"], req.params["tag"], False)
        return Response.empty(204)

    def schema_image(self, req):
        return Response.json(200, image_schema())

    def schema_images(self, req):
        return Response.json(200, images_schema())

    def schema_member(self, req):
        return Response.json(200, member_schema())

    def schema_members(self, req):
        return Response.json(200, members_schema())

    def schema_metadefs(self, req):
        schema = metadefs_schemas().get(req.params["name"])
        if schema is None:
            raise LabError(404, "The resource could not be found.")
        return Response.json(200, schema)

    def info_import(self, req):
        return Response.json(200, {"import-methods": {"description": "Import methods available.",
                                                      "type": "array", "value": ["glance-direct"]}})

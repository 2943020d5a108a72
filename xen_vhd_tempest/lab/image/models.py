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

"""Glance v2 state and behaviour: image records, data streamed to disk, status transitions,
members of shared images.

queued --(PUT file)--> saving --> active ; a failed upload goes back to queued ;
active <--(deactivate/reactivate)--> deactivated.
Checksums are computed while streaming (md5 ``checksum``, sha512 ``os_hash_value``):
an image is never held in memory.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from ..errors import LabError, bad_request, forbidden, not_found
from ..util import now

DISK_FORMATS = ["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"]
CONTAINER_FORMATS = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]
VISIBILITIES = ["public", "private", "community", "shared"]

# Attributes a client may set at create/update time; everything else that is a core
# attribute is read-only (glance answers 403 "Attribute 'x' is read-only.").
SETTABLE = {"name", "disk_format", "container_format", "visibility", "protected", "min_disk",
            "min_ram", "tags", "os_hidden", "id"}
READ_ONLY = {"status", "size", "virtual_size", "checksum", "os_hash_algo", "os_hash_value",
             "created_at", "updated_at", "owner", "file", "self", "schema", "locations",
             "direct_url", "stores"}
RESERVED = {"deleted", "deleted_at"}
RESERVED_PREFIX = "os_glance_"      # glance's own namespace: 403 for users
MEMBER_STATUSES = ("pending", "accepted", "rejected")
CORE = SETTABLE | READ_ONLY | RESERVED

IMAGE_SIZE_CAP = 8 * 1024 ** 3  # glance's image_size_cap: 413 beyond it


class ImageBackend:
    def __init__(self, store, data_dir: Path, *, size_cap: int = IMAGE_SIZE_CAP):
        self.store = store
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.size_cap = size_cap
        self.images = store.collection("images")
        self.stuck = None   # (image name) -> True: the upload stays in saving (lab/fault_injection.py)
        # An upload that was under way when the lab stopped did not finish.
        # (glance itself would leave it in saving; back to queued is its rule for a failed
        # upload.) Data no record owns - a delete or an upload cut short - is removed too.
        with store.lock:
            for image in self.images.values():
                if image["status"] == "saving":
                    image["status"] = "queued"
                    self._remove_data(image["id"])
            store.save()
            owned = {i["id"] for i in self.images.values() if i["status"] == "active"}
        for path in self.data_dir.iterdir():
            if path.is_file() and path.name not in owned:
                path.unlink(missing_ok=True)

    # -- access
    def visible(self, ctx, image) -> bool:
        if ctx is None or ctx.get("is_admin"):
            return True
        return (image["visibility"] in ("public", "community") or image["owner"] == ctx["project_id"]
                or (image["visibility"] == "shared" and ctx["project_id"] in image.get("members", {})))

    def listed(self, ctx, image, member_status="accepted") -> bool:
        """glance's default list: own, public and accepted shared images (``member_status`` to change)."""
        if ctx is None or ctx.get("is_admin") or image["owner"] == ctx["project_id"]:
            return True
        if image["visibility"] == "shared":
            member = image.get("members", {}).get(ctx["project_id"])
            return member is not None and member_status in ("all", member["status"])
        return image["visibility"] in ("public", "community")

    def get(self, ctx, image_id) -> dict:
        with self.store.lock:
            image = self.images.get(image_id)
            if image is None or not self.visible(ctx, image):
                raise not_found(f"No image found with ID {image_id}")
            return dict(image)

    def find(self, image_id):
        with self.store.lock:
            image = self.images.get(image_id)
            return dict(image) if image else None

    def data_path(self, image_id) -> Path:
        return self.data_dir / image_id

    def list(self, ctx, filters: dict, member_status="accepted") -> list[dict]:
        if member_status not in MEMBER_STATUSES + ("all",):
            raise bad_request(f"Invalid status value: {member_status}")
        with self.store.lock:
            images = [dict(i) for i in self.images.values() if self.listed(ctx, i, member_status)]
        def matches(image, key, value):
            if key == "tag":
                return value in image.get("tags", [])
            actual = image["properties"].get(key) if key in image.get("properties", {}) else image.get(key)
            if isinstance(actual, bool):
                return str(actual).lower() == str(value).lower()
            return actual is not None and str(actual) == str(value)
        for key, value in filters.items():
            images = [i for i in images if matches(i, key, value)]
        return images

    # -- create / update
    def _check_formats(self, record):
        df, cf = record.get("disk_format"), record.get("container_format")
        if df is not None and df not in DISK_FORMATS:
            raise bad_request(f"Invalid value '{df}' for parameter 'disk_format': Valid values are: "
                              + ", ".join(DISK_FORMATS))
        if cf is not None and cf not in CONTAINER_FORMATS:
            raise bad_request(f"Invalid value '{cf}' for parameter 'container_format': Valid values are: "
                              + ", ".join(CONTAINER_FORMATS))
        if record.get("visibility") not in VISIBILITIES:
            raise bad_request(f"Invalid value '{record.get('visibility')}' for parameter 'visibility'")
        for key in ("min_disk", "min_ram"):
            if not isinstance(record.get(key), int) or isinstance(record.get(key), bool) or record[key] < 0:
                raise bad_request(f"Provided object does not match schema 'image': {record.get(key)!r} "
                                  f"is not valid under any of the given schemas (field {key})")
        if not isinstance(record.get("protected"), bool):
            raise bad_request("Provided object does not match schema 'image': 'protected' must be a boolean")
        name = record.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise bad_request("Provided object does not match schema 'image': 'name' is too long or not a string")

    def create(self, ctx, body: dict) -> dict:
        if not isinstance(body, dict):
            raise bad_request("Provided object does not match schema 'image': body must be an object")
        for key in body:
            if key in READ_ONLY:
                raise forbidden(f"Attribute '{key}' is read-only.")
            if key in RESERVED or key.startswith(RESERVED_PREFIX):
                raise forbidden(f"Attribute '{key}' is reserved.")
        image_id = body.get("id") or str(uuid.uuid4())
        try:
            image_id = str(uuid.UUID(str(image_id)))
        except ValueError:
            raise bad_request(f"Provided object does not match schema 'image': '{image_id}' is not a 'uuid'") from None
        ts = now()
        record = {
            "id": image_id, "name": body.get("name"), "status": "queued",
            "disk_format": body.get("disk_format"), "container_format": body.get("container_format"),
            "visibility": body.get("visibility", "shared"), "protected": body.get("protected", False),
            "min_disk": body.get("min_disk", 0), "min_ram": body.get("min_ram", 0),
            "owner": ctx["project_id"] if ctx else None, "size": None, "virtual_size": None,
            "checksum": None, "os_hash_algo": None, "os_hash_value": None,
            "os_hidden": bool(body.get("os_hidden", False)), "tags": list(body.get("tags", [])),
            "created_at": ts, "updated_at": ts, "properties": {},
        }
        for key, value in body.items():
            if key not in CORE and key != "os_hidden":
                if not isinstance(value, str):
                    raise bad_request(f"Provided object does not match schema 'image': {value!r} is not of "
                                      f"type 'string' (property {key})")
                record["properties"][key] = value
        self._check_formats(record)
        with self.store.lock:
            if image_id in self.images:
                raise LabError(409, f"Image with identifier {image_id} already exists!", kind="conflict")
            self.images[image_id] = record
            self.store.save()
        return dict(record)

    def update(self, ctx, image_id, changes: list) -> dict:
        """Apply a glance json-patch (op add/replace/remove on top-level paths)."""
        if not isinstance(changes, list):
            raise bad_request("Request body must be a JSON array of operation objects.")
        with self.store.lock:
            image = self.images.get(image_id)
            if image is None or not self.visible(ctx, image):
                raise not_found(f"No image found with ID {image_id}")
            if not (ctx is None or ctx.get("is_admin") or image["owner"] == ctx["project_id"]):
                raise forbidden("You are not permitted to modify this image.")
            updated = dict(image, properties=dict(image["properties"]), tags=list(image["tags"]))
            for change in changes:
                if not isinstance(change, dict) or change.get("op") not in ("add", "replace", "remove"):
                    raise bad_request('Operation objects must contain exactly one member named "add", '
                                      '"remove", or "replace".')
                path = change.get("path", "")
                key = path.lstrip("/")
                if not path.startswith("/") or not key or "/" in key:
                    raise bad_request(f"Invalid JSON pointer for this resource: '{path}'")
                if key in READ_ONLY or key == "id":
                    raise forbidden(f"Attribute '{key}' is read-only.")
                if key in RESERVED or key.startswith(RESERVED_PREFIX):
                    raise forbidden(f"Attribute '{key}' is reserved.")
                if change["op"] == "remove":
                    if key in updated["properties"]:
                        del updated["properties"][key]
                    elif key in CORE:
                        raise forbidden(f"Properties {key} cannot be removed.")
                    else:
                        raise LabError(409, f"Property {key} does not exist.", kind="conflict")
                    continue
                value = change.get("value")
                if key in CORE or key == "os_hidden":
                    if key in ("disk_format", "container_format") and image["status"] != "queued":
                        raise forbidden(f"Attribute {key} can be only replaced for a queued image.")
                    updated[key] = value
                else:
                    if not isinstance(value, str):
                        raise bad_request(f"Provided object does not match schema 'image': {value!r} "
                                          "is not of type 'string'")
                    updated["properties"][key] = value
            self._check_formats(updated)
            updated["updated_at"] = now()
            self.images[image_id] = updated
            self.store.save()
            return dict(updated)

    # -- deactivate / reactivate (admin or owner)
    def set_active(self, ctx, image_id, active: bool):
        with self.store.lock:
            image = self._owned(ctx, image_id, "deactivate" if not active else "reactivate")
            if image["status"] not in ("active", "deactivated"):
                raise forbidden(f"Not allowed to {'reactivate' if active else 'deactivate'} image in status "
                                f"'{image['status']}'")
            image["status"] = "active" if active else "deactivated"
            image["updated_at"] = now()
            self.store.save()

    def _owned(self, ctx, image_id, action):
        image = self.images.get(image_id)
        if image is None or not self.visible(ctx, image):
            raise not_found(f"No image found with ID {image_id}")
        if not (ctx is None or ctx.get("is_admin") or image["owner"] == ctx["project_id"]):
            raise forbidden(f"You are not authorized to {action} this image.")
        return image

    # -- members of shared images
    def add_member(self, ctx, image_id, member_id) -> dict:
        if not isinstance(member_id, str) or not member_id:
            raise bad_request("Member to be added not specified")
        with self.store.lock:
            image = self._owned(ctx, image_id, "add members to")
            if image["visibility"] != "shared":
                raise forbidden("Only shared images have members.")
            members = image.setdefault("members", {})
            if member_id in members:
                raise LabError(409, f"The given member {member_id} is already associated with image {image_id}.",
                               kind="conflict")
            ts = now()
            members[member_id] = {"status": "pending", "created_at": ts, "updated_at": ts}
            self.store.save()
            return self._member(image, member_id)

    def members(self, ctx, image_id) -> list[dict]:
        with self.store.lock:
            image = self.images.get(image_id)
            if image is None or not self.visible(ctx, image):
                raise not_found(f"No image found with ID {image_id}")
            if image["visibility"] != "shared":
                raise forbidden("Only shared images have members.")
            owner = ctx is None or ctx.get("is_admin") or image["owner"] == ctx["project_id"]
            return [self._member(image, m) for m in image.get("members", {})
                    if owner or m == ctx["project_id"]]

    def member(self, ctx, image_id, member_id) -> dict:
        for member in self.members(ctx, image_id):
            if member["member_id"] == member_id:
                return member
        raise not_found(f"Member {member_id} not found for image {image_id}")

    def set_member_status(self, ctx, image_id, member_id, status) -> dict:
        with self.store.lock:
            self.member(ctx, image_id, member_id)
            if ctx is not None and ctx["project_id"] != member_id:
                raise forbidden("You are not permitted to modify 'status' on this image member.")
            if status not in MEMBER_STATUSES:
                raise bad_request(f"Invalid status: {status}")
            image = self.images[image_id]
            image["members"][member_id].update(status=status, updated_at=now())
            self.store.save()
            return self._member(image, member_id)

    def remove_member(self, ctx, image_id, member_id):
        with self.store.lock:
            self.member(ctx, image_id, member_id)
            image = self._owned(ctx, image_id, "remove members of")
            del image["members"][member_id]
            self.store.save()

    @staticmethod
    def _member(image, member_id):
        m = image["members"][member_id]
        return {"image_id": image["id"], "member_id": member_id, "status": m["status"],
                "created_at": m["created_at"], "updated_at": m["updated_at"], "schema": "/v2/schemas/member"}

    def set_tag(self, ctx, image_id, tag, present=True):
        with self.store.lock:
            image = self.images.get(image_id)
            if image is None or not self.visible(ctx, image):
                raise not_found(f"No image found with ID {image_id}")
            if present and tag not in image["tags"]:
                image["tags"].append(tag)
            elif not present:
                if tag not in image["tags"]:
                    raise not_found(f"Tag {tag} not found.")
                image["tags"].remove(tag)
            image["updated_at"] = now()
            self.store.save()

    def delete(self, ctx, image_id):
        with self.store.lock:
            image = self.images.get(image_id)
            if image is None or not self.visible(ctx, image):
                raise not_found(f"No image found with ID {image_id}")
            if not (ctx is None or ctx.get("is_admin") or image["owner"] == ctx["project_id"]):
                raise forbidden("You are not permitted to delete this image.")
            if image["protected"]:
                raise forbidden(f"Image {image_id} is protected and cannot be deleted.")
            del self.images[image_id]
            self.store.save()
        self._remove_data(image_id)

    def _remove_data(self, image_id):
        for path in (self.data_path(image_id), self.data_path(image_id + ".part")):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    # -- data
    def upload(self, ctx, image_id, chunks) -> dict:
        """Stream ``chunks`` into the image: queued → saving → active (back to queued on failure)."""
        with self.store.lock:
            image = self.images.get(image_id)
            if image is None or not self.visible(ctx, image):
                raise not_found(f"No image found with ID {image_id}")
            if ctx is not None and not ctx.get("is_admin") and image["owner"] != ctx["project_id"]:
                raise forbidden("You are not permitted to upload data for this image.")
            if image["status"] != "queued":
                raise LabError(409, f"Image status transition from {image['status']} to saving is not allowed",
                                kind="conflict")
            if not image.get("disk_format") or not image.get("container_format"):
                raise bad_request("Properties disk_format, container_format must be set prior to saving data.")
            image["status"] = "saving"
            image["updated_at"] = now()
            self.store.save()
            name = image.get("name")
        if self.stuck is not None and self.stuck(name):   # lab/fault_injection.py: stays saving for ever
            for _ in chunks:
                pass
            with self.store.lock:
                return dict(self.images[image_id])
        part = self.data_path(image_id + ".part")
        md5, sha = hashlib.md5(), hashlib.sha512()
        size = 0
        try:
            with open(part, "wb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if size > self.size_cap:
                        raise LabError(413, f"Image exceeds the storage quota: the image size cap is "
                                             f"{self.size_cap} bytes.", kind="overLimit")
                    md5.update(chunk)
                    sha.update(chunk)
                    f.write(chunk)
            os.replace(part, self.data_path(image_id))
        except BaseException:
            with self.store.lock:
                image = self.images.get(image_id)
                if image is not None:
                    image["status"] = "queued"
                    self.store.save()
            self._remove_data(image_id)
            raise
        with self.store.lock:
            image = self.images.get(image_id)
            if image is None:  # deleted while uploading
                self._remove_data(image_id)
                raise LabError(410, "Image was deleted during the upload.")
            image.update(status="active", size=size, checksum=md5.hexdigest(), os_hash_algo="sha512",
                         os_hash_value=sha.hexdigest(), updated_at=now())
            image["virtual_size"] = virtual_size_of(self.data_path(image_id), image["disk_format"],
                                                    image["container_format"], size)
            self.store.save()
            return dict(image)

    def add_from_file(self, ctx, body: dict, path: Path) -> dict:
        """Create an image and fill it from a local file (the default image)."""
        record = self.create(ctx, body)
        return self.add_data_from_file(ctx, record["id"], path)

    def add_data_from_file(self, ctx, image_id, path):
        """Upload a local file as the data of an existing queued image."""
        def chunks():
            with open(path, "rb") as f:
                while data := f.read(1024 * 1024):
                    yield data
        return self.upload(ctx, image_id, chunks())

    def open_data(self, ctx, image_id):
        image = self.get(ctx, image_id)
        if image["status"] == "deactivated" and not (ctx is None or ctx.get("is_admin")):
            raise forbidden("The requested image has been deactivated. Image data download is forbidden.")
        if image["status"] != "active":
            return image, None
        return image, open(self.data_path(image_id), "rb")


def virtual_size_of(path, disk_format, container_format, size):
    """What glance's image-conversion/inspection would report; None when unknown."""
    if disk_format == "raw" and container_format == "bare":
        return size
    # vhd/ovf tarballs: glance's inspector does not look inside them, so like a real
    # glance the lab reports no virtual size (Cinder only finds out while converting).
    if disk_format == "qcow2":
        try:
            with open(path, "rb") as f:
                head = f.read(32)
            if head[:4] == b"QFI\xfb":
                return int.from_bytes(head[24:32], "big")
        except OSError:
            return None
    return None

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

"""Cinder v3 state and behaviour: volumes and snapshots as sparse raw files, status
transitions, messages.

creating (→ downloading when from an image) → available | error ; attaching → in-use ;
detaching → available ; deleting → gone. Creating from an image converts it with the
lab's image-to-volume (``conversion``): the reference converter, a known-wrong one, or real
Cinder (whose log of the volume is ``log_path(ID)``).

Snapshots: creating → available | error ; deleting → gone. A snapshot is a full sparse copy of
the volume's file (``snapshot-ID.raw``), so volumes made from it and the snapshot itself are
independent of the volume afterwards (cinder's generic copy semantics); the volume cannot be
deleted while it has snapshots unless ``cascade``. A snapshot of an in-use volume (``force``)
is taken with the guest paused through ``quiesce(volume_id)`` (QMP ``stop`` drains and
flushes QEMU's writes; the copy is crash-consistent, as a cinder backend's snapshot is).
"""

from __future__ import annotations

import contextlib
import os
import threading
import traceback
from pathlib import Path

from ..errors import LabError, bad_request, not_found
from ..util import new_id, now, sparse_copy

GIB = 1024 ** 3
GIGABYTES_QUOTA = 1000  # per project, like cinder's default quota: beyond it 413
SNAPSHOTS_QUOTA = 10    # cinder's default quota_snapshots per project
DEFAULT_TYPE_NAME = "__DEFAULT__"
DEFAULT_TYPE_ID = "5a6c7a2e-6a8b-4f0e-9d6e-6f1c3a9b2d10"
VOLUME_TYPES = (DEFAULT_TYPE_NAME, DEFAULT_TYPE_ID)       # the one type, by name or id
DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")
SNAPSHOTTABLE = ("available", "in-use")     # in-use only with force


def _true(value) -> bool | None:
    """cinder's strutils.bool_from_string(strict=True): a boolean or one of its spellings; None
    for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "t", "true", "on", "y", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "f", "false", "off", "n", "no"):
        return False
    return None


class InjectedFault(LabError):
    """A volume-error rule fired (lab/fault_injection.py): the volume fails with its message."""

    def __init__(self, message):
        super().__init__(500, message)


class VolumeBackend:
    def __init__(self, store, data_dir: Path, images, convert, log=print):
        """``images``: the ImageBackend; ``convert(image, image_path, dest, size_bytes, volume)`` fills dest."""
        self.store = store
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.images = images
        self.convert = convert
        self.log = log
        self.volumes = store.collection("volumes")
        self.messages = store.collection("volume_messages")
        self.snapshots = store.collection("volume_snapshots")
        # (volume_id) -> a context manager inside which the guest using the volume cannot write
        # (``compute.models.ComputeBackend.volume_quiesced``); None: nothing is ever attached.
        self.quiesce = None
        self.fault = None   # (volume name) -> user message of an injected failure, or None (lab/fault_injection.py)
        # A restarted lab: work that was under way did not finish; nothing is attached any more.
        with store.lock:
            for vol in list(self.volumes.values()):
                if vol["status"] in ("creating", "downloading"):
                    self._set_error(vol, "The lab stopped while the volume was being created.")
                elif vol["status"] in ("attaching", "detaching", "in-use", "reserved"):
                    vol["status"] = "available"
                    vol["attachments"] = []
                elif vol["status"] == "deleting":   # finish what was under way
                    self.path(vol["id"]).unlink(missing_ok=True)
                    del self.volumes[vol["id"]]
            for snap in list(self.snapshots.values()):    # cinder-volume's init_host for snapshots
                if snap["status"] == "creating":
                    snap.update(status="error", updated_at=now())
                    self.snapshot_path(snap["id"]).unlink(missing_ok=True)
                elif snap["status"] == "deleting":
                    self.snapshot_path(snap["id"]).unlink(missing_ok=True)
                    del self.snapshots[snap["id"]]
            store.save()
        for partial in self.data_dir.glob(".*.convert"):     # conversions cut short
            partial.unlink(missing_ok=True)
        for partial in self.data_dir.glob(".*.snapcopy"):    # snapshot copies cut short
            partial.unlink(missing_ok=True)

    def path(self, volume_id) -> Path:
        return self.data_dir / f"{volume_id}.raw"

    def snapshot_path(self, snapshot_id) -> Path:
        return self.data_dir / f"snapshot-{snapshot_id}.raw"

    def log_path(self, volume_id) -> Path:
        return self.data_dir / f"{volume_id}.cinder.log"

    # -- access
    def _visible(self, ctx, vol):
        return ctx is None or ctx.get("is_admin") or vol["project_id"] == ctx["project_id"]

    def get(self, ctx, volume_id) -> dict:
        with self.store.lock:
            vol = self.volumes.get(volume_id)
            if vol is None or not self._visible(ctx, vol):
                raise not_found(f"Volume {volume_id} could not be found.")
            return _copy(vol)

    def list(self, ctx, all_tenants=False) -> list[dict]:
        with self.store.lock:
            vols = [_copy(v) for v in self.volumes.values()
                    if (all_tenants and ctx.get("is_admin")) or v["project_id"] == ctx["project_id"]]
        vols.sort(key=lambda v: v["created_at"], reverse=True)
        return vols

    # -- create
    def create(self, ctx, body: dict) -> dict:
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute volume. Value: None. None is not of type 'object'")
        size = body.get("size")
        if isinstance(size, str) and size.strip().isdigit():
            size = int(size)
        image_ref = body.get("imageRef")
        snapshot = None
        if body.get("snapshot_id"):
            snapshot = self.get_snapshot(ctx, str(body["snapshot_id"]))
            if snapshot["status"] != "available":
                raise bad_request("Invalid snapshot: Originating snapshot status must be one of "
                                  "'available' values")
            if size is None:
                size = snapshot["size"]
        if size is None and not image_ref:
            raise bad_request("Invalid input received: Size must be specified when creating a volume.")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise bad_request(f"Invalid input for field/attribute size. Value: {body.get('size')}. "
                              f"{body.get('size')!r} is not valid under any of the given schemas")
        for key in ("name", "description"):
            if body.get(key) is not None and (not isinstance(body[key], str) or len(body[key]) > 255):
                raise bad_request(f"Invalid input for field/attribute {key}. Value: {body[key]!r}.")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise bad_request("Invalid input for field/attribute metadata. Value: {metadata!r}.")
        if snapshot is not None and size < snapshot["size"]:
            raise bad_request(f"Invalid input received: Volume size '{size}'GB cannot be smaller than the "
                              f"snapshot size {snapshot['size']}GB. They must be >= original snapshot size.")
        if body.get("source_volid"):
            self.get(ctx, str(body["source_volid"]))       # 404 first, as cinder's
            raise bad_request("Invalid input received: the lab does not clone volumes (source_volid).")
        if body.get("backup_id"):
            raise bad_request("Invalid input received: the lab does not support backup_id.")
        volume_type = body.get("volume_type")
        if volume_type is not None and volume_type not in VOLUME_TYPES:
            raise not_found(f"Volume type with name {volume_type} could not be found.")
        image = None
        if image_ref and snapshot is None:
            image = self.images.find(str(image_ref))
            if image is None or not self.images.visible(ctx, image):
                raise bad_request("Invalid image identifier or unable to access requested image.")
            if image["status"] != "active":
                raise bad_request(f"Invalid input received: Image {image_ref} is not active.")
            if image["min_disk"] and image["min_disk"] > size:
                raise bad_request(f"Invalid input received: Volume size {size}GB cannot be smaller than "
                                  f"the image minDisk size {image['min_disk']}GB.")
            if image["size"] and image["size"] > size * GIB:
                raise bad_request(f"Invalid input received: Size of specified image "
                                  f"{-(-image['size'] // GIB)}GB is larger than volume size {size}GB.")
            if image.get("virtual_size") and image["virtual_size"] > size * GIB:
                raise bad_request(f"Invalid input received: Image virtual size is "
                                  f"{-(-image['virtual_size'] // GIB)}GB and doesn't fit in a volume of size {size}GB.")
        ts = now()
        vol = {
            "id": new_id(), "name": body.get("name"), "description": body.get("description"),
            "size": size, "status": "creating", "user_id": ctx["user_id"],
            "project_id": ctx["project_id"], "created_at": ts, "updated_at": None,
            "bootable": False, "attachments": [], "metadata": dict(metadata),
            "availability_zone": body.get("availability_zone") or "nova",
            "volume_type": DEFAULT_TYPE_NAME,
            "multiattach": bool(body.get("multiattach", False)),
            "image_id": image["id"] if image else None, "volume_image_metadata": None,
            "snapshot_id": snapshot["id"] if snapshot else None,
        }
        if snapshot is not None:    # cinder copies the snapshot's glance metadata to the volume
            vol.update(bootable=snapshot["bootable"], volume_image_metadata=snapshot["volume_image_metadata"])
        with self.store.lock:
            used = sum(v["size"] for v in self.volumes.values() if v["project_id"] == ctx["project_id"])
            if used + size > GIGABYTES_QUOTA:
                raise LabError(413, "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot "
                                     f"exceeds allowed gigabytes quota. Requested {size}G, quota is "
                                     f"{GIGABYTES_QUOTA}G and {used}G has been consumed.", kind="overLimit")
            self.volumes[vol["id"]] = vol
            self.store.save()
            # The answer shows the volume as it was created, as cinder-api's does: the worker
            # may finish an empty volume before this request's response is written.
            created = _copy(vol)
        thread = threading.Thread(target=self._build, args=(vol["id"], image, snapshot), daemon=True,
                                  name=f"volume-{vol['id'][:8]}")
        thread.start()
        return created

    def _build(self, volume_id, image, snapshot=None):
        path = self.path(volume_id)
        with self.store.lock:
            record = _copy(self.volumes[volume_id])
            size = record["size"] * GIB
        try:
            injected = self.fault(self.volumes[volume_id]["name"]) if self.fault else None
            if injected:
                raise InjectedFault(injected)
            if snapshot is not None:     # the snapshot's bytes, grown to the volume's size
                sparse_copy(self.snapshot_path(snapshot["id"]), path, size)
            else:
                with open(path, "wb") as f:
                    f.truncate(size)
            if image is not None:
                self._update(volume_id, status="downloading")
                self.convert(image, self.images.data_path(image["id"]), path, size, record)
                keys = ("checksum", "container_format", "disk_format", "min_disk", "min_ram", "size")
                meta = {k: str(image[k]) for k in keys}
                meta.update(image_id=image["id"], image_name=image["name"] or "")
                meta.update({k: str(v) for k, v in image.get("properties", {}).items()})
                self._update(volume_id, volume_image_metadata=meta, bootable=True)
            self._update(volume_id, status="available")
        except Exception as error:
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            if not isinstance(error, (OSError, ValueError, LabError)):
                traceback.print_exc()
            with self.store.lock:
                vol = self.volumes.get(volume_id)
                if vol is not None:
                    self._set_error(vol, detail, action="copy image to volume" if image else
                                    "create volume from snapshot" if snapshot else "create volume")
                    self.store.save()
            self.log(f"volume {volume_id}: error: {detail}")

    def _set_error(self, vol, detail, action="create volume"):
        vol["status"] = "error"
        vol["updated_at"] = now()
        msg_id = new_id()
        self.messages[msg_id] = {
            "id": msg_id, "resource_uuid": vol["id"], "resource_type": "VOLUME",
            "project_id": vol["project_id"], "event_id": "VOLUME_VOLUME_005_002",
            "message_level": "ERROR", "user_message": f"{action}: {detail}",
            "created_at": now(), "request_id": "req-" + new_id(),
        }

    def _update(self, volume_id, **changes):
        with self.store.lock:
            vol = self.volumes.get(volume_id)
            if vol is None:
                raise LabError(410, f"Volume {volume_id} was deleted")
            vol.update(changes)
            vol["updated_at"] = now()
            self.store.save()

    def messages_for(self, ctx, resource_uuid=None):
        with self.store.lock:
            msgs = [dict(m) for m in self.messages.values()
                    if (ctx.get("is_admin") or m["project_id"] == ctx["project_id"])
                    and (resource_uuid is None or m["resource_uuid"] == resource_uuid)]
        return sorted(msgs, key=lambda m: m["created_at"])

    # -- delete
    def delete(self, ctx, volume_id, force=False, cascade=False):
        with self.store.lock:
            vol = self.volumes.get(volume_id)
            if vol is None or not self._visible(ctx, vol):
                raise not_found(f"Volume {volume_id} could not be found.")
            snaps = [s for s in self.snapshots.values() if s["volume_id"] == volume_id]
            if cascade and any(s["status"] not in ("available", "error") for s in snaps):
                raise bad_request("Invalid volume: Snapshot of volume must be available or error "
                                  "to be deleted with cascade.")
            if vol["attachments"] or (vol["status"] not in DELETABLE and not force) or (snaps and not cascade):
                raise bad_request("Invalid volume: Volume status must be available or error or "
                                  "error_restoring or error_extending or error_managing and must not "
                                  "be migrating, attached, belong to a group, have snapshots, awaiting "
                                  "a transfer, or be disassociated from snapshots after volume transfer.")
            vol["status"] = "deleting"
            for snap in snaps:
                snap.update(status="deleting", updated_at=now())
            self.store.save()

        def finish():
            for snap in snaps:
                self.snapshot_path(snap["id"]).unlink(missing_ok=True)
            try:
                self.path(volume_id).unlink()
            except FileNotFoundError:
                pass
            with self.store.lock:
                for snap in snaps:
                    self.snapshots.pop(snap["id"], None)
                self.volumes.pop(volume_id, None)
                self.store.save()
        threading.Thread(target=finish, daemon=True).start()

    # -- actions
    def reset_status(self, ctx, volume_id, status):
        if not ctx.get("is_admin"):
            raise LabError(403, "Policy doesn't allow volume_extension:volume_admin_actions:reset_status "
                                 "to be performed.", kind="forbidden")
        self.get(ctx, volume_id)
        self._update(volume_id, status=status)

    def set_bootable(self, ctx, volume_id, bootable):
        self.get(ctx, volume_id)
        self._update(volume_id, bootable=bool(bootable))

    # -- cinder's own attach bookkeeping (os-reserve, os-attach, ... as a non-nova client calls them)
    def _locked(self, ctx, volume_id):
        vol = self.volumes.get(volume_id)
        if vol is None or not self._visible(ctx, vol):
            raise not_found(f"Volume {volume_id} could not be found.")
        return vol

    def _transition(self, ctx, volume_id, allowed, status, **changes):
        with self.store.lock:
            vol = self._locked(ctx, volume_id)
            if vol["status"] not in allowed:
                raise bad_request(f"Invalid volume: Volume status must be {' or '.join(allowed)}, "
                                  f"but current status is: {vol['status']}.")
            vol.update(changes, status=status, updated_at=now())
            self.store.save()

    def action_reserve(self, ctx, volume_id):
        self._transition(ctx, volume_id, ("available",), "attaching")

    def action_unreserve(self, ctx, volume_id):
        self._transition(ctx, volume_id, ("attaching",), "available")

    def action_attach(self, ctx, volume_id, instance_uuid, mountpoint):
        attachment = {"id": volume_id, "attachment_id": new_id(), "volume_id": volume_id,
                      "server_id": instance_uuid, "host_name": None, "device": mountpoint, "attached_at": now()}
        self._transition(ctx, volume_id, ("available", "attaching"), "in-use", attachments=[attachment])

    def action_detach(self, ctx, volume_id, attachment_id=None):
        with self.store.lock:
            vol = self._locked(ctx, volume_id)
            if vol["status"] not in ("in-use", "detaching") or not vol["attachments"]:
                raise bad_request(f"Invalid volume: Volume {volume_id} is not attached.")
            if attachment_id and all(a["attachment_id"] != attachment_id for a in vol["attachments"]):
                raise not_found(f"Volume attachment {attachment_id} could not be found.")
            if any(a.get("host_name") == "lab" for a in vol["attachments"]):
                raise bad_request("Invalid volume: Volume is attached to a server; detach it through nova.")
            vol.update(status="available", attachments=[], updated_at=now())
            self.store.save()

    def extend(self, ctx, volume_id, new_size):
        """``os-extend``: a detached volume grows (sparse file); shrinking is refused."""
        if isinstance(new_size, str) and new_size.strip().isdigit():
            new_size = int(new_size)
        if not isinstance(new_size, int) or isinstance(new_size, bool):
            raise bad_request(f"Invalid input for field/attribute new_size. Value: {new_size}. "
                              f"{new_size!r} is not valid under any of the given schemas")
        with self.store.lock:
            vol = self._locked(ctx, volume_id)
            if vol["status"] != "available":
                raise bad_request(f"Invalid volume: Volume status must be available to extend, "
                                  f"but current status is: {vol['status']}.")
            if new_size <= vol["size"]:
                raise bad_request(f"Invalid input received: New size for extend must be greater than "
                                  f"current size. (current: {vol['size']}, extended: {new_size}).")
            used = sum(v["size"] for v in self.volumes.values() if v["project_id"] == vol["project_id"])
            if used - vol["size"] + new_size > GIGABYTES_QUOTA:
                raise LabError(413, "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds "
                                    "allowed gigabytes quota.", kind="overLimit")
            with open(self.path(volume_id), "r+b") as f:
                f.truncate(new_size * GIB)
            vol.update(size=new_size, updated_at=now())
            self.store.save()

    def update_fields(self, ctx, volume_id, fields):
        self.get(ctx, volume_id)
        allowed = {k: v for k, v in fields.items() if k in ("name", "description", "metadata")}
        self._update(volume_id, **allowed)
        return self.get(ctx, volume_id)

    # -- used by compute (nova → cinder attachments)
    def reserve(self, ctx, volume_id, server_id):
        with self.store.lock:
            vol = self.volumes.get(volume_id)
            if vol is None or not self._visible(ctx, vol):
                raise not_found(f"Volume {volume_id} could not be found.")
            if vol["status"] != "available":
                raise bad_request(f"Invalid volume: volume {volume_id} status must be available, "
                                  f"but current status is: {vol['status']}.")
            vol["status"] = "attaching"
            vol["updated_at"] = now()
            self.store.save()
            return _copy(vol)

    def attached(self, volume_id, server_id, device, attachment_id):
        with self.store.lock:
            vol = self.volumes[volume_id]
            vol["attachments"] = [{
                "id": volume_id, "attachment_id": attachment_id, "volume_id": volume_id,
                "server_id": server_id, "host_name": "lab", "device": device, "attached_at": now(),
            }]
            vol["status"] = "in-use"
            vol["updated_at"] = now()
            self.store.save()

    def unreserve(self, volume_id):
        with self.store.lock:
            vol = self.volumes.get(volume_id)
            if vol is not None:
                vol["status"] = "available"
                vol["attachments"] = []
                vol["updated_at"] = now()
                self.store.save()

    def begin_detaching(self, volume_id):
        self._update(volume_id, status="detaching")


    # -- snapshots
    def get_snapshot(self, ctx, snapshot_id) -> dict:
        with self.store.lock:
            snap = self.snapshots.get(snapshot_id)
            if snap is None or not self._visible(ctx, snap):
                raise not_found(f"Snapshot {snapshot_id} could not be found.")
            return _copy_snapshot(snap)

    def list_snapshots(self, ctx, all_tenants=False) -> list[dict]:
        with self.store.lock:
            snaps = [_copy_snapshot(s) for s in self.snapshots.values()
                     if (all_tenants and ctx.get("is_admin")) or s["project_id"] == ctx["project_id"]]
        snaps.sort(key=lambda s: s["created_at"], reverse=True)
        return snaps

    def create_snapshot(self, ctx, body: dict) -> dict:
        """cinder's snapshot create: the volume must be available, or in-use with ``force``."""
        if not isinstance(body, dict):
            raise bad_request("Missing required element 'snapshot' in request body.")
        volume_id = body.get("volume_id")
        force = _true(body.get("force", False))
        if force is None:
            raise bad_request(f"Invalid value '{body.get('force')}' for force. Accepted values are "
                              "'1', 't', 'true', 'on', 'y', 'yes', '0', 'f', 'false', 'off', 'n', 'no'.")
        name = body.get("name", body.get("display_name"))
        description = body.get("description", body.get("display_description"))
        for key, value in (("name", name), ("description", description)):
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise bad_request(f"Invalid input for field/attribute {key}. Value: {value!r}.")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise bad_request(f"Invalid input for field/attribute metadata. Value: {metadata!r}.")
        with self.store.lock:
            vol = self.volumes.get(str(volume_id)) if volume_id is not None else None
            if vol is None or not self._visible(ctx, vol):
                raise not_found(f"Volume {volume_id} could not be found.")
            if vol["status"] not in SNAPSHOTTABLE or (vol["status"] == "in-use" and not force):
                raise bad_request(f"Invalid volume: Volume {volume_id} status must be available, but "
                                  f"current status is: {vol['status']}.")
            if sum(1 for s in self.snapshots.values() if s["project_id"] == ctx["project_id"]) >= SNAPSHOTS_QUOTA:
                raise LabError(413, f"SnapshotLimitExceeded: Maximum number of snapshots allowed "
                                    f"({SNAPSHOTS_QUOTA}) exceeded", kind="overLimit")
            snap = {
                "id": new_id(), "name": name, "description": description, "volume_id": vol["id"],
                "size": vol["size"], "status": "creating", "progress": "0%",
                "project_id": vol["project_id"], "user_id": ctx["user_id"], "created_at": now(),
                "updated_at": None, "metadata": dict(metadata), "bootable": vol["bootable"],
                "volume_image_metadata": vol.get("volume_image_metadata"),
                "in_use": vol["status"] == "in-use",
            }
            self.snapshots[snap["id"]] = snap
            self.store.save()
            created = _copy_snapshot(snap)
        threading.Thread(target=self._take_snapshot, args=(snap["id"], vol["id"]), daemon=True,
                         name=f"snapshot-{snap['id'][:8]}").start()
        return created

    def _take_snapshot(self, snapshot_id, volume_id):
        dest = self.snapshot_path(snapshot_id)
        partial = self.data_dir / f".{snapshot_id}.snapcopy"
        try:
            quiet = self.quiesce(volume_id) if self.quiesce else contextlib.nullcontext()
            with quiet:
                sparse_copy(self.path(volume_id), partial, os.path.getsize(self.path(volume_id)))
            os.replace(partial, dest)
        except Exception as error:
            partial.unlink(missing_ok=True)
            if not isinstance(error, (OSError, LabError)):
                traceback.print_exc()
            self.log(f"snapshot {snapshot_id}: error: {str(error).splitlines()[0] if str(error) else error}")
            self._update_snapshot(snapshot_id, status="error")
            return
        with self.store.lock:
            if snapshot_id not in self.snapshots:       # deleted with its volume meanwhile
                dest.unlink(missing_ok=True)
                return
        self._update_snapshot(snapshot_id, status="available", progress="100%")

    def _update_snapshot(self, snapshot_id, **changes):
        with self.store.lock:
            snap = self.snapshots.get(snapshot_id)
            if snap is None:
                return
            snap.update(changes, updated_at=now())
            self.store.save()

    def update_snapshot(self, ctx, snapshot_id, fields):
        if not isinstance(fields, dict) or not fields:
            raise bad_request("Missing required element 'snapshot' in request body.")
        changes = {}
        for key, alias in (("name", "display_name"), ("description", "display_description")):
            for k in (key, alias):
                if k in fields:
                    value = fields[k]
                    if value is not None and (not isinstance(value, str) or len(value) > 255):
                        raise bad_request(f"Invalid input for field/attribute {key}. Value: {value!r}.")
                    changes[key] = value
        unknown = set(fields) - {"name", "display_name", "description", "display_description"}
        if unknown:
            raise bad_request("Invalid input for field/attribute snapshot. Additional properties are not "
                              f"allowed ({', '.join(repr(k) for k in sorted(unknown))} was unexpected)")
        self.get_snapshot(ctx, snapshot_id)
        self._update_snapshot(snapshot_id, **changes)
        return self.get_snapshot(ctx, snapshot_id)

    def delete_snapshot(self, ctx, snapshot_id):
        with self.store.lock:
            snap = self.snapshots.get(snapshot_id)
            if snap is None or not self._visible(ctx, snap):
                raise not_found(f"Snapshot {snapshot_id} could not be found.")
            if snap["status"] not in ("available", "error"):
                raise bad_request("Invalid snapshot: Volume Snapshot status must be available or error "
                                  "and must not be part of a group.")
            snap.update(status="deleting", updated_at=now())
            self.store.save()

        def finish():
            self.snapshot_path(snapshot_id).unlink(missing_ok=True)
            with self.store.lock:
                self.snapshots.pop(snapshot_id, None)
                self.store.save()
        threading.Thread(target=finish, daemon=True).start()

    def reset_snapshot_status(self, ctx, snapshot_id, status):
        if not ctx.get("is_admin"):
            raise LabError(403, "Policy doesn't allow volume_extension:snapshot_admin_actions:reset_status "
                                "to be performed.", kind="forbidden")
        if status not in ("available", "error", "creating", "deleting", "error_deleting"):
            raise bad_request(f"Invalid input received: Invalid snapshot status: {status}.")
        self.get_snapshot(ctx, snapshot_id)
        self._update_snapshot(snapshot_id, status=status)

    def snapshot_metadata(self, ctx, snapshot_id, metadata=None, *, replace=False, delete_key=None):
        """The ``/snapshots/ID/metadata`` family: read (no arguments), merge, replace or delete a key."""
        if metadata is not None and (not isinstance(metadata, dict) or not all(
                isinstance(k, str) and 0 < len(k) <= 255 and isinstance(v, str) and len(v) <= 255
                for k, v in metadata.items())):
            raise bad_request("Invalid input for field/attribute metadata. Value: "
                              f"{metadata!r}. Keys and values must be strings of at most 255 characters.")
        with self.store.lock:
            snap = self.snapshots.get(snapshot_id)
            if snap is None or not self._visible(ctx, snap):
                raise not_found(f"Snapshot {snapshot_id} could not be found.")
            if delete_key is not None:
                if delete_key not in snap["metadata"]:
                    raise not_found(f"Snapshot {snapshot_id} has no metadata with key {delete_key}.")
                del snap["metadata"][delete_key]
            elif metadata is not None:
                snap["metadata"] = dict(metadata) if replace else dict(snap["metadata"], **metadata)
            else:
                return dict(snap["metadata"])
            snap["updated_at"] = now()
            self.store.save()
            return dict(snap["metadata"])


def _copy_snapshot(snap):
    out = dict(snap)
    out["metadata"] = dict(snap["metadata"])
    return out


def _copy(vol):
    out = dict(vol)
    out["attachments"] = [dict(a) for a in vol["attachments"]]
    out["metadata"] = dict(vol["metadata"])
    return out


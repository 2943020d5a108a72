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

"""The Cinder worker: upstream Cinder's volume-from-image code in a process of its own.

Started by ``lab.volume.cinder.CinderWorker`` as ``python -m
xen_vhd_tempest.lab.volume.cinder_worker --config-file CINDER_CONF`` with the Cinder under
test first on ``sys.path``. It imports Cinder once (seconds), then serves one request per
line on stdin, answering one JSON line each on the protocol fd (the original stdout; fd 1 is
pointed at stderr so nothing Cinder or a child prints can corrupt the protocol).

A ``create`` request runs what cinder-volume runs for ``volume create --image``: the create
flow's ``CreateVolumeFromSpecTask._create_from_image`` (virtual size checks, free space,
``TemporaryImages.fetch`` with the image checks, ``qemu_img_info``, ``copy_image_to_volume``)
with a driver whose ``copy_image_to_volume`` is the generic driver's after attaching: Cinder's
``image_utils.fetch_to_raw`` onto the volume's file. Glance is Cinder's own
``GlanceImageService`` over a client that serves the lab's image record (as glanceclient's
schema-based model) and the lab's image file. Database and messages are recorded in memory:
the lab keeps the volume's state.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time
import traceback

PROTOCOL = 1
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s [%(volume)s] %(message)s"


# -- the pieces Cinder is handed ------------------------------------------------------------------
class LabGlanceClient:
    """What ``GlanceImageService`` calls (``GlanceClientWrapper.call``), from the lab's image."""

    def __init__(self, images: dict, schema: dict):
        import warlock
        from glanceclient.v2 import schemas
        self.schema = schemas.Schema(schema)
        self.model = warlock.model_factory(schema, base_class=schemas.SchemaBasedModel)
        self.images = images        # id -> (glance v2 view, path of the image data)

    def call(self, context, method, *args, **kwargs):
        if method == "get" and kwargs.get("controller") == "schemas":
            return self.schema
        image_id = args[0]
        if image_id not in self.images:
            from glanceclient import exc
            raise exc.HTTPNotFound(f"No image found with ID {image_id}")
        view, path = self.images[image_id]
        if method == "get":
            return self.model(view)
        if method == "data":
            return _chunks(path)
        raise NotImplementedError(f"the lab's glance for Cinder has no {method!r} call")


def _chunks(path, size=1 << 20):
    with open(path, "rb") as f:
        while True:
            chunk = f.read(size)
            if not chunk:
                return
            yield chunk


class LabDb:
    """The two glance-metadata calls of the create flow, kept in memory."""

    def __init__(self):
        self.glance_metadata: dict = {}

    def volume_glance_metadata_bulk_create(self, context, volume_id, metadata):
        self.glance_metadata.setdefault(volume_id, {}).update({k: str(v) for k, v in metadata.items()})

    def volume_glance_metadata_get(self, context, volume_id):
        return self.glance_metadata.get(volume_id, {})

    def volume_glance_metadata_delete_by_volume(self, context, volume_id):
        self.glance_metadata.pop(volume_id, None)


class LabMessages:
    """``message.api.API.create`` without a database: the user message Cinder would store."""

    def __init__(self):
        self.created: list[str] = []

    def create(self, context, action, resource_type=None, resource_uuid=None, exception=None, detail=None,
               level="ERROR"):
        from cinder.message import message_field
        detail_id = message_field.translate_detail_id(exception, detail)
        self.created.append(f"{message_field.translate_action(action[0])}: "
                            f"{message_field.translate_detail(detail_id)}")


class LabFileDriver:
    """A volume driver whose volumes are the lab's sparse files. ``copy_image_to_volume`` is
    ``BaseVD._copy_image_data_to_volume`` with the attach step replaced by the file's path."""

    initialized = True
    capabilities: dict = {}

    def __init__(self, path, blocksize):
        self.path = path
        self.blocksize = blocksize

    def clone_image(self, context, volume, image_location, image_meta, image_service):
        return None, False

    def create_volume(self, volume):
        with open(self.path, "ab") as f:
            f.truncate(volume.size * 1024 ** 3)
        return None

    def copy_image_to_volume(self, context, volume, image_service, image_id, disable_sparse=False):
        from cinder.image import image_utils
        image_utils.fetch_to_raw(context, image_service, image_id, self.path, self.blocksize,
                                 size=volume.size, disable_sparse=disable_sparse)

    def extend_volume(self, volume, new_size):
        self.create_volume(volume)


# -- requests -------------------------------------------------------------------------------------
class Worker:
    def __init__(self):
        from cinder.image import image_utils  # noqa: F401,I001  (before glance: they import each other)
        from cinder.image import glance
        from cinder.volume.flows.manager import create_volume
        self.create_volume = create_volume
        self.glance = glance

    def create(self, req):
        """One volume from one image; returns what the lab records."""
        from cinder import context, objects
        self.messages = []
        ctx = context.RequestContext(user_id=req["user_id"], project_id=req["project_id"], auth_token="lab",
                                     is_admin=False)
        volume = objects.Volume(context=ctx, id=req["volume_id"], size=req["size_gb"], host="lab@lab#lab",
                                encryption_key_id=None, consistencygroup_id=None, group_id=None,
                                bootable=False, status="creating", cluster_name=None)
        volume.save = lambda: volume.obj_reset_changes()      # the lab keeps the volume's record
        image_id = req["image"]["id"]
        service = self.glance.GlanceImageService(
            client=LabGlanceClient({image_id: (req["image"], req["image_path"])}, req["image_schema"]))
        db, messages = LabDb(), LabMessages()
        blocksize = req.get("blocksize", "1M")      # volume_dd_blocksize's default (used without qemu-img)
        task = self.create_volume.CreateVolumeFromSpecTask(None, db, LabFileDriver(req["dest"], blocksize))
        task._message = messages
        try:
            image_meta = service.show(ctx, image_id)
            task._create_from_image(ctx, volume, (None, None), image_id, image_meta, service)
        finally:
            self.messages = messages.created
        return {"glance_metadata": db.glance_metadata.get(req["volume_id"], {}), "bootable": bool(volume.bootable)}


def failure(error: BaseException) -> dict:
    """Cinder's exception, and the command under it when a process failed."""
    out = {"error": str(error).strip() or type(error).__name__, "exception": type(error).__name__}
    seen, cause = set(), error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if hasattr(cause, "cmd") and hasattr(cause, "exit_code"):       # processutils.ProcessExecutionError
            out.update(command=cause.cmd, exit_code=cause.exit_code, stderr=(cause.stderr or "").strip(),
                       stdout=(cause.stdout or "").strip(), function=_cinder_caller(cause.__traceback__))
            break
        cause = cause.__cause__ or cause.__context__
    return out


def _cinder_caller(tb) -> str | None:
    """The innermost Cinder function (not its execute wrapper) that ran the failing command."""
    name = None
    for frame, _ in traceback.walk_tb(tb):
        module = frame.f_globals.get("__name__", "")
        if module.startswith("cinder.") and module != "cinder.utils":
            name = frame.f_code.co_name
    return name


class VolumeLog(logging.Handler):
    """Everything logged while one request runs goes to that volume's log file."""

    def __init__(self, path, volume_id):
        super().__init__(logging.DEBUG)
        self.file = logging.FileHandler(path)
        self.file.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
        self.volume = volume_id

    def emit(self, record):
        record.volume = self.volume
        self.file.emit(record)

    def close(self):
        self.file.close()
        super().close()


def serve(config_file, proto_in, proto_out):
    from oslo_config import cfg
    from oslo_log import log
    t0 = time.monotonic()
    try:
        # cinder-volume's start-up (cinder.cmd.volume): eventlet first, then options, objects.
        from cinder import monkey_patch  # noqa: I001  (eventlet's patching before the rest)
        monkey_patch.patch()
        import cinder
        from cinder import objects, utils, version
        from cinder.common import config  # noqa: F401
        objects.register_all()
        log.register_options(cfg.CONF)
        cfg.CONF(["--config-file", config_file], project="cinder", version=version.version_string())
        log.setup(cfg.CONF, "cinder")
        from oslo_privsep import priv_context
        # The config's helper_command (privsep-helper itself: we are root) wins over this prefix.
        priv_context.init(root_helper=shlex.split(utils.get_root_helper()))
        worker = Worker()
    except Exception as error:     # a tree that is not Cinder, or one that does not import
        _send(proto_out, {"ready": False, "error": f"{type(error).__name__}: {error}",
                          "traceback": traceback.format_exc()})
        return 1
    _send(proto_out, {"ready": True, "protocol": PROTOCOL, "cinder": version.version_string(),
                      "path": os.path.dirname(cinder.__file__), "seconds": round(time.monotonic() - t0, 3),
                      "pid": os.getpid()})
    root = logging.getLogger()
    for line in proto_in:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except ValueError as error:
            _send(proto_out, {"ok": False, "error": f"bad request: {error}", "exception": "ProtocolError"})
            continue
        if req.get("op") == "stop":
            _send(proto_out, {"ok": True})
            return 0
        if req.get("op") != "create":
            _send(proto_out, {"ok": False, "error": f"unknown op {req.get('op')!r}", "exception": "ProtocolError"})
            continue
        handler = VolumeLog(req["log"], req["volume_id"])
        root.addHandler(handler)
        start = time.monotonic()
        try:
            result = worker.create(req)
            reply = dict(ok=True, **result)
        except Exception as error:
            logging.getLogger("cinder.lab").exception("volume %s: create from image failed", req["volume_id"])
            reply = dict(ok=False, **failure(error))
        finally:
            root.removeHandler(handler)
            handler.close()
        reply.update(seconds=round(time.monotonic() - start, 3), messages=worker.messages)
        _send(proto_out, reply)
    return 0


def _send(out, obj):
    out.write(json.dumps(obj) + "\n")
    out.flush()


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="cinder_worker")
    parser.add_argument("--config-file", required=True)
    args = parser.parse_args(argv)
    proto_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                  # stray prints (Cinder, children) go to the worker's log
    sys.stdout = sys.stderr
    return serve(args.config_file, sys.stdin, proto_out)


if __name__ == "__main__":
    sys.exit(main())

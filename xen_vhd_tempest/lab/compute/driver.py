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

"""The compute driver: servers as QEMU guests (``lab.hypervisor.Guest``) with XenServer's disks.

Nova's models (``compute.models``) call it to spawn, destroy, attach and back up servers; it
keeps what it knows per server in an :class:`Instance`. What XenServer did to the disks lives
beside it: the import of vhd/ovf images (``xenserver_images``) and ``createBackup``'s chain
export (``xenserver_backup``). The instance disk is the image's raw disk grown to the flavor's
root size (the guest sees the larger disk).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .. import addresses
from ..errors import Fault
from ..guest import disk as guest_disk
from ..guest import make_config_drive
from ..hypervisor import Guest, GuestError
from ..util import sparse_copy
from .xenserver_backup import export_backup
from .xenserver_images import ImageCache

GIB = 1024 ** 3


@dataclass
class Instance:
    """What the driver keeps about one server's disks."""
    flavor_size: int
    image_id: str | None = None
    image_size: int = 0
    image_members: list = field(default_factory=list)   # the image's chain (N.vhd), newest first
    host_keys: list = field(default_factory=list)


class XenServerDriver:
    """Servers as QEMU guests with XenServer disk semantics (see the module docstring)."""

    def __init__(self, config, log=print):
        self.config = config
        self.log = log
        self.instances_dir = config.path("instances")
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self.images = ImageCache(config.path("cache", "images"))
        # QEMU's QMP socket path must stay under 108 bytes: guests run in a short directory.
        self.run_root = self.instances_dir if len(str(self.instances_dir)) <= 40 else \
            Path(tempfile.mkdtemp(prefix="xvtlab-"))
        self.guests: dict[str, Guest] = {}
        self.instances: dict[str, Instance] = {}
        self.addresses: dict[str, tuple[str, int]] = {}   # server id -> where its SSH is forwarded from
        self.consoles: dict[str, str] = {}                # server id -> last console text (after stop)
        self._lock = threading.RLock()
        self.faults = None            # lab/fault_injection.py: guests that never boot

    # -- addresses
    def allocate_address(self, server_id) -> addresses.GuestAddress:
        """The loopback address the server's SSH is forwarded from (see ``lab.addresses``); without
        root it is ``127.0.0.1`` and a high port the address view cannot show (see ``lab env``)."""
        host, port = addresses.allocate(first=self.config.guest_address_base, seed=str(self.config.state_dir))
        with self._lock:
            self.addresses[server_id] = (host, port)
        return addresses.GuestAddress(host, port, addresses.mac_for(host, port))

    def release_address(self, server_id):
        with self._lock:
            addr = self.addresses.pop(server_id, None)
        if addr is not None:
            addresses.release(addr)

    # -- servers
    def spawn(self, server, *, image, image_path, root_volume, public_keys):
        sid = server["id"]
        workdir = self.instances_dir / sid
        workdir.mkdir(parents=True, exist_ok=True)
        instance = Instance(flavor_size=max(server["flavor"]["disk"], 0) * GIB)
        if root_volume is None:
            prepared = self.images.prepare(image, image_path)
            if instance.flavor_size and prepared.size > instance.flavor_size:
                raise Fault(f"Flavor's disk is too small for requested image: image virtual size "
                            f"{prepared.size} > flavor root disk {instance.flavor_size} bytes")
            if not instance.flavor_size:
                instance.flavor_size = prepared.size
            disk = workdir / "disk.raw"
            sparse_copy(prepared.raw, disk, instance.flavor_size)   # the instance disk, grown to the flavor size
            instance.image_id, instance.image_size = image["id"], prepared.size
            instance.image_members = prepared.members
            overlay = True
        else:
            disk = Path(root_volume)
            overlay = False
        drive = make_config_drive(workdir / "config-drive.img", uuid=sid, hostname=server["hostname"],
                                  public_keys=public_keys)
        instance.host_keys = guest_disk.host_keys(disk)
        host, port = self.addresses[sid]
        guest_class = Guest
        variant = self.faults.guest_variant(server["name"]) if self.faults else None
        if variant:
            from ..fault_injection import broken_guest_class
            guest_class = broken_guest_class(variant)
            self.log(f"server {sid}: fault injected: the guest will not boot ({variant})")
        guest = guest_class(f"lab-{sid[:8]}", disk, workdir=self.run_root / sid[:8], overlay=overlay,
                            memory_mb=self.config.guest_memory_mb, config_drive=drive,
                            ssh_host=host, ssh_port=port)
        with self._lock:
            self.guests[sid] = guest
            self.instances[sid] = instance
        try:
            guest.start()
        except GuestError as error:
            with self._lock:
                self.consoles[sid] = guest.console_log()
                self.guests.pop(sid, None)
            raise Fault(str(error)) from None
        self.log(f"server {sid}: guest started, SSH at {host}:{port}")

    def _guest(self, server_id) -> Guest:
        with self._lock:
            guest = self.guests.get(server_id)
        if guest is None:
            raise Fault(f"server {server_id} has no running guest")
        return guest

    def destroy(self, server_id):
        with self._lock:
            guest = self.guests.pop(server_id, None)
            self.instances.pop(server_id, None)
        if guest is not None:
            self.consoles[server_id] = guest.console_log()
            guest.stop()
        shutil.rmtree(self.instances_dir / server_id, ignore_errors=True)
        shutil.rmtree(self.run_root / server_id[:8], ignore_errors=True)

    def console_output(self, server_id):
        with self._lock:
            guest = self.guests.get(server_id)
        if guest is not None:
            return guest.console_log()
        return self.consoles.get(server_id)

    def attach_volume(self, server_id, path) -> tuple[str, str]:
        """Hot-plug volume file ``path``: (QEMU device id, the device name the guest sees)."""
        guest = self._guest(server_id)
        try:
            device_id = guest.attach_disk(path)
        except GuestError as error:
            raise Fault(str(error)) from None
        # root vda, config drive vdb; hot-plugged disks follow in order
        return device_id, "/dev/vd" + chr(ord("b") + len(guest.hotplugged))

    def power_off(self, server_id, timeout=30.0):
        guest = self._guest(server_id)
        try:
            guest.power_off(timeout)
        except GuestError as error:
            raise Fault(str(error)) from None

    def power_on(self, server_id):
        guest = self._guest(server_id)
        try:
            guest.power_on()
        except GuestError as error:
            raise Fault(str(error)) from None

    def quiesced(self, server_id):
        """A context in which the server's guest is paused (QMP ``stop`` drains and flushes QEMU's
        block writes); no guest running: nothing to do."""
        with self._lock:
            guest = self.guests.get(server_id) if server_id else None
        return guest.quiesced() if guest is not None else contextlib.nullcontext()

    def detach_volume(self, server_id, device_id):
        self._guest(server_id).detach_disk(device_id)

    def backup(self, server_id, image_id) -> Path:
        guest = self._guest(server_id)
        instance = self.instances[server_id]
        if not instance.image_members:
            raise Fault("the lab exports XenServer chains for servers booted from vhd/ovf images only")
        staging = self.instances_dir / server_id / f"backup-{image_id}"
        tgz = self.instances_dir / server_id / f"backup-{image_id}.tgz"
        try:
            export_backup(guest, instance.image_members, image_size=instance.image_size,
                          flavor_size=instance.flavor_size, tgz_path=tgz, staging=staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return tgz

    def host_keys(self, server_id) -> list[str]:
        with self._lock:
            instance = self.instances.get(server_id)
            return list(instance.host_keys) if instance else []

    def running_guests(self) -> dict[str, Guest]:
        with self._lock:
            return dict(self.guests)

    def shutdown(self):
        with self._lock:
            ids = list(self.guests)
        for sid in ids:
            self.destroy(sid)
        if self.run_root != self.instances_dir:
            shutil.rmtree(self.run_root, ignore_errors=True)

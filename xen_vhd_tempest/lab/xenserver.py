"""XenServer semantics of the lab: image import, instance disks, backups as VHD chains.

The compute driver here runs servers as QEMU guests (``lab.hypervisor.Guest``) and does what
Nova's XenAPI driver and XenServer did to the disks:

* boot from a vhd/ovf image: XenServer's import checks (gap-free numbering, leaf not hidden,
  ``vhd-util check``), the chain coalesced to the image's raw disk, the instance disk grown to
  the flavor's root size (the guest sees the larger disk);
* ``createBackup``: with the guest paused (crash-consistent), the sectors it wrote since boot
  become the leaf ``0.vhd`` (differencing, partial-block bitmaps), then the instance's resize
  layer ``1.vhd`` (empty; original size = image size, current size = flavor size), then the
  image's own chain members; parents hidden, parent names ``<uuid>.vhd`` not in the tar,
  creator ``tap``, 2 MiB blocks, packed like ``tar -zc --directory=STAGING .``.

Cinder's volume-from-image lives with the volume service (``lab.volume.conversion``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import zlib
from pathlib import Path

from .compute.models import Fault
from .util import sparse_copy

GIB = 1024 ** 3
MIB = 1024 * 1024


# -- images --------------------------------------------------------------------------------------
def check_xenserver_image(tgz) -> list:
    """XenServer's import checks on a vhd/ovf tgz; returns the member list (newest first).

    Raises ``Fault`` with one line naming the problem.
    """
    from converter.check import check_image
    from converter.errors import VhdError
    try:
        report = check_image(str(tgz))
    except VhdError as error:
        raise Fault(f"XenServer import refused the image: {error}") from None
    if not report.ok:
        raise Fault("XenServer import refused the image: " + "; ".join(report.problems))
    members = list(report.members)
    if not members:
        raise Fault("XenServer import refused the image: no VHD members")
    if members[0].hidden:
        raise Fault(f"XenServer import refused the image: leaf {members[0].name} is hidden")
    return members


def convert_xenserver_image(tgz, raw_out) -> int:
    from converter.convert import convert_image
    from converter.errors import VhdError
    try:
        return convert_image(str(tgz), str(raw_out), output_format="raw").virtual_size
    except VhdError as error:
        raise Fault(f"XenServer import refused the image: {error}") from None


# -- backups -------------------------------------------------------------------------------------
def _group(extents, window=4 * MIB):
    """Group (offset, length) extents into read windows of at most ``window`` bytes."""
    groups, current = [], []
    for off, length in extents:
        while length > window:  # split huge extents
            groups.append([(off, window)])
            off, length = off + window, length - window
        if current and off + length - current[0][0] > window:
            groups.append(current)
            current = []
        current.append((off, length))
    if current:
        groups.append(current)
    return groups


def export_backup(guest, image_members: list[Path], *, image_size: int, flavor_size: int,
                  tgz_path: Path, staging: Path) -> Path:
    """Write a XenServer backup tgz of ``guest``'s disk; see the module docstring."""
    from converter.archive import pack_image
    from converter.writer import VhdWriter, read_footer, set_hidden

    staging.mkdir(parents=True, exist_ok=True)
    n = len(image_members)
    parents = []
    for i, src in enumerate(image_members):
        dst = staging / f"{i + 2}.vhd"
        shutil.copyfile(src, dst)
        set_hidden(dst, True)
        parents.append(dst)
    if not n:
        raise Fault("the image has no VHD members to chain the backup to")
    image_leaf = read_footer(parents[0])
    resize = VhdWriter(staging / "1.vhd", disk_type="differencing", size=flavor_size,
                       original_size=image_size, parent_uuid=image_leaf.uuid,
                       parent_name=f"{image_leaf.uuid}.vhd", parent_timestamp=image_leaf.timestamp,
                       hidden=True, batmap=True)
    resize.close()
    leaf = VhdWriter(staging / "0.vhd", disk_type="differencing", size=flavor_size,
                     original_size=flavor_size, parent_uuid=resize.uuid,
                     parent_name=f"{resize.uuid}.vhd", parent_timestamp=read_footer(staging / "1.vhd").timestamp,
                     hidden=False, batmap=True)
    try:
        guest.pause()
        try:
            extents = guest.changed_extents()
            for group in _group(extents):
                start = group[0][0]
                end = group[-1][0] + group[-1][1]
                data = guest.read_disk(start, end - start)
                for off, length in group:
                    lo = off - off % 512
                    hi = min(-(-(off + length) // 512) * 512, flavor_size)
                    if hi > lo:
                        leaf.write(lo, data[lo - start:hi - start] if lo >= start else
                                   guest.read_disk(lo, hi - lo))
        finally:
            guest.resume()
    finally:
        leaf.close()
    members = [staging / "0.vhd", staging / "1.vhd"] + parents
    pack_image(tgz_path, members)
    return tgz_path


# -- host keys -----------------------------------------------------------------------------------
HOST_KEY_FILES = ("/etc/dropbear/dropbear_ed25519_host_key", "/etc/dropbear/dropbear_ecdsa_host_key",
                  "/etc/dropbear/dropbear_rsa_host_key")


def guest_host_keys(disk) -> list[str]:
    """The SSH host keys a guest disk will present (``type base64`` lines), read from its root
    filesystem (MBR partitions, ext2/3/4, dropbear keys) before it boots - what a cloud learns
    from cloud-init's console block. Empty when the disk holds none the lab can read."""
    import struct
    try:
        with open(disk, "rb") as f:
            mbr = f.read(512)
    except OSError:
        return []
    if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
        return []
    keys = []
    with tempfile.TemporaryDirectory(prefix="xvt-hostkeys-") as tmp:
        for i in range(4):
            entry = mbr[446 + 16 * i:462 + 16 * i]
            ptype, (start, _count) = entry[4], struct.unpack("<II", entry[8:16])
            if ptype != 0x83 or not start:
                continue
            for path in HOST_KEY_FILES:
                out = Path(tmp) / Path(path).name
                try:
                    subprocess.run(["debugfs", "-R", f"dump {path} {out}", f"{disk}?offset={start * 512}"],
                                   capture_output=True, timeout=30, check=False)
                    if not out.is_file() or not out.stat().st_size:
                        continue
                    pub = subprocess.run(["dropbearkey", "-y", "-f", str(out)], capture_output=True, text=True,
                                         timeout=30, check=False).stdout
                except (OSError, subprocess.TimeoutExpired):
                    return keys
                keys += [" ".join(line.split()[:2]) for line in pub.splitlines()
                         if line.startswith(("ssh-", "ecdsa-"))]
            if keys:
                break
    return keys


# -- the compute driver --------------------------------------------------------------------------
class XenServerDriver:
    """Servers as QEMU guests with XenServer disk semantics (see the module docstring)."""

    def __init__(self, config, log=print):
        self.config = config
        self.log = log
        self.instances_dir = config.path("instances")
        self.cache_dir = config.path("cache", "images")
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # QEMU's QMP socket path must stay under 108 bytes: guests run in a short directory.
        self.run_root = self.instances_dir if len(str(self.instances_dir)) <= 40 else \
            Path(tempfile.mkdtemp(prefix="xvtlab-"))
        self.guests: dict = {}
        self.info: dict = {}          # server id -> {"image_members", "image_size", "flavor_size", ...}
        self.addresses: dict = {}     # server id -> (host, port)
        self.consoles: dict = {}      # server id -> last console text (after stop)
        self._lock = threading.RLock()
        self._image_locks: dict = {}
        self.faults = None            # lab/faults.py: guests that never boot

    # -- addresses
    def allocate_address(self, server_id):
        """A loopback address whose port 22 the guest's SSH will be forwarded from.

        As root: ``127.0.0.N`` (port 22), N in [config base, 254], skipping addresses something
        already listens on. Otherwise ``127.0.0.1`` and a free high port (then the
        server's address dict cannot carry the port: see ``lab env``).
        """
        import socket
        with self._lock:
            used = set(self.addresses.values())
            candidates = []
            if os.geteuid() == 0:
                # each lab starts at its own place (state dir hash) so that labs running side by
                # side rarely probe the same address between allocation and QEMU's bind
                base = self.config.guest_address_base
                span = list(range(base, 255))
                first = zlib.crc32(str(self.config.state_dir).encode()) % len(span)
                candidates = [(f"127.0.0.{n}", 22) for n in span[first:] + span[:first]]
            for addr in candidates:
                if addr in used:
                    continue
                s = socket.socket()
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(addr)
                except OSError:
                    continue
                finally:
                    s.close()
                self.addresses[server_id] = addr
                break
            else:
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                addr = ("127.0.0.1", s.getsockname()[1])
                s.close()
                self.addresses[server_id] = addr
            n = int(addr[0].rsplit(".", 1)[1])
            mac = "fa:16:3e:%02x:%02x:%02x" % (n, addr[1] >> 8 & 0xFF, addr[1] & 0xFF)
            return addr[0], mac

    def release_address(self, server_id):
        with self._lock:
            self.addresses.pop(server_id, None)

    def ssh_address(self, server_id):
        return self.addresses.get(server_id)

    # -- images
    def _image_lock(self, image_id):
        with self._lock:
            return self._image_locks.setdefault(image_id, threading.Lock())

    def prepare_image(self, image, image_path) -> tuple[Path, int, list]:
        """The image's raw disk (cached), its size, and its chain members (vhd/ovf only)."""
        cached = self.cache_dir / f"{image['id']}.raw"
        members_dir = self.cache_dir / f"{image['id']}.members"
        with self._image_lock(image["id"]):
            df, cf = image["disk_format"], image["container_format"]
            if df == "vhd" and cf == "ovf":
                if not cached.exists() or not members_dir.exists():
                    check_xenserver_image(image_path)
                    tmp = cached.with_suffix(".tmp")
                    convert_xenserver_image(image_path, tmp)
                    from .volume.known_wrong import extract_members
                    mtmp = Path(str(members_dir) + ".tmp")
                    shutil.rmtree(mtmp, ignore_errors=True)
                    mtmp.mkdir(parents=True)
                    extract_members(image_path, mtmp)
                    shutil.rmtree(members_dir, ignore_errors=True)
                    os.replace(mtmp, members_dir)
                    os.replace(tmp, cached)
                members = sorted(members_dir.glob("*.vhd"), key=lambda p: int(p.stem))
                return cached, os.path.getsize(cached), members
            if df == "raw":
                return Path(image_path), os.path.getsize(image_path), []
            if df == "qcow2" and cf == "bare":
                if not cached.exists():
                    tmp = cached.with_suffix(".tmp")
                    try:
                        subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(image_path),
                                        str(tmp)], check=True, capture_output=True)
                    except (OSError, subprocess.CalledProcessError) as error:
                        raise Fault(f"image {image['id']} cannot be converted: {error}") from None
                    os.replace(tmp, cached)
                return cached, os.path.getsize(cached), []
            raise Fault(f"Image {image['id']}: the lab's XenServer boots vhd/ovf, raw or qcow2 images, "
                        f"not {df}/{cf}")

    # -- servers
    def spawn(self, server, *, image, image_path, root_volume, public_keys):
        from .guest import make_config_drive
        from .hypervisor import Guest, GuestError
        sid = server["id"]
        workdir = self.instances_dir / sid
        workdir.mkdir(parents=True, exist_ok=True)
        flavor_size = max(server["flavor"]["disk"], 0) * GIB
        info = {"flavor_size": flavor_size}
        if root_volume is None:
            raw, image_size, members = self.prepare_image(image, image_path)
            if flavor_size and image_size > flavor_size:
                raise Fault(f"Flavor's disk is too small for requested image: image virtual size "
                            f"{image_size} > flavor root disk {flavor_size} bytes")
            if not flavor_size:
                flavor_size = info["flavor_size"] = image_size
            disk = workdir / "disk.raw"
            sparse_copy(raw, disk, flavor_size)   # the instance disk, grown to the flavor size
            info.update(image_size=image_size, image_members=members, image_id=image["id"])
            overlay = True
        else:
            disk = Path(root_volume)
            overlay = False
        drive = make_config_drive(workdir / "config-drive.img", uuid=sid, hostname=server["hostname"],
                                  public_keys=public_keys)
        info["host_keys"] = guest_host_keys(disk)
        host, port = self.addresses[sid]
        variant = self.faults.guest_variant(server["name"]) if self.faults else None
        if variant:
            from .faults import broken_guest_class
            Guest = broken_guest_class(variant)  # noqa: N806
            self.log(f"server {sid}: fault injected: the guest will not boot ({variant})")
        guest = Guest(f"lab-{sid[:8]}", disk, workdir=self.run_root / sid[:8], overlay=overlay,
                      memory_mb=self.config.guest_memory_mb, config_drive=drive,
                      ssh_host=host, ssh_port=port)
        with self._lock:
            self.guests[sid] = guest
            self.info[sid] = info
        try:
            guest.start()
        except GuestError as error:
            with self._lock:
                self.consoles[sid] = guest.console_log()
                self.guests.pop(sid, None)
            raise Fault(str(error)) from None
        self.log(f"server {sid}: guest started, SSH at {host}:{port}")

    def _guest(self, server_id):
        with self._lock:
            guest = self.guests.get(server_id)
        if guest is None:
            raise Fault(f"server {server_id} has no running guest")
        return guest

    def destroy(self, server_id):
        with self._lock:
            guest = self.guests.pop(server_id, None)
            self.info.pop(server_id, None)
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

    def attach_volume(self, server_id, path, volume_id):
        from .hypervisor import GuestError
        guest = self._guest(server_id)
        try:
            device_id = guest.attach_disk(path)
        except GuestError as error:
            raise Fault(str(error)) from None
        with self._lock:
            # root vda, config drive vdb; hot-plugged disks follow in order
            count = sum(1 for _ in guest._devices) if hasattr(guest, "_devices") else 1
        return device_id, "/dev/vd" + chr(ord("b") + count)

    def detach_volume(self, server_id, device_id):
        guest = self._guest(server_id)
        guest.detach_disk(device_id)

    def backup(self, server_id, image_id) -> Path:
        guest = self._guest(server_id)
        info = self.info[server_id]
        if not info.get("image_members"):
            raise Fault("the lab exports XenServer chains for servers booted from vhd/ovf images only")
        staging = self.instances_dir / server_id / f"backup-{image_id}"
        tgz = self.instances_dir / server_id / f"backup-{image_id}.tgz"
        try:
            export_backup(guest, info["image_members"], image_size=info["image_size"],
                          flavor_size=info["flavor_size"], tgz_path=tgz, staging=staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return tgz

    def host_keys(self, server_id) -> list[str]:
        with self._lock:
            return list(self.info.get(server_id, {}).get("host_keys") or [])

    def running_guests(self):
        with self._lock:
            return {sid: g for sid, g in self.guests.items()}

    def shutdown(self):
        with self._lock:
            ids = list(self.guests)
        for sid in ids:
            self.destroy(sid)
        if self.run_root != self.instances_dir:
            shutil.rmtree(self.run_root, ignore_errors=True)


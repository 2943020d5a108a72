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

"""The lab guest: a tiny cirros-like disk image built locally, and OpenStack config drives.

``build_guest_image()`` returns a cached raw disk (64 MiB, MBR + syslinux + Debian cloud
kernel + busybox/dropbear root on ext4) and its XenServer export (``./0.vhd`` in a tgz).
``make_config_drive()`` writes a ``config-2`` FAT image the guest reads its keys from.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import GuestBuildError

__all__ = ["GuestImage", "GuestBuildError", "build_guest_image", "make_config_drive",
           "READY_LINE", "ROOT_LABEL"]

READY_LINE = "xen-vhd-tempest guest ready"
ROOT_LABEL = "cirros-rootfs"


@dataclass
class GuestImage:
    raw_path: Path
    xenserver_image_path: Path
    virtual_size: int
    ssh_user: str = "cirros"
    password: str = "gocubsgo"
    kernel_version: str = ""
    cached: bool = False
    build_seconds: float = 0.0


def build_guest_image(cache_dir: Path | None = None, kernel: Path | None = None, progress=None) -> GuestImage:
    """Build (or reuse from the cache) the guest disk image.

    ``cache_dir`` defaults to :func:`xen_vhd_tempest.paths.cache_dir`; the image lives in
    ``cache_dir/guest/<key>/disk.raw`` where key hashes every input (kernel package or file,
    busybox, dropbear and its libraries, syslinux, the builder's source). ``kernel`` is another
    kernel: a .deb, an unpacked package tree, or a bzImage. ``progress`` gets one-line messages.
    The returned raw disk is read-only: boot it through an overlay or copy it.
    """
    import time

    from . import build
    if cache_dir is None:
        from xen_vhd_tempest.paths import cache_dir as default_cache_dir
        cache_dir = default_cache_dir()
    t0 = time.monotonic()
    res = build.build(Path(cache_dir), kernel, progress)
    return GuestImage(res.raw_path, res.xenserver_image_path, res.virtual_size,
                      build.SSH_USER, build.PASSWORD, res.kernel_version, res.cached,
                      time.monotonic() - t0)


def make_config_drive(path: Path, *, uuid: str, hostname: str, public_keys: dict[str, str]) -> Path:
    """Write an OpenStack config drive (vfat, label ``config-2``) at ``path``, without mounting.

    It holds ``openstack/latest/meta_data.json`` (and ``openstack/2012-08-10/``) with ``uuid``,
    ``hostname``, ``name`` and ``public_keys`` {name: key}, as nova writes it.
    """
    path = Path(path)
    meta = {
        "uuid": uuid,
        "hostname": hostname,
        "name": hostname.split(".", 1)[0],
        "launch_index": 0,
        "availability_zone": "nova",
        "public_keys": {k: v.strip() + "\n" for k, v in public_keys.items()},
        "keys": [{"name": k, "type": "ssh", "data": v.strip() + "\n"} for k, v in public_keys.items()],
        "meta": {},
    }
    size = 2 * 1024 * 1024
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    try:
        with tempfile.TemporaryDirectory(prefix="config-drive-") as d:
            mj = Path(d) / "meta_data.json"
            mj.write_text(json.dumps(meta))
            with open(tmp, "wb") as f:
                f.truncate(size)
            cmds = [["mformat", "-i", tmp, "-v", "config-2", "::"],
                    ["mmd", "-i", tmp, "::/openstack", "::/openstack/latest", "::/openstack/2012-08-10"],
                    ["mcopy", "-i", tmp, mj, "::/openstack/latest/meta_data.json"],
                    ["mcopy", "-i", tmp, mj, "::/openstack/2012-08-10/meta_data.json"]]
            for cmd in cmds:
                try:
                    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, env=env)
                except FileNotFoundError:
                    raise GuestBuildError("mtools not found: install mtools (bindep.txt, profile lab)") from None
                except subprocess.CalledProcessError as exc:
                    msg = exc.stderr.decode(errors="replace").strip().splitlines()
                    raise GuestBuildError(f"{path}: {cmd[0]} failed: {msg[-1] if msg else exc.returncode}") from None
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

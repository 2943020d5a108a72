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

"""XenServer's import of vhd/ovf images, and the raw disks the compute driver boots from.

A vhd/ovf image passes XenServer's import checks (gap-free numbering, leaf not hidden,
``vhd-util check``) and is coalesced to its raw disk with the reference converter; its chain
members are kept beside it (a backup chains to them). Raw images boot as they are; qcow2 is
converted once. Results are cached per image id.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import NamedTuple

from converter.archive import extract_members
from converter.check import check_image
from converter.convert import convert_image
from converter.errors import VhdError

from ..errors import Fault

REFUSED = "XenServer import refused the image"


class PreparedImage(NamedTuple):
    raw: Path             # the disk the instance disk is copied from
    size: int             # its virtual size in bytes
    members: list         # the image's chain members (N.vhd paths, newest first); [] when not vhd/ovf


def check_xenserver_image(tgz) -> list:
    """XenServer's import checks on a vhd/ovf tgz; returns the member list (newest first).

    Raises ``Fault`` with one line naming the problem.
    """
    try:
        report = check_image(str(tgz))
    except VhdError as error:
        raise Fault(f"{REFUSED}: {error}") from None
    if not report.ok:
        raise Fault(f"{REFUSED}: " + "; ".join(report.problems))
    members = list(report.members)
    if not members:
        raise Fault(f"{REFUSED}: no VHD members")
    if members[0].hidden:
        raise Fault(f"{REFUSED}: leaf {members[0].name} is hidden")
    return members


def convert_xenserver_image(tgz, raw_out) -> int:
    try:
        return convert_image(str(tgz), str(raw_out), output_format="raw").virtual_size
    except VhdError as error:
        raise Fault(f"{REFUSED}: {error}") from None


class ImageCache:
    """The images' raw disks and chain members under ``cache_dir``, one build per image."""

    def __init__(self, cache_dir: Path):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._image_locks: dict = {}

    def _image_lock(self, image_id):
        with self._lock:
            return self._image_locks.setdefault(image_id, threading.Lock())

    def prepare(self, image, image_path) -> PreparedImage:
        cached = self.dir / f"{image['id']}.raw"
        members_dir = self.dir / f"{image['id']}.members"
        with self._image_lock(image["id"]):
            df, cf = image["disk_format"], image["container_format"]
            if df == "vhd" and cf == "ovf":
                if not cached.exists() or not members_dir.exists():
                    check_xenserver_image(image_path)
                    tmp = cached.with_suffix(".tmp")
                    convert_xenserver_image(image_path, tmp)
                    mtmp = Path(str(members_dir) + ".tmp")
                    shutil.rmtree(mtmp, ignore_errors=True)
                    mtmp.mkdir(parents=True)
                    try:
                        extract_members(image_path, mtmp)
                    except VhdError as error:
                        raise Fault(f"{REFUSED}: {error}") from None
                    shutil.rmtree(members_dir, ignore_errors=True)
                    os.replace(mtmp, members_dir)
                    os.replace(tmp, cached)
                members = sorted(members_dir.glob("*.vhd"), key=lambda p: int(p.stem))
                return PreparedImage(cached, os.path.getsize(cached), members)
            if df == "raw":
                return PreparedImage(Path(image_path), os.path.getsize(image_path), [])
            if df == "qcow2" and cf == "bare":
                if not cached.exists():
                    tmp = cached.with_suffix(".tmp")
                    try:
                        subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(image_path),
                                        str(tmp)], check=True, capture_output=True)
                    except (OSError, subprocess.CalledProcessError) as error:
                        raise Fault(f"image {image['id']} cannot be converted: {error}") from None
                    os.replace(tmp, cached)
                return PreparedImage(cached, os.path.getsize(cached), [])
            raise Fault(f"Image {image['id']}: the lab's XenServer boots vhd/ovf, raw or qcow2 images, "
                        f"not {df}/{cf}")

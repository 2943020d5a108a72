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

"""The lab's image-to-volume: what fills a volume created with ``imageRef``.

Three ways, chosen by the lab's ``conversion_mode`` setting:

* ``reference``: vhd/ovf images through the reference converter (``converter.convert``), raw
  copied sparsely, other bare formats through ``qemu-img convert``;
* a known-wrong variant (``known_wrong``, names from ``converter.variants.VARIANTS``): vhd/ovf
  images converted that wrong way, for sensitivity checks;
* ``cinder``: every image through upstream Cinder's own code in the Cinder worker
  (``cinder.CinderWorker``), writing the volume's file as a driver writes its device.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from converter.variants import VARIANTS

from ..errors import LabError
from ..util import sparse_copy

GIB = 1024 ** 3
REFERENCE, CINDER = "reference", "cinder"
MODES = (REFERENCE, *VARIANTS, CINDER)


class ImageUnacceptable(LabError):
    """Cinder's ImageUnacceptable: the volume ends in error with this message."""

    def __init__(self, message):
        super().__init__(400, message, kind="badRequest")


def image_to_volume(image, image_path, dest, volume_size, *, mode=REFERENCE, cinder=None, volume=None,
                    log_path=None):
    """Fill volume file ``dest`` (``volume_size`` bytes) from a glance image. ``cinder`` (a
    CinderWorker), ``volume`` (the lab's record) and ``log_path`` are for mode ``cinder``; its
    answer (Cinder's seconds, glance metadata) is returned, None otherwise."""
    if mode == CINDER:
        return _with_cinder(cinder, image, image_path, dest, volume_size, volume, log_path)
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".convert", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        size = _convert(mode, image, image_path, tmp)
        if size > volume_size:
            raise ImageUnacceptable(
                f"Image {image['id']} is unacceptable: Image virtual size is {-(-size // GIB)}GB "
                f"and doesn't fit in a volume of size {volume_size // GIB}GB.")
        with open(tmp, "r+b") as f:
            f.truncate(volume_size)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return None


def _convert(mode, image, image_path, out) -> int:
    df, cf = image.get("disk_format"), image.get("container_format")
    if df == "vhd" and cf == "ovf":
        if mode != REFERENCE:
            from . import known_wrong
            return known_wrong.convert(mode, image_path, out)
        from converter.convert import convert_image
        from converter.errors import VhdError
        try:
            return convert_image(str(image_path), str(out), output_format="raw").virtual_size
        except VhdError as error:
            raise ImageUnacceptable(f"Image {image['id']} is unacceptable: {error}") from None
    if cf in ("bare", None) and df == "raw":
        size = os.path.getsize(image_path)
        sparse_copy(image_path, out, size)
        return size
    if cf in ("bare", None) and df in ("qcow2", "vmdk", "vdi", "vhdx", "vhd"):
        fmt = {"vhd": "vpc"}.get(df, df)
        try:
            subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", str(image_path), str(out)],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as error:
            raise ImageUnacceptable(f"Image {image['id']} is unacceptable: qemu-img convert failed: "
                                    f"{getattr(error, 'stderr', b'').decode(errors='replace').strip()}") from None
        return os.path.getsize(out)
    raise ImageUnacceptable(f"Image {image['id']} is unacceptable: container format {cf} "
                            f"with disk format {df} is not supported")


def _with_cinder(cinder, image, image_path, dest, volume_size, volume, log_path):
    from ..image.responses import image_schema, view
    reply = cinder.create_volume(volume=volume, image_view=view(image), image_schema=image_schema(),
                                 image_path=image_path, dest=dest, log_path=log_path)
    # qemu-img convert makes the file the image's size; a driver's device keeps the volume's.
    if os.path.getsize(dest) < volume_size:
        with open(dest, "r+b") as f:
            f.truncate(volume_size)
    return reply

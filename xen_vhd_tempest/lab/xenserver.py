"""Cinder's volume-from-image conversion (:func:`image_to_volume`): the reference converter,
or a faulty one from ``lab.faulty`` when the lab's ``conversion_mode`` says so.

(Moving to ``lab/volume/`` with the real-Cinder mode. The compute side of XenServer lives in
``lab/compute/``: ``driver``, ``xenserver_images``, ``xenserver_backup``.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

GIB = 1024 ** 3


class ImageUnacceptable(Exception):
    """Cinder's ImageUnacceptable: the volume ends in error with this message."""

    user_facing = True


def _sparse_copy(src, dst, size):
    """Copy ``src`` to ``dst`` keeping holes, then set the length to ``size``."""
    try:
        subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(src), str(dst)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        f.truncate(size)


# -- volumes -------------------------------------------------------------------------------------
def image_to_volume(image, image_path, dest, volume_size, *, mode="reference", workdir=None):
    """Fill volume file ``dest`` (``volume_size`` bytes) from a glance image, as Cinder would."""
    dest = Path(dest)
    workdir = Path(workdir or dest.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".convert", dir=workdir)
    os.close(fd)
    tmp = Path(tmp)
    try:
        df, cf = image.get("disk_format"), image.get("container_format")
        if df == "vhd" and cf == "ovf":
            def reference(src, out):
                from converter.convert import convert_image
                from converter.errors import VhdError
                try:
                    return convert_image(str(src), str(out), output_format="raw").virtual_size
                except VhdError as error:
                    raise ImageUnacceptable(f"Image {image['id']} is unacceptable: {error}") from None
            if mode == "reference":
                size = reference(image_path, tmp)
            else:
                from . import faulty
                size = faulty.convert(mode, image_path, tmp, reference)
        elif cf in ("bare", None) and df == "raw":
            size = os.path.getsize(image_path)
            _sparse_copy(image_path, tmp, size)
        elif cf in ("bare", None) and df in ("qcow2", "vmdk", "vdi", "vhdx", "vhd"):
            fmt = {"vhd": "vpc"}.get(df, df)
            try:
                subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", str(image_path), str(tmp)],
                               check=True, capture_output=True)
            except (OSError, subprocess.CalledProcessError) as error:
                raise ImageUnacceptable(f"Image {image['id']} is unacceptable: qemu-img convert failed: "
                                        f"{getattr(error, 'stderr', b'').decode(errors='replace').strip()}") from None
            size = os.path.getsize(tmp)
        else:
            raise ImageUnacceptable(f"Image {image['id']} is unacceptable: container format {cf} "
                                    f"with disk format {df} is not supported")
        if size > volume_size:
            raise ImageUnacceptable(
                f"Image {image['id']} is unacceptable: Image virtual size is {-(-size // GIB)}GB "
                f"and doesn't fit in a volume of size {volume_size // GIB}GB.")
        with open(tmp, "r+b") as f:
            f.truncate(volume_size)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)

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

"""``createBackup`` on XenServer: a running guest's disk exported as a VHD chain in a tgz.

With the guest paused (crash-consistent), the sectors it wrote since boot become the leaf
``0.vhd`` (differencing, partial-block bitmaps), then the instance's resize layer ``1.vhd``
(empty; original size = image size, current size = flavor size), then the image's own chain
members; parents hidden, parent names ``<uuid>.vhd`` not in the tar, creator ``tap``, 2 MiB
blocks, packed like ``tar -zc --directory=STAGING .``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from converter.archive import pack_image
from converter.writer import VhdWriter, read_footer, set_hidden

from ..errors import Fault

MIB = 1024 * 1024


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
    staging.mkdir(parents=True, exist_ok=True)
    parents = []
    for i, src in enumerate(image_members):
        dst = staging / f"{i + 2}.vhd"
        shutil.copyfile(src, dst)
        set_hidden(dst, True)
        parents.append(dst)
    if not parents:
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
            for group in _group(guest.changed_extents()):
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
    pack_image(tgz_path, [staging / "0.vhd", staging / "1.vhd"] + parents)
    return tgz_path

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

"""The reference converter's verdict on an image downloaded from the cloud.

A backup must be a XenServer image (vhd/ovf) with a valid chain of at least two members and a
leaf that is not hidden; its reference conversion gives the size and the checksums the volume
is held to (whole-disk md5 and one md5 per MiB, for locating differences).
"""

import dataclasses
import hashlib
import os
import time

from converter.check import check_image
from converter.convert import convert_image
from converter.errors import VhdError
from xen_vhd_tempest.scenario.cloud import ScenarioError

MIB = 1 << 20
ZERO_MIB_MD5 = hashlib.md5(bytes(MIB)).hexdigest()


@dataclasses.dataclass
class Reference:
    image_path: str
    raw_path: str
    size: int
    md5: str
    mib_md5s: list
    members: list            # converter.check.MemberCheck, newest first
    seconds: float = 0.0     # how long the reference conversion took (next to the cloud's)

    @property
    def base_size(self):
        return self.members[-1].current_size


def md5s(path, size, *, whole=True, span=MIB):
    """(whole md5 or None, md5 list per ``span`` bytes) of the first ``size`` bytes of a
    (sparse) file.

    Spans inside holes are not read: their md5 is the zero span's (only the whole-disk md5
    needs their bytes fed through).
    """
    digest = hashlib.md5() if whole else None
    per_span = []
    zero = bytes(span)
    zero_md5 = ZERO_MIB_MD5 if span == MIB else hashlib.md5(zero).hexdigest()
    with open(path, "rb") as f:
        fd = f.fileno()
        for start in range(0, size, span):
            n = min(span, size - start)
            try:
                data_at = os.lseek(fd, start, os.SEEK_DATA)
            except OSError:             # ENXIO: only holes from here on
                data_at = size
            if data_at >= start + n:
                piece = zero[:n]
                per_span.append(zero_md5 if n == span else hashlib.md5(piece).hexdigest())
            else:
                piece = os.pread(fd, n, start).ljust(n, b"\0")
                per_span.append(hashlib.md5(piece).hexdigest())
            if digest is not None:
                digest.update(piece)
    return (digest.hexdigest() if digest else None), per_span


def build_reference(image_path, raw_path, *, disk_format, container_format, min_members=2, progress=None):
    if (disk_format, container_format) != ("vhd", "ovf"):
        raise ScenarioError(f"the image is {disk_format}/{container_format}, not a XenServer image (vhd/ovf)")
    try:
        report = check_image(image_path)
    except VhdError as exc:
        raise ScenarioError(f"the image is not a XenServer image: {exc}") from None
    if not report.ok:
        raise ScenarioError("the image's chain is invalid: " + "; ".join(report.problems[:3]))
    if len(report.members) < min_members:
        raise ScenarioError(f"the image has {len(report.members)} member(s); a backup of a booted "
                            f"instance has at least {min_members} (leaf, resize layer, base)")
    if report.members[0].hidden:
        raise ScenarioError(f"the leaf {report.members[0].name} is hidden: XenServer would refuse to import it")
    if progress:
        chain = ", ".join(f"{m.name} {m.disk_type} {m.current_size >> 20} MiB{' hidden' if m.hidden else ''}"
                          for m in report.members)
        progress(f"chain: {chain}")
    t0 = time.monotonic()
    try:
        result = convert_image(image_path, raw_path)
    except VhdError as exc:
        raise ScenarioError(f"the reference converter rejects the image: {exc}") from None
    seconds = time.monotonic() - t0
    whole, per_mib = md5s(raw_path, result.virtual_size)
    if progress:
        progress(f"reference: {result.virtual_size} bytes, md5 {whole} (converted in {seconds:.1f}s)")
    return Reference(str(image_path), str(raw_path), result.virtual_size, whole, per_mib, report.members, seconds)

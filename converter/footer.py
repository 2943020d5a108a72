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

"""The 512-byte VHD footer: parse, serialise, checksum, geometry.

Layout (big-endian): cookie@0 features@8 version@12 data_offset@16 timestamp@24
creator_app@28 creator_version@32 creator_os@36 original_size@40 current_size@48
geometry@56 (u16 cylinders, u8 heads, u8 sectors) disk_type@60 checksum@64 uuid@68
saved_state@84 hidden@85 (XenServer; inside the checksum) reserved to 512.
"""

import enum
import struct
import time
import uuid as uuidlib

from converter.errors import FormatError
from converter.record import record

FOOTER_SIZE = 512
COOKIE = b"conectix"
FEATURES_RESERVED = 0x2          # "always set" per spec
FILE_FORMAT_VERSION = 0x00010000
NO_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF
VHD_EPOCH = 946684800            # 2000-01-01T00:00:00Z as a Unix timestamp
CHECKSUM_OFFSET = 64
HIDDEN_OFFSET = 85
# xen-vhd-util coalesce marks its target in the reserved bytes (magic + the child's UUID) until
# it is done: blktap's check and this one reject reserved bits, so a half-coalesced parent is
# never called valid. See converter/vhdutil/image.py.
COALESCE_MARK = b"XVHDCOAL"
COALESCE_OFFSET = HIDDEN_OFFSET + 1
TIMESTAMP_MAX_SLACK = 1800       # blktap tolerates NFS clock skew of 30 minutes
TAP_CURRENT_VERSION = 0x00010003
TAP_OLD_HIDDEN = (0x00000001, 0x00010001)   # td-util set 'hidden' without updating the checksum

_LAYOUT = struct.Struct(">8sIIQI4sI4sQQHBBII16sBB")  # through hidden@85, 86 bytes
assert _LAYOUT.size == 86


class DiskType(enum.IntEnum):
    NONE = 0
    FIXED = 2
    DYNAMIC = 3
    DIFFERENCING = 4

    @property
    def label(self):
        return {2: "fixed", 3: "dynamic", 4: "differencing"}.get(self.value, "none")


def checksum(buf, skip_at, skip_len=4):
    """One's complement of the byte sum, with the checksum field itself counted as zero."""
    total = sum(buf) - sum(buf[skip_at:skip_at + skip_len])
    return ~total & 0xFFFFFFFF


def stamp_checksum(buf, offset):
    """Compute the checksum of ``buf`` (its field at ``offset`` counted as zero), store it there
    as big-endian u32 and return it: how the footer and the dynamic header are sealed."""
    value = checksum(buf, offset)
    struct.pack_into(">I", buf, offset, value)
    return value


def chs_geometry(size):
    """The VHD spec's CHS for a disk of ``size`` bytes (what every writer stores)."""
    total = min(size // 512, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cyl_heads = total // spt
    else:
        spt = 17
        cyl_heads = total // spt
        heads = max((cyl_heads + 1023) // 1024, 4)
        if cyl_heads >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cyl_heads = total // spt
        if cyl_heads >= heads * 1024:
            spt, heads = 63, 16
            cyl_heads = total // spt
    return cyl_heads // heads, heads, spt


def now_timestamp():
    return max(0, int(time.time()) - VHD_EPOCH)


def vhd_now():
    """blktap's vhd_time(now): seconds since the VHD epoch as a u32."""
    return (int(time.time()) - VHD_EPOCH) & 0xFFFFFFFF


def _packed_chs(c, h, s):
    return (c << 16) | (h << 8) | s


@record(frozen=True)
class Finding:
    """One failed validation of a structure.

    ``reason``: vhd-util check's words ("invalid checksum"); None when blktap does not check it.
    ``message``: why the converter refuses to read the disk; None when it reads it all the same.
    ``detail``: the numbers behind the reason, shown in brackets after it.
    """
    reason: str | None
    message: str | None = None
    detail: str = ""

    @property
    def text(self):
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


def reasons(findings):
    """vhd-util check's reasons of ``findings``, in order."""
    return [f.text for f in findings if f.reason]


def messages(findings):
    """The converter's refusals among ``findings``, in order."""
    return [f.message for f in findings if f.message]


@record
class Footer:
    disk_type: DiskType
    current_size: int
    original_size: int
    uuid: uuidlib.UUID
    data_offset: int = NO_DATA_OFFSET
    timestamp: int = 0
    creator_app: bytes = b"tap\0"
    creator_version: int = 0x00010003
    creator_os: bytes = b"Lnux"
    geometry: tuple = (0, 0, 0)
    features: int = FEATURES_RESERVED
    version: int = FILE_FORMAT_VERSION
    checksum: int = 0
    saved_state: int = 0
    hidden: int = 0
    cookie: bytes = COOKIE
    raw: bytes = b""             # the bytes it was parsed from (for checksum checks and dumps)
    coalescing: uuidlib.UUID = None   # the child an unfinished xen-vhd-util coalesce came from

    @classmethod
    def unpack(cls, buf, where="footer"):
        """Parse a footer; raises FormatError only when it is not a footer at all."""
        if len(buf) == FOOTER_SIZE - 1:       # very old images: a 511-byte footer
            buf = bytes(buf) + b"\0"
        if len(buf) != FOOTER_SIZE:
            raise FormatError(where, f"{len(buf)} bytes where a 512-byte footer was expected")
        (cookie, features, version, data_offset, timestamp, creator_app, creator_version,
         creator_os, original_size, current_size, cyl, heads, spt, disk_type, csum, uid,
         saved_state, hidden) = _LAYOUT.unpack_from(buf)
        if cookie != COOKIE:
            raise FormatError(where, f"cookie is {cookie!r}, not 'conectix': not a VHD footer")
        try:
            dtype = DiskType(disk_type)
        except ValueError:
            dtype = disk_type   # kept as int; problems() reports it
        return cls(disk_type=dtype, current_size=current_size, original_size=original_size,
                   uuid=uuidlib.UUID(bytes=uid), data_offset=data_offset, timestamp=timestamp,
                   creator_app=creator_app, creator_version=creator_version, creator_os=creator_os,
                   geometry=(cyl, heads, spt), features=features, version=version, checksum=csum,
                   saved_state=saved_state, hidden=hidden, cookie=cookie, raw=bytes(buf),
                   coalescing=coalesce_mark(buf))

    def pack(self):
        """Serialise with a freshly computed checksum (stored back into ``checksum``)."""
        cyl, heads, spt = self.geometry
        head = _LAYOUT.pack(self.cookie, self.features, self.version, self.data_offset,
                            self.timestamp, self.creator_app, self.creator_version, self.creator_os,
                            self.original_size, self.current_size, cyl, heads, spt, int(self.disk_type),
                            0, self.uuid.bytes, self.saved_state, self.hidden)
        buf = bytearray(head.ljust(FOOTER_SIZE, b"\0"))
        if self.coalescing is not None:
            buf[COALESCE_OFFSET:COALESCE_OFFSET + 24] = COALESCE_MARK + self.coalescing.bytes
        self.checksum = stamp_checksum(buf, CHECKSUM_OFFSET)
        self.raw = bytes(buf)
        return self.raw

    @property
    def computed_checksum(self):
        return checksum(self.raw, CHECKSUM_OFFSET) if self.raw else None

    @property
    def is_dynamic(self):
        return self.disk_type in (DiskType.DYNAMIC, DiskType.DIFFERENCING)

    @property
    def type_label(self):
        return self.disk_type.label if isinstance(self.disk_type, DiskType) else f"unknown({self.disk_type})"

    @property
    def creator(self):
        return self.creator_app.rstrip(b"\0 ").decode("latin-1")

    @property
    def is_tap(self):
        return self.creator_app[:3] == b"tap"

    def hidden_checksum_ok(self):
        """Early td-util (tap 0.1 and 1.1) set 'hidden' without updating the checksum."""
        if not self.raw or not self.hidden or not self.is_tap or self.creator_version not in TAP_OLD_HIDDEN:
            return False
        fixed = bytearray(self.raw)
        fixed[HIDDEN_OFFSET] = 0
        return checksum(fixed, CHECKSUM_OFFSET) == self.checksum

    def matches(self, backup):
        """vhd-util check's primary/backup comparison, with its tap 0.1/1.1 'hidden' exception."""
        if self.raw == backup.raw:
            return True
        if backup.hidden and backup.is_tap and backup.creator_version in TAP_OLD_HIDDEN:
            fixed, mine = bytearray(backup.raw), self.raw
            fixed[HIDDEN_OFFSET] = 0
            # compare as structs: the checksum field follows the bytes it covers
            return bytes(fixed[:64]) + bytes(fixed[68:]) == mine[:64] + mine[68:]
        return False

    def findings(self, file_size=None, *, now=None):
        """Every footer validation, in blktap's order (vhd_util_check_validate_footer), with the
        converter's own size and offset checks in between. ``now``: the VHD time to check the
        timestamp against (None: not checked)."""
        found = []
        add = found.append
        if self.raw and self.computed_checksum != self.checksum:
            detail = f"stored 0x{self.checksum:08x}, computed 0x{self.computed_checksum:08x}"
            add(Finding(None if self.hidden_checksum_ok() else "invalid checksum", f"invalid checksum: {detail}",
                        detail))
        if not self.features & FEATURES_RESERVED:
            add(Finding("invalid 'reserved' feature"))
        if self.features & ~0x3:
            add(Finding("invalid extra features"))
        if self.version != FILE_FORMAT_VERSION:
            add(Finding("invalid file format version", f"invalid version 0x{self.version:08x}"))
        if self.is_dynamic:
            if self.data_offset == NO_DATA_OFFSET or self.data_offset % 512:
                add(Finding(None, f"invalid data offset 0x{self.data_offset:x}"))
            elif file_size is not None and self.data_offset + 1024 > file_size:
                add(Finding(None, f"data offset {self.data_offset} is past the end of the file ({file_size} bytes)"))
        elif self.data_offset != NO_DATA_OFFSET:
            add(Finding("invalid data offset", f"invalid data offset 0x{self.data_offset:x} for a fixed disk"
                        if self.disk_type == DiskType.FIXED else None))
        if now is not None and self.timestamp > now + TIMESTAMP_MAX_SLACK:
            add(Finding("creation time in future"))
        if self.is_tap and self.creator_version > TAP_CURRENT_VERSION:
            add(Finding("unsupported tap creator version"))
        size = max(512, -(-self.current_size // 512) * 512)
        if _packed_chs(*chs_geometry(size)) < _packed_chs(*self.geometry):
            add(Finding("geometry too large"))
        if int(self.disk_type) not in (2, 3, 4):
            add(Finding("invalid type", f"invalid disk type {int(self.disk_type)}"))
        if self.current_size % 512:
            add(Finding(None, f"current size {self.current_size} is not a multiple of 512"))
        if self.saved_state not in (0, 1):
            add(Finding("invalid 'saved' state", f"invalid saved state {self.saved_state}"))
        if self.hidden not in (0, 1):
            add(Finding("invalid 'hidden' state"))
        if any(self.raw[HIDDEN_OFFSET + 1:FOOTER_SIZE]):
            add(Finding("invalid 'reserved' bits"))
        if self.uuid.int == 0:
            add(Finding("invalid (NULL) uuid"))
        return found

    def problems(self, file_size=None):
        """Why the converter would refuse this footer; [] when it reads it."""
        return messages(self.findings(file_size))

    def reasons(self, *, now=None):
        """vhd-util check's reasons (``now``: VHD time for the timestamp test, None: skipped)."""
        return reasons(self.findings(now=now))


def coalesce_mark(raw):
    """The child UUID of the unfinished coalesce ``raw`` (a footer's bytes) is marked with, or None."""
    if raw is None or len(raw) < COALESCE_OFFSET + 24 or raw[COALESCE_OFFSET:COALESCE_OFFSET + 8] != COALESCE_MARK:
        return None
    return uuidlib.UUID(bytes=bytes(raw[COALESCE_OFFSET + 8:COALESCE_OFFSET + 24]))


def footer_reasons(raw, *, now=None):
    """vhd-util check's reasons for the 512 bytes ``raw`` where a footer should be ([] = valid)."""
    if raw is None:
        return ["missing"]
    if bytes(raw[:8]) != COOKIE:
        return ["invalid cookie"]
    return Footer.unpack(raw).reasons(now=now)

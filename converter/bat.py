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

"""Block allocation table, XenServer batmap and sector bitmaps.

The BAT is an array of u32 sector offsets (0xFFFFFFFF = unallocated). The batmap (blktap,
creator 'tap') is a 'tdbatmap' header right after the BAT (sector rounded) plus one bit per
block, set when the block is completely full. A block on disk is its sector bitmap (MSB of
byte 0 = first sector, padded to 512 bytes) followed by the data.
"""

import array
import re
import struct
import sys

from converter.record import record

UNUSED = 0xFFFFFFFF
BATMAP_COOKIE = b"tdbatmap"
BATMAP_HEADER_SIZE = 512
_BATMAP_LAYOUT = struct.Struct(">8sQIIIB")
BATMAP_CHECKSUM_OFFSET = 24
BATMAP_VERSION_1_1 = 0x00010001
BATMAP_CURRENT_VERSION = 0x00010002     # the newest blktap writes and reads
TAP_BATMAP_SINCE = 0x00010002            # tap creator version from which every dynamic disk has one
_RUNS = re.compile(b"1+")
_HIGH_BYTES = bytes(range(128, 256))     # negative as signed chars


def unpack_bat(buf, entries):
    """The first ``entries`` u32 entries of a BAT buffer as an array of ints."""
    table = array.array("I")
    if table.itemsize != 4:            # pragma: no cover - every supported platform has 4-byte I
        table = array.array("L")
    table.frombytes(bytes(buf[:entries * 4]))
    if sys.byteorder == "little":
        table.byteswap()
    return table


def pack_bat(table, max_entries):
    """Serialise entries, padded with UNUSED to ``max_entries`` and zeros to a sector."""
    out = array.array("I", table)
    if max_entries > len(out):                  # array repetition: no list of a million ints
        out += array.array("I", [UNUSED]) * (max_entries - len(out))
    if sys.byteorder == "little":
        out.byteswap()
    raw = out.tobytes()
    return raw + b"\0" * (-len(raw) % 512)


@record
class BatmapHeader:
    batmap_offset: int
    batmap_size: int            # sectors
    batmap_version: int = 0x00010002
    checksum: int = 0
    marker: int = 0
    cookie: bytes = BATMAP_COOKIE

    @classmethod
    def unpack(cls, buf):
        """Parse a batmap header, or None when the bytes are not one (batmaps are optional)."""
        if len(buf) < _BATMAP_LAYOUT.size or bytes(buf[:8]) != BATMAP_COOKIE:
            return None
        cookie, off, size, version, csum, marker = _BATMAP_LAYOUT.unpack_from(buf)
        return cls(batmap_offset=off, batmap_size=size, batmap_version=version, checksum=csum,
                   marker=marker, cookie=cookie)

    def pack(self):
        return _BATMAP_LAYOUT.pack(self.cookie, self.batmap_offset, self.batmap_size,
                                   self.batmap_version, self.checksum, self.marker).ljust(BATMAP_HEADER_SIZE, b"\0")


    def problems(self, map_bytes, current_size, max_table_entries, file_size):
        """blktap's batmap validations (vhd_validate_batmap_header / vhd_validate_batmap), in its
        order: reasons in vhd-util's words, [] when valid. ``map_bytes``: None when not read."""
        found = []
        if self.batmap_version > BATMAP_CURRENT_VERSION:
            found.append("unsupported batmap version")
        if map_bytes is not None:
            computed = batmap_checksum(map_bytes, current_size, self.batmap_version)
            if computed != self.checksum:
                found.append(f"invalid checksum (stored 0x{self.checksum:08x}, computed 0x{computed:08x})")
        if self.batmap_size == 0:
            found.append("invalid size zero")
        elif self.batmap_size << 12 < max_table_entries:
            found.append("batmap-BAT size mismatch")
        if self.batmap_offset == 0 or self.batmap_offset % 512:
            found.append("invalid batmap offset")
        if self.batmap_offset + self.batmap_size * 512 > file_size - 512:
            found.append("invalid batmap size")
        return found


def batmap_header_offset(header):
    """vhd_batmap_header_offset: right after the BAT of max_table_entries, sector rounded."""
    return header.table_offset + header.bat_size


def has_batmap(footer, batmap_header):
    """libvhd vhd_has_batmap: dynamic/differencing 'tap' disks of version >= 1.2 always have one;
    1.1 when a valid batmap header is there; 0.1 never."""
    if not footer.is_dynamic or footer.creator_app[:3] != b"tap" or footer.creator_version <= 1:
        return False
    if footer.creator_version >= TAP_BATMAP_SINCE:
        return True
    return batmap_header is not None and batmap_header.batmap_version <= BATMAP_CURRENT_VERSION


def batmap_map_size(current_size):
    """Bytes of batmap blktap checksums (vhd_checksum_batmap): one bit per 2 MiB of the current
    size, count floored, as a whole number of sectors (at least one)."""
    return 512 * max(1, -(-(current_size >> 24) // 512))


def batmap_checksum(map_bytes, current_size, version=BATMAP_CURRENT_VERSION):
    """blktap's batmap checksum: one's complement of the sum of the first batmap_map_size bytes
    of the map (missing bytes count as zero). Batmap version 1.1 summed signed chars."""
    part = bytes(map_bytes[:batmap_map_size(current_size)])
    total = sum(part)
    if version == BATMAP_VERSION_1_1:
        total -= 256 * (len(part) - len(part.translate(None, _HIGH_BYTES)))
    return ~total & 0xFFFFFFFF


def batmap_bit(map_bytes, block):
    byte = block >> 3
    return byte < len(map_bytes) and bool(map_bytes[byte] & (0x80 >> (block & 7)))


def make_batmap(full_blocks, entries):
    size = (entries + 7) // 8
    data = bytearray(size + (-size % 512))
    for b in full_blocks:
        data[b >> 3] |= 0x80 >> (b & 7)
    return bytes(data)


# --- sector bitmaps as integers -------------------------------------------------------------
# A bitmap of n sectors is held as an int whose most significant of n bits is the first sector
# (int.from_bytes(..., "big") of the on-disk bitmap, trimmed to n bits). Run extraction then
# works on format(mask, "0{n}b"), whose string index is the sector number.

def bitmap_mask(bitmap, nsectors):
    """The on-disk bitmap bytes of a block as an n-bit MSB-first mask."""
    nbytes = (nsectors + 7) // 8
    value = int.from_bytes(bitmap[:nbytes], "big")
    return value >> (nbytes * 8 - nsectors)


def mask_runs(mask, width):
    """(start, end) sector runs of set bits of an MSB-first mask ``width`` bits wide."""
    if not mask:
        return []
    if mask == (1 << width) - 1:
        return [(0, width)]
    bits = format(mask, f"0{width}b").encode()
    return [m.span() for m in _RUNS.finditer(bits)]


def full_mask(nsectors):
    return (1 << nsectors) - 1


def mask_bitmap(mask, nsectors, padded_size):
    """The inverse of bitmap_mask: on-disk bitmap bytes padded to ``padded_size``."""
    nbytes = (nsectors + 7) // 8
    return (mask << (nbytes * 8 - nsectors)).to_bytes(nbytes, "big").ljust(padded_size, b"\0")

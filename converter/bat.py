"""Block allocation table, XenServer batmap and sector bitmaps.

The BAT is an array of u32 sector offsets (0xFFFFFFFF = unallocated). The batmap (blktap,
creator 'tap') is a 'tdbatmap' header right after the BAT (sector rounded) plus one bit per
block, set when the block is completely full. A block on disk is its sector bitmap (MSB of
byte 0 = first sector, padded to 512 bytes) followed by the data.
"""

import array
import dataclasses
import struct
import sys

from converter.errors import FormatError
from converter.footer import checksum

UNUSED = 0xFFFFFFFF
BATMAP_COOKIE = b"tdbatmap"
BATMAP_HEADER_SIZE = 512
_BATMAP_LAYOUT = struct.Struct(">8sQIIIB")
BATMAP_CHECKSUM_OFFSET = 24


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
    out.extend([UNUSED] * (max_entries - len(out)))
    if sys.byteorder == "little":
        out.byteswap()
    raw = out.tobytes()
    return raw + b"\0" * (-len(raw) % 512)


@dataclasses.dataclass
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


def batmap_checksum(map_bytes):
    """blktap checksums the batmap data itself (one's complement of the byte sum)."""
    return checksum(map_bytes, 0, 0)


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


def full_mask(nsectors):
    return (1 << nsectors) - 1


def mask_bitmap(mask, nsectors, padded_size):
    """The inverse of bitmap_mask: on-disk bitmap bytes padded to ``padded_size``."""
    nbytes = (nsectors + 7) // 8
    return (mask << (nbytes * 8 - nsectors)).to_bytes(nbytes, "big").ljust(padded_size, b"\0")


def check_bat_entry(entry, where, block, first_data, file_end, block_bytes):
    """Raise when an allocated entry points outside the data area of the file."""
    start = entry * 512
    if start < first_data:
        raise FormatError(where, f"BAT entry {block} points at byte {start}, inside the file's metadata",
                          field="BAT")
    if start + block_bytes > file_end:
        raise FormatError(where, f"BAT entry {block} points at byte {start}, past the end of the data "
                          f"({file_end} bytes)", field="BAT")

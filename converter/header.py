"""The 1024-byte dynamic disk header and its eight parent locators.

Layout (big-endian): cookie 'cxsparse'@0 data_offset@8 table_offset@16 version@24
max_table_entries@28 block_size@32 checksum@36 parent_uuid@40 parent_timestamp@56
reserved@60 parent_name@64 (512 bytes UTF-16BE) locators@576 (8 x 24) reserved to 1024.
"""

import dataclasses
import struct
import uuid as uuidlib

from converter.errors import FormatError
from converter.footer import checksum

HEADER_SIZE = 1024
COOKIE = b"cxsparse"
HEADER_VERSION = 0x00010000
CHECKSUM_OFFSET = 36
DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024     # XenServer's
LOCATOR_OFFSET = 576
LOCATOR_COUNT = 8

_LAYOUT = struct.Struct(">8sQQIIII16sII512s")
_LOCATOR = struct.Struct(">4sIIIQ")
assert _LAYOUT.size == LOCATOR_OFFSET and _LOCATOR.size == 24

PLAT_NONE = b"\0\0\0\0"
PLAT_MACX = b"MacX"      # UTF-8 file:// URL
PLAT_W2KU = b"W2ku"      # UTF-16LE absolute path
PLAT_W2RU = b"W2ru"      # UTF-16LE relative path
KNOWN_PLATFORMS = (PLAT_MACX, PLAT_W2KU, PLAT_W2RU, b"Wi2r", b"Wi2k", b"Mac ")


@dataclasses.dataclass
class ParentLocator:
    code: bytes = PLAT_NONE
    data_space: int = 0
    data_length: int = 0
    reserved: int = 0
    data_offset: int = 0

    @property
    def used(self):
        return self.code != PLAT_NONE

    @property
    def space_bytes(self):
        """Data space is sectors per the spec but bytes in practice (blktap: < 512 means sectors)."""
        if self.data_space < 512:
            return self.data_space * 512
        return self.data_space

    def decode(self, data):
        """The path the locator holds, or None when its encoding is unknown."""
        data = data[:self.data_length]
        try:
            if self.code == PLAT_MACX:
                return data.decode("utf-8").rstrip("\0")
            if self.code in (PLAT_W2KU, PLAT_W2RU):
                return data.decode("utf-16-le").rstrip("\0")
        except UnicodeDecodeError:
            return None
        return None

    def pack(self):
        return _LOCATOR.pack(self.code, self.data_space, self.data_length, self.reserved, self.data_offset)


@dataclasses.dataclass
class DynamicHeader:
    table_offset: int
    max_table_entries: int
    block_size: int = DEFAULT_BLOCK_SIZE
    parent_uuid: uuidlib.UUID = uuidlib.UUID(int=0)
    parent_timestamp: int = 0
    parent_name: str = ""
    locators: list = dataclasses.field(default_factory=lambda: [ParentLocator() for _ in range(LOCATOR_COUNT)])
    data_offset: int = 0xFFFFFFFFFFFFFFFF
    version: int = HEADER_VERSION
    checksum: int = 0
    cookie: bytes = COOKIE
    raw_parent_name: bytes = b""
    raw: bytes = b""

    @classmethod
    def unpack(cls, buf, where="header"):
        if len(buf) != HEADER_SIZE:
            raise FormatError(where, f"file ends {len(buf)} bytes into the 1024-byte dynamic header")
        (cookie, data_offset, table_offset, version, max_entries, block_size, csum, puuid,
         ptimestamp, _reserved, pname) = _LAYOUT.unpack_from(buf)
        if cookie != COOKIE:
            raise FormatError(where, f"cookie is {cookie!r}, not 'cxsparse': no dynamic header here")
        locators = [ParentLocator(*_LOCATOR.unpack_from(buf, LOCATOR_OFFSET + 24 * i))
                    for i in range(LOCATOR_COUNT)]
        name = pname.decode("utf-16-be", errors="replace").split("\0", 1)[0]
        return cls(table_offset=table_offset, max_table_entries=max_entries, block_size=block_size,
                   parent_uuid=uuidlib.UUID(bytes=puuid), parent_timestamp=ptimestamp, parent_name=name,
                   locators=locators, data_offset=data_offset, version=version, checksum=csum,
                   cookie=cookie, raw_parent_name=pname, raw=bytes(buf))

    def pack(self):
        name = self.parent_name.encode("utf-16-be")
        if len(name) > 512:
            raise FormatError("header", "parent name longer than 256 UTF-16 characters", field="parent_name")
        buf = bytearray(HEADER_SIZE)
        _LAYOUT.pack_into(buf, 0, self.cookie, self.data_offset, self.table_offset, self.version,
                          self.max_table_entries, self.block_size, 0, self.parent_uuid.bytes,
                          self.parent_timestamp, 0, name.ljust(512, b"\0"))
        for i, loc in enumerate(self.locators):
            buf[LOCATOR_OFFSET + 24 * i:LOCATOR_OFFSET + 24 * (i + 1)] = loc.pack()
        self.checksum = checksum(buf, CHECKSUM_OFFSET)
        struct.pack_into(">I", buf, CHECKSUM_OFFSET, self.checksum)
        self.raw = bytes(buf)
        return self.raw

    @property
    def computed_checksum(self):
        return checksum(self.raw, CHECKSUM_OFFSET) if self.raw else None

    @property
    def sectors_per_block(self):
        return self.block_size // 512

    @property
    def bitmap_size(self):
        """Bytes of sector bitmap in front of each block, padded to a whole sector."""
        bits_bytes = (self.sectors_per_block + 7) // 8
        return (bits_bytes + 511) // 512 * 512

    @property
    def bat_size(self):
        """Bytes the BAT occupies on disk (rounded up to a sector)."""
        return (self.max_table_entries * 4 + 511) // 512 * 512

    def problems(self, footer=None, file_size=None):
        """Header validations in blktap's order (vhd_validate_header); [] when valid."""
        found = []
        if self.raw and self.computed_checksum != self.checksum:
            found.append(f"invalid checksum: stored 0x{self.checksum:08x}, computed 0x{self.computed_checksum:08x}")
        if self.data_offset != 0xFFFFFFFFFFFFFFFF:
            found.append(f"invalid data offset 0x{self.data_offset:x}")
        if self.version != HEADER_VERSION:
            found.append(f"invalid version 0x{self.version:08x}")
        bs = self.block_size
        if bs < 512 or bs & (bs - 1) or bs > 256 * 1024 * 1024:
            found.append(f"invalid block size {bs}: not a power of two between 512 B and 256 MiB")
        elif footer is not None:
            needed = -(-footer.current_size // bs)
            if self.max_table_entries < needed:
                found.append(f"max table entries {self.max_table_entries} is less than the {needed} blocks "
                             f"the current size {footer.current_size} needs")
        if self.table_offset % 512:
            found.append(f"BAT offset {self.table_offset} is not sector aligned")
        if file_size is not None and self.table_offset + self.max_table_entries * 4 > file_size:
            found.append(f"BAT ({self.max_table_entries} entries at {self.table_offset}) extends past the "
                         f"end of the file ({file_size} bytes)")
        for i, loc in enumerate(self.locators):
            if not loc.used:
                continue
            if loc.code not in KNOWN_PLATFORMS:
                found.append(f"parent locator {i}: unknown platform code {loc.code!r}")
            if loc.data_offset % 512:
                found.append(f"parent locator {i}: data offset {loc.data_offset} is not sector aligned")
            if loc.data_length > loc.space_bytes:
                found.append(f"parent locator {i}: data length {loc.data_length} exceeds its space {loc.space_bytes}")
            if file_size is not None and loc.data_offset + loc.space_bytes > file_size:
                found.append(f"parent locator {i}: data at {loc.data_offset} extends past the end of the file")
        return found

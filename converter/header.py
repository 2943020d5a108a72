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

"""The 1024-byte dynamic disk header and its eight parent locators.

Layout (big-endian): cookie 'cxsparse'@0 data_offset@8 table_offset@16 version@24
max_table_entries@28 block_size@32 checksum@36 parent_uuid@40 parent_timestamp@56
reserved@60 parent_name@64 (512 bytes UTF-16BE) locators@576 (8 x 24) reserved to 1024.
"""

import struct
import uuid as uuidlib

from converter.errors import FormatError
from converter.footer import TIMESTAMP_MAX_SLACK, DiskType, Finding, checksum, messages, stamp_checksum
from converter.record import factory, record

HEADER_SIZE = 1024
COOKIE = b"cxsparse"
HEADER_VERSION = 0x00010000
CHECKSUM_OFFSET = 36
DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024     # XenServer's
LOCATOR_OFFSET = 576
LOCATOR_COUNT = 8
LOCATOR_END = LOCATOR_OFFSET + 24 * LOCATOR_COUNT
NO_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF
MAX_OPEN_BLOCK_SIZE = 2 * 1024 * 1024    # libvhd's vhd_open refuses larger blocks

_LAYOUT = struct.Struct(">8sQQIIII16sII512s")
_LOCATOR = struct.Struct(">4sIIIQ")
assert _LAYOUT.size == LOCATOR_OFFSET and _LOCATOR.size == 24

PLAT_NONE = b"\0\0\0\0"
PLAT_MACX = b"MacX"      # UTF-8 file:// URL
PLAT_W2KU = b"W2ku"      # UTF-16LE absolute path
PLAT_W2RU = b"W2ru"      # UTF-16LE relative path
KNOWN_PLATFORMS = (PLAT_MACX, PLAT_W2KU, PLAT_W2RU, b"Wi2r", b"Wi2k", b"Mac ")


@record
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

    @property
    def ms_size(self):
        """vhd_parent_locator_size (MICROSOFT_COMPAT): < 512 is sectors, a multiple of 512 is
        bytes, anything else 0."""
        if self.data_space < 512:
            return self.data_space * 512
        return self.data_space if self.data_space % 512 == 0 else 0

    def decode(self, data):
        """The path the locator holds, as blktap reads it (MacX: a file:// URL, stripped; W2ku/W2ru:
        UTF-16LE, backslashes to slashes, no C:), or None when it cannot be read."""
        data = bytes(data[:self.data_length])
        try:
            if self.code == PLAT_MACX:
                text = data.decode("utf-8").split("\0", 1)[0]
                return text[7:] if text.startswith("file://") else None
            if self.code in (PLAT_W2KU, PLAT_W2RU):
                return windows_path(data.decode("utf-16-le").split("\0", 1)[0])
        except UnicodeDecodeError:
            return None
        return None

    def findings(self, index, raw, file_size=None):
        """Validations of locator ``index`` (``raw``: its 24 bytes). blktap's
        (vhd_util_check_parent_locators) stops at the first reason; the converter's
        messages come with it."""
        found = []
        reason = None
        where = f"parent locator {index}"
        if self.code != PLAT_NONE and self.code not in KNOWN_PLATFORMS:
            reason = f"invalid platform code ({self.code!r})"
            found.append(Finding(None, f"{where}: unknown platform code {self.code!r}"))
        elif not self.used:
            reason = "non-zero locator" if any(raw) else None
        elif self.data_offset == 0:
            reason = "invalid data offset"
        elif self.data_space == 0:
            reason = "invalid data space"
        elif self.data_length == 0:
            reason = "invalid data length"
        elif file_size is not None and self.data_offset + self.ms_size > file_size - 512:
            reason = "invalid size"
        elif self.reserved:
            reason = "invalid reserved bits"
        if self.used:
            if self.data_offset % 512:
                found.append(Finding(None, f"{where}: data offset {self.data_offset} is not sector aligned"))
            if self.data_length > self.space_bytes:
                found.append(Finding(None, f"{where}: data length {self.data_length} exceeds its space "
                                     f"{self.space_bytes}"))
            if file_size is not None and self.data_offset + self.space_bytes > file_size:
                found.append(Finding(None, f"{where}: data at {self.data_offset} extends past the end of the file"))
        if reason:
            found.insert(0, Finding(f"invalid parent locator {index}: {reason}"))
        return found

    def pack(self):
        return _LOCATOR.pack(self.code, self.data_space, self.data_length, self.reserved, self.data_offset)


@record
class DynamicHeader:
    table_offset: int
    max_table_entries: int
    block_size: int = DEFAULT_BLOCK_SIZE
    parent_uuid: uuidlib.UUID = uuidlib.UUID(int=0)
    parent_timestamp: int = 0
    parent_name: str = ""
    locators: list = factory(lambda: [ParentLocator() for _ in range(LOCATOR_COUNT)])
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
        self.checksum = stamp_checksum(buf, CHECKSUM_OFFSET)
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

    def findings(self, footer=None, file_size=None):
        """Header validations in blktap's order (vhd_util_check_validate_header, then vhd_open's
        block size limit), with the converter's own checks in between."""
        found = []
        add = found.append
        if self.raw and self.computed_checksum != self.checksum:
            detail = f"stored 0x{self.checksum:08x}, computed 0x{self.computed_checksum:08x}"
            add(Finding("invalid checksum", f"invalid checksum: {detail}", detail))
        if self.version != HEADER_VERSION:
            add(Finding("invalid header version", f"invalid version 0x{self.version:08x}"))
        if self.data_offset != NO_DATA_OFFSET:
            add(Finding("invalid data offset", f"invalid data offset 0x{self.data_offset:x}"))
        bat_end = self.table_offset + self.max_table_entries * 4
        if self.table_offset % 512:
            message = f"BAT offset {self.table_offset} is not sector aligned"
        elif file_size is not None and bat_end > file_size:
            message = (f"BAT ({self.max_table_entries} entries at {self.table_offset}) extends past the "
                       f"end of the file ({file_size} bytes)")
        else:
            message = None
        if self.table_offset <= 0 or message or file_size is not None and bat_end > file_size - 512:
            where = f" in a {file_size}-byte file" if file_size is not None else ""
            add(Finding("invalid table offset", message,
                        f"BAT of {self.max_table_entries} entries at {self.table_offset}{where}"))
        bs = self.block_size
        message = None
        if bs < 512 or bs & (bs - 1) or bs > 256 * 1024 * 1024:
            message = f"invalid block size {bs}: not a power of two between 512 B and 256 MiB"
        if bs <= 0 or bs & (bs - 1):
            add(Finding("invalid block size", message, str(bs)))
        elif bs > MAX_OPEN_BLOCK_SIZE:
            add(Finding("invalid block size", message, f"{bs}: libvhd opens at most {MAX_OPEN_BLOCK_SIZE}"))
        elif message:
            add(Finding(None, message))
        if not message and footer is not None:
            needed = -(-footer.current_size // bs)
            if self.max_table_entries < needed:
                add(Finding(None, f"max table entries {self.max_table_entries} is less than the {needed} blocks "
                            f"the current size {footer.current_size} needs"))
        if self.raw and (any(self.raw[60:64]) or any(self.raw[LOCATOR_END:HEADER_SIZE])):
            add(Finding("invalid reserved bits"))
        return found

    def locator_raw(self, index):
        """The 24 bytes of locator ``index`` as read (or as they would be written)."""
        if self.raw:
            return self.raw[LOCATOR_OFFSET + 24 * index:LOCATOR_OFFSET + 24 * (index + 1)]
        return self.locators[index].pack()

    def locator_findings(self, file_size=None):
        """Parent locator validations (blktap: for differencing disks, after the BAT), then
        duplicate platform codes."""
        found, seen = [], set()
        for i, loc in enumerate(self.locators):
            mine = loc.findings(i, self.locator_raw(i), file_size)
            found.extend(mine)
            if not loc.used or any(f.reason for f in mine):
                continue
            if loc.code in seen:
                found.append(Finding(f"duplicate platform code in locator {i}: 0x{int.from_bytes(loc.code, 'big'):x}"))
            seen.add(loc.code)
        return found

    def problems(self, footer=None, file_size=None):
        """Why the converter would refuse this header (and its locators); [] when it reads it."""
        return messages(self.findings(footer, file_size) + self.locator_findings(file_size))

    def decode_parent_name(self, old_tap=False):
        """The parent name as blktap decodes it (UTF-16BE, or UTF-16 for tap 0.1 files; ASCII only;
        backslashes to slashes, no C:), or None when it cannot. iconv converts the whole
        512-byte field: a non-ASCII character even after the terminating NUL fails it."""
        try:
            decoded = self.raw_parent_name.decode("utf-16" if old_tap else "utf-16-be")
            decoded.encode("ascii")
            name = decoded.split("\0", 1)[0]
        except (UnicodeDecodeError, UnicodeEncodeError):
            return None
        return windows_path(name)

    def differencing_findings(self, footer, *, now=None):
        """vhd_util_check_validate_differencing_header (``now``: VHD time, None: timestamps skipped)."""
        found = []
        if footer.disk_type == DiskType.DIFFERENCING:
            if now is not None and self.parent_timestamp > now + TIMESTAMP_MAX_SLACK:
                found.append(Finding("parent creation time in future"))
            if self.decode_parent_name(footer.is_tap and footer.creator_version == 0x00000001) is None:
                found.append(Finding("invalid parent name"))
        else:
            if any(self.raw_parent_name):
                found.append(Finding("invalid non-null parent name"))
            if any(self.raw[LOCATOR_OFFSET:LOCATOR_END]) if self.raw else any(loc.used for loc in self.locators):
                found.append(Finding("invalid non-null parent locators"))
            if self.parent_uuid.int:
                found.append(Finding("invalid non-null parent uuid"))
            if self.parent_timestamp:
                found.append(Finding("invalid non-zero parent timestamp"))
        return found


def windows_path(path):
    """blktap's path clean-up of decoded names: backslashes become slashes, a leading C: goes."""
    path = path.replace("\\", "/")
    if path[:2] in ("C:", "c:"):
        path = path[2:]
    return path

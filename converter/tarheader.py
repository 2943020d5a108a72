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

"""One 512-byte tar header, read: ustar, GNU and v7, as GNU tar and Python's tarfile write them.

Reading only. ``tarfile`` is not imported for this: it imports ``shutil`` (and with it bz2,
lzma, fnmatch), several ms of every ``xen-vhd`` start for the few fields a conversion needs.
Writing images (``archive.pack_image``) still uses ``tarfile``.
"""

from converter.record import record

BLOCK = 512

REGULAR = b"0"
REGULAR_OLD = b"\0"       # v7 / AREGTYPE
HARD_LINK = b"1"
SYMLINK = b"2"
CHAR_DEVICE = b"3"
BLOCK_DEVICE = b"4"
DIRECTORY = b"5"
FIFO = b"6"
CONTIGUOUS = b"7"         # a regular file to every tar that reads it
PAX_HEADER = b"x"
PAX_GLOBAL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"
GNU_SPARSE = b"S"
EXTENSION_TYPES = (PAX_HEADER, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK)

_POSIX_MAGIC = b"ustar\x0000"
_GNU_TYPES = (GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE)


class HeaderError(ValueError):
    pass


@record
class TarHeader:
    name: str
    size: int
    type: bytes
    mode: int

    def kind(self):
        """None for a regular file; otherwise what the member is, in words."""
        if self.type in (REGULAR, REGULAR_OLD, CONTIGUOUS):
            return None
        return {DIRECTORY: "directory", SYMLINK: "symbolic link", HARD_LINK: "hard link",
                CHAR_DEVICE: "device node", BLOCK_DEVICE: "device node", FIFO: "fifo"}.get(
                    self.type, f"member of tar type {self.type!r}")


def _number(field):
    """A numeric field: octal text (NUL/space padded) or GNU base-256 (first byte 0x80/0xff)."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * (len(field) - 1))) if field[0] == 0xff else value
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise HeaderError("invalid number in header") from None


def _text(field):
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def parse(block):
    """The header in ``block`` (512 bytes, not all zeros); HeaderError if it is not one."""
    if len(block) != BLOCK:
        raise HeaderError("truncated header")
    stored = _number(block[148:156])
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])     # the checksum field as spaces
    if stored != unsigned:
        # Some old tars summed signed chars; tar and tarfile accept either.
        high = sum(1 for b in block[:148] if b > 127) + sum(1 for b in block[156:] if b > 127)
        if stored != unsigned - 256 * high:
            raise HeaderError("bad checksum")
    kind = block[156:157]
    name = _text(block[0:100])
    if block[257:265] == _POSIX_MAGIC and kind not in _GNU_TYPES:
        prefix = _text(block[345:500])
        if prefix:
            name = prefix + "/" + name
    size = _number(block[124:136])
    if size < 0:
        raise HeaderError("negative member size")
    if kind == REGULAR_OLD and name.endswith("/"):
        kind = DIRECTORY                   # v7 tar marks directories by the trailing slash only
    return TarHeader(name=name, size=size, type=kind, mode=_number(block[100:108]))

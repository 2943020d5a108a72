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

"""VHD writer: fixed, dynamic and differencing disks, XenServer style by default.

Layout written (as blktap's vhd-util does): footer copy @0, header @512, BAT @1536, optional
batmap, parent locators, then blocks in the order they are first written, footer at the end.
Creator 'tap' 1.3 with creator OS 0, 2 MiB blocks and, like blktap, a batmap in every dynamic
and differencing disk of tap >= 1.2 (``batmap=None``; True/False force it); differencing disks
carry a parent name and MacX/W2ku locators that may point at files that do not exist
(XenServer images link by position).
"""

import os
import uuid as uuidlib

from converter import bat as batlib
from converter.errors import FormatError, OutputError, UsageError
from converter.footer import FOOTER_SIZE, DiskType, Footer, chs_geometry, now_timestamp
from converter.fsutil import atomic_path
from converter.header import DEFAULT_BLOCK_SIZE, HEADER_SIZE, PLAT_MACX, PLAT_W2KU, DynamicHeader, ParentLocator
from converter.sink import punch_hole

DISK_TYPES = {"fixed": DiskType.FIXED, "dynamic": DiskType.DYNAMIC, "differencing": DiskType.DIFFERENCING}
MAX_VHD_SIZE = 2040 * 1024 ** 3        # what blktap accepts
TAP_OS = b"\0\0\0\0"                    # blktap leaves the creator OS zero
OTHER_OS = b"Lnux"
LOCATOR_SPACE = 512


TAP_NO_BATMAP_VERSION = 0x00010001   # tap 1.1: libvhd probes for a batmap, finds none


class VhdWriter:
    """Write a VHD. ``write(offset, data)`` marks whole sectors present (bitmap bits set).

    ``fill``: 512 bytes written over every newly allocated block before data goes in, so that
    sectors whose bitmap bit stays clear hold those bytes (crafted files for read-rule tests).
    ``footer_511``: end the file with an old-style 511-byte footer.
    """

    def __init__(self, path, *, disk_type="dynamic", size, original_size=None, parent_uuid=None,
                 parent_name=None, parent_timestamp=None, hidden=False, block_size=DEFAULT_BLOCK_SIZE,
                 creator_app=b"tap\0", creator_version=0x00010003, uuid=None, batmap=None,
                 max_table_entries=None, timestamp=None, fill=None, footer_511=False, locators=True):
        if disk_type not in DISK_TYPES:
            raise UsageError("disk type", f"{disk_type!r} is not one of {', '.join(DISK_TYPES)}")
        if size <= 0 or size % 512 or size > MAX_VHD_SIZE:
            raise UsageError("size", f"{size} must be a positive multiple of 512 up to {MAX_VHD_SIZE}")
        if block_size < 512 or block_size & (block_size - 1):
            raise UsageError("block size", f"{block_size} is not a power of two >= 512")
        self.path = os.fspath(path)
        self.type = DISK_TYPES[disk_type]
        self.size = size
        self.uuid = uuid or uuidlib.uuid4()
        self.hidden = hidden
        self.fill = fill
        self.footer_511 = footer_511
        if batmap is False and creator_app[:3] == b"tap" and creator_version >= batlib.TAP_BATMAP_SINCE:
            # libvhd insists on a batmap from tap 1.2 on (check/resize/coalesce fail with -22);
            # for 1.1 it looks for one and does without: what batmap-less tap files carry
            creator_version = TAP_NO_BATMAP_VERSION
        self.footer = Footer(disk_type=self.type, current_size=size, original_size=original_size or size,
                             uuid=self.uuid, timestamp=now_timestamp() if timestamp is None else timestamp,
                             creator_app=creator_app, creator_version=creator_version,
                             creator_os=TAP_OS if creator_app[:3] == b"tap" else OTHER_OS,
                             geometry=chs_geometry(size), hidden=1 if hidden else 0)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.closed = False
        if self.type == DiskType.FIXED:
            return
        entries = -(-size // block_size)
        self.header = DynamicHeader(table_offset=FOOTER_SIZE + HEADER_SIZE,
                                    max_table_entries=max_table_entries or entries, block_size=block_size)
        if self.header.max_table_entries < entries:
            raise UsageError("max table entries", f"{max_table_entries} < {entries} blocks needed")
        self.footer.data_offset = FOOTER_SIZE
        self.spb = block_size // 512
        self.bat = [batlib.UNUSED] * entries
        self.masks = {}                 # block -> present-sector mask (MSB-first)
        pos = self.header.table_offset + self.header.bat_size
        if batmap is None:          # as blktap would
            batmap = creator_app[:3] == b"tap" and creator_version >= batlib.TAP_BATMAP_SINCE
        self.batmap = batmap
        if batmap:
            pos += 512 + batmap_sectors(self.header.max_table_entries) * 512
        if self.type == DiskType.DIFFERENCING:
            if parent_uuid is None:
                raise UsageError("parent", "a differencing disk needs the parent's UUID")
            self.header.parent_uuid = parent_uuid
            self.header.parent_timestamp = parent_timestamp or 0
            self.header.parent_name = parent_name or f"{parent_uuid}.vhd"
            if locators:
                name = self.header.parent_name
                entries_data = [(PLAT_MACX, f"file://./{name}".encode("utf-8")),
                                (PLAT_W2KU, name.encode("utf-16-le"))]
                for i, (code, data) in enumerate(entries_data):
                    self.header.locators[i] = ParentLocator(code=code, data_space=LOCATOR_SPACE,
                                                            data_length=len(data), data_offset=pos)
                    os.pwrite(self.fd, data.ljust(LOCATOR_SPACE, b"\0"), pos)
                    pos += LOCATOR_SPACE
        self.data_end = pos
        self.bitmap_size = self.header.bitmap_size

    # -- data ------------------------------------------------------------------------------
    def write(self, offset, data):
        if self.closed:
            raise ValueError("writer is closed")
        n = len(data)
        if offset % 512 or n % 512 or offset < 0 or offset + n > self.size:
            raise UsageError(self.path, f"write of {n} bytes at {offset}: must be whole sectors inside "
                             f"the {self.size}-byte disk")
        if self.type == DiskType.FIXED:
            os.pwrite(self.fd, data, offset)
            return
        view = memoryview(data)
        sector, end = offset // 512, (offset + n) // 512
        while sector < end:
            block, first = divmod(sector, self.spb)
            count = min(self.spb - first, end - sector)
            start = self._block_offset(block)
            piece = view[(sector - offset // 512) * 512:(sector - offset // 512 + count) * 512]
            os.pwrite(self.fd, piece, start + self.bitmap_size + first * 512)
            self.masks[block] |= ((1 << count) - 1) << (self.spb - first - count)
            sector += count

    def _block_offset(self, block):
        entry = self.bat[block]
        if entry == batlib.UNUSED:
            start = self.data_end
            self.bat[block] = start // 512
            self.masks[block] = 0
            self.data_end = start + self.bitmap_size + self.spb * 512
            if self.fill is not None:
                os.pwrite(self.fd, self.fill * self.spb, start + self.bitmap_size)
            return start
        return entry * 512

    def reserve(self, blocks):
        """Room for ``blocks`` more blocks: set the file size now, because writes that extend a
        file cost ext4 several times more than writes inside it (measured: tgz->vhd 2x). The
        size is set exactly at close."""
        if self.type != DiskType.FIXED and blocks > 0:
            os.ftruncate(self.fd, self.data_end + blocks * (self.bitmap_size + self.spb * 512) + FOOTER_SIZE)

    def allocate(self, block):
        """Allocate a block without marking sectors (bitmap all clear)."""
        self._block_offset(block)

    # -- the end ---------------------------------------------------------------------------
    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self._write_metadata()      # no fsync: like qemu-img convert and raw outputs
        finally:
            os.close(self.fd)

    def _write_metadata(self):
        footer = self.footer.pack()
        if self.type == DiskType.FIXED:
            os.pwrite(self.fd, footer[:511] if self.footer_511 else footer, self.size)
            os.ftruncate(self.fd, self.size + (511 if self.footer_511 else 512))
            return
        write_dynamic_metadata(self.fd, self.footer, self.header, self.bat, self.masks, batmap=self.batmap,
                               data_end=self.data_end, footer_511=self.footer_511)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type is None:
            self.close()
        else:
            self.closed = True
            os.close(self.fd)


def write_dynamic_metadata(fd, footer, header, bat, masks, *, batmap, data_end, footer_511=False):
    """Everything but the data of a dynamic/differencing VHD: each block's bitmap from
    ``masks`` (block -> MSB-first present-sector mask), the BAT, blktap's batmap right after
    the BAT (when ``batmap``), the header, the footer copy at 0 and the footer at ``data_end``,
    where the file then ends."""
    spb = header.sectors_per_block
    full = []
    for block, mask in masks.items():
        os.pwrite(fd, batlib.mask_bitmap(mask, spb, header.bitmap_size), bat[block] * 512)
        if mask == (1 << spb) - 1:
            full.append(block)
    os.pwrite(fd, batlib.pack_bat(bat, header.max_table_entries), header.table_offset)
    if batmap:
        at = header.table_offset + header.bat_size
        sectors = batmap_sectors(header.max_table_entries)
        data = batlib.make_batmap(full, header.max_table_entries).ljust(sectors * 512, b"\0")
        hdr = batlib.BatmapHeader(batmap_offset=at + 512, batmap_size=sectors,
                                  checksum=batlib.batmap_checksum(data, footer.current_size))
        os.pwrite(fd, hdr.pack(), at)
        os.pwrite(fd, data, at + 512)
    packed = footer.pack()
    os.pwrite(fd, header.pack(), FOOTER_SIZE)
    os.pwrite(fd, packed, 0)
    tail = packed[:511] if footer_511 else packed
    os.pwrite(fd, tail, data_end)
    os.ftruncate(fd, data_end + len(tail))


def batmap_sectors(max_table_entries):
    """Sectors of blktap's batmap: one bit per BAT entry."""
    return -(-((max_table_entries + 7) // 8) // 512)


class VhdSink:
    """A composition target that is one dynamic VHD (the coalesced output), written in one pass.

    The disk's size is known only at ``finish``: a tgz's members come in any order and the
    leaf's size decides. So blocks go, in the order data first reaches them, after room for
    the largest BAT and batmap a VHD can have; what the final metadata leaves unused stays a
    hole. Every allocated block's bitmap is full (sectors never written read as zero), as in
    ``vhd_from_raw``; blocks only ever given zeros are not allocated.
    """

    needs_zeroing = False
    overlappable = True                  # may run on the write-behind thread

    def __init__(self, fd, where, *, block_size=DEFAULT_BLOCK_SIZE):
        self.fd = fd
        self.where = where
        self.block_size = block_size
        self.bitmap_size = -(-(block_size // 512 // 8) // 512) * 512
        most = -(-MAX_VHD_SIZE // block_size)
        room = FOOTER_SIZE + HEADER_SIZE + -(-most * 4 // 512) * 512 + 512 + batmap_sectors(most) * 512
        self.data_start = -(-room // 4096) * 4096
        self.data_end = self.data_start
        self.slots = {}                  # block -> file offset of its bitmap
        self.bytes_written = 0
        self._sized = 0

    def _slot(self, block):
        at = self.slots.get(block)
        if at is None:
            at = self.slots[block] = self.data_end
            self.data_end += self.bitmap_size + self.block_size
            if self.data_end > self._sized:
                # Size the file ahead: writes that extend a file cost ext4 several times more.
                self._sized = self.data_end + 64 * (self.bitmap_size + self.block_size)
                os.ftruncate(self.fd, self._sized)
        return at

    def _pieces(self, offset, length):
        pos = 0
        while pos < length:
            block, within = divmod(offset + pos, self.block_size)
            count = min(self.block_size - within, length - pos)
            yield pos, block, within, count
            pos += count

    def write(self, offset, data):
        view = memoryview(data)
        try:
            for pos, block, within, count in self._pieces(offset, len(view)):
                os.pwrite(self.fd, view[pos:pos + count], self._slot(block) + self.bitmap_size + within)
        except OSError as exc:
            raise OutputError(self.where, f"write failed: {exc.strerror}") from None
        self.bytes_written += len(view)

    def zero(self, offset, length, prev):
        if not prev:
            return
        for _, block, within, count in self._pieces(offset, length):
            at = self.slots.get(block)
            if at is not None:           # a block never written reads as zero already
                punch_hole(self.fd, at + self.bitmap_size + within, count)

    def reserve(self, size):
        if size > MAX_VHD_SIZE:
            raise OutputError(self.where, f"a VHD holds at most {MAX_VHD_SIZE} bytes; the disk is {size}")

    def finish(self, size):
        self.reserve(size)
        entries = -(-size // self.block_size)
        header = DynamicHeader(table_offset=FOOTER_SIZE + HEADER_SIZE, max_table_entries=entries,
                               block_size=self.block_size)
        # Footer defaults: creator tap 1.3, as blktap writes (and so a batmap, as blktap would).
        footer = Footer(disk_type=DiskType.DYNAMIC, current_size=size, original_size=size, uuid=uuidlib.uuid4(),
                        timestamp=now_timestamp(), creator_os=TAP_OS, geometry=chs_geometry(size),
                        data_offset=FOOTER_SIZE)
        bat = [batlib.UNUSED] * entries
        full = (1 << header.sectors_per_block) - 1
        masks = {}
        for block, at in self.slots.items():
            if block < entries:          # beyond the size: older data the leaf cut off
                bat[block] = at // 512
                masks[block] = full
            else:
                punch_hole(self.fd, at, self.bitmap_size + self.block_size)
        write_dynamic_metadata(self.fd, footer, header, bat, masks,
                               batmap=footer.creator_version >= batlib.TAP_BATMAP_SINCE, data_end=self.data_end)


def set_hidden(path, hidden):
    """Set XenServer's hidden flag (footer byte 85) in both footers, checksums updated."""
    path = os.fspath(path)
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        tail_len = 511 if size % 512 == 511 else 512
        offsets = [size - tail_len]
        f.seek(size - tail_len)
        footer = Footer.unpack(f.read(tail_len), f"{path}: footer")
        if footer.is_dynamic:
            offsets.append(0)
        footer.hidden = 1 if hidden else 0
        raw = footer.pack()
        for off in offsets:
            f.seek(off)
            f.write(raw[:tail_len] if off else raw)


def vhd_from_raw(raw_path, vhd_path, *, block_size=DEFAULT_BLOCK_SIZE, progress=None, **footer_fields):
    """A dynamic VHD holding a raw disk: every block with non-zero data, bitmap full.

    Holes of a sparse raw file are skipped without reading them (SEEK_DATA/SEEK_HOLE).
    """
    raw_path, vhd_path = os.fspath(raw_path), os.fspath(vhd_path)
    fd = os.open(raw_path, os.O_RDONLY)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size % 512:
            raise FormatError(raw_path, f"size {size} is not a multiple of 512: not a disk image")
        zero = bytes(block_size)
        buf = memoryview(bytearray(block_size))     # one buffer for every block: no page faults
        with atomic_path(vhd_path) as tmp:
            with VhdWriter(tmp, size=size, block_size=block_size, **footer_fields) as w:
                w.reserve(sum(1 for _ in data_blocks(fd, size, block_size)))
                for offset in data_blocks(fd, size, block_size):
                    data = buf[:min(block_size, size - offset)]
                    if os.preadv(fd, [data], offset) != len(data):
                        raise FormatError(raw_path, f"short read at {offset}")
                    if not zero.startswith(data):       # memcmp; memoryview == is element-wise
                        w.write(offset, data)
                    if progress:
                        progress(offset + len(data), size)
            uid = w.uuid
    finally:
        os.close(fd)
    return uid


def data_blocks(fd, size, block_size):
    """Offsets of blocks of a (sparse) file that may hold data."""
    pos = 0
    while pos < size:
        try:
            data_at = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return
        block = data_at // block_size * block_size
        hole_at = os.lseek(fd, data_at, os.SEEK_HOLE)
        while block < hole_at and block < size:
            yield block
            block += block_size
        pos = max(block, hole_at)


def read_footer(path):
    """The footer of a VHD file (for tools that only need identity: uuid, sizes, hidden)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        tail_len = 511 if size % 512 == 511 else 512
        f.seek(max(size - tail_len, 0))
        return Footer.unpack(f.read(tail_len), f"{path}: footer")


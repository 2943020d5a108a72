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

"""A VHD file opened for in-place editing, and the journal that makes a resize revertible."""

import errno
import hashlib
import os
import signal
import struct

from converter import bat as batlib
from converter.errors import FormatError
from converter.footer import FOOTER_SIZE, DiskType, Footer, chs_geometry
from converter.header import HEADER_SIZE, PLAT_MACX, PLAT_W2KU, PLAT_W2RU, DynamicHeader
from converter.writer import batmap_sectors

JOURNAL_MAGIC = b"XVHDJRN1"
# Tests: "resize" kills the process half-way through a resize; "write:N" kills it just before
# its Nth write (pwrite, write or truncate) to an image or a journal.
FAULT_ENV = "XEN_VHD_UTIL_FAULT"


class Fail(Exception):
    """One line for stdout and blktap's exit code (an errno)."""

    def __init__(self, code, line):
        super().__init__(line)
        self.code = code
        self.line = line


class _Faults:
    """Counts writes; ``kill_at``: the write before which the process dies (None: never)."""
    writes = 0
    kill_at = None
    die = staticmethod(lambda: os.kill(os.getpid(), signal.SIGKILL))


def _parse_fault(value):
    if value and value.startswith("write:") and value[6:].isdigit():
        return int(value[6:])
    return None


_Faults.kill_at = _parse_fault(os.environ.get(FAULT_ENV))


def arm(kill_at, die=None):
    """Tests in-process: restart the count, die before write ``kill_at`` (None: never)."""
    _Faults.writes, _Faults.kill_at = 0, kill_at
    _Faults.die = die or _Faults.die


def writes_done():
    return _Faults.writes


def point():
    """One write (or a step as risky: removing a journal); the fault hook may kill here."""
    _Faults.writes += 1
    if _Faults.writes == _Faults.kill_at:
        _Faults.die()


def pwrite(fd, data, offset):
    point()
    return os.pwrite(fd, data, offset)


def write(fd, data):
    point()
    return os.write(fd, data)


def ftruncate(fd, size):
    point()
    os.ftruncate(fd, size)


def _round(n):
    return -(-n // 512) * 512


class Image:
    def __init__(self, path, *, writable=False):
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        except OSError as exc:
            raise Fail(exc.errno, f"error opening {path}: {-exc.errno}") from None
        try:
            self._load()
        except (FormatError, struct.error, ValueError) as exc:
            os.close(self.fd)
            raise Fail(errno.EINVAL, f"error opening {path}: -{errno.EINVAL} ({exc})") from None
        self.masks = {}          # block -> present-sector mask, loaded or changed
        self.meta_dirty = False

    def _load(self):
        size = os.lseek(self.fd, 0, os.SEEK_END)
        self.file_size = size
        tail = 511 if size % 512 == 511 else 512
        if size < tail:
            raise FormatError(self.path, "too small for a VHD footer")
        self.data_end = size - tail          # where the trailing footer is
        self.footer = Footer.unpack(os.pread(self.fd, tail, size - tail), f"{self.path}: footer")
        if self.footer.computed_checksum != self.footer.checksum:
            raise FormatError(self.path, "footer checksum mismatch")
        self.header = self.bat = self.batmap_header = self.batmap = None
        if not self.footer.is_dynamic:
            return
        if self.footer.data_offset + HEADER_SIZE > size:
            raise FormatError(self.path, f"header offset {self.footer.data_offset} is past the end of the file")
        h = self.header = DynamicHeader.unpack(os.pread(self.fd, HEADER_SIZE, self.footer.data_offset),
                                               f"{self.path}: header")
        if h.computed_checksum != h.checksum:
            raise FormatError(self.path, "header checksum mismatch")
        if h.table_offset + h.max_table_entries * 4 > size:
            raise FormatError(self.path, "BAT past the end of the file")
        for i, loc in enumerate(h.locators):
            if loc.used and loc.data_offset + max(loc.space_bytes, loc.data_length) > size:
                raise FormatError(self.path, f"parent locator {i} data is past the end of the file")
        if h.max_table_entries * h.block_size < self.footer.current_size:
            raise FormatError(self.path, f"BAT of {h.max_table_entries} entries is too small for "
                                         f"{self.footer.current_size} bytes")
        self.bat = list(batlib.unpack_bat(os.pread(self.fd, h.max_table_entries * 4, h.table_offset),
                                          h.max_table_entries))
        at = batlib.batmap_header_offset(h)
        bh = batlib.BatmapHeader.unpack(os.pread(self.fd, 512, at)) if at + 512 <= size else None
        if batlib.has_batmap(self.footer, bh) and bh is not None:
            if bh.batmap_offset + bh.batmap_size * 512 > size:
                raise FormatError(self.path, f"batmap of {bh.batmap_size} sectors at {bh.batmap_offset} "
                                             "is past the end of the file")
            self.batmap_header = bh
            self.batmap = bytearray(os.pread(self.fd, bh.batmap_size * 512, bh.batmap_offset))

    def close(self):
        os.close(self.fd)

    # --- facts ---------------------------------------------------------------------------
    @property
    def spb(self):
        return self.header.sectors_per_block

    @property
    def block_bytes(self):
        return self.header.bitmap_size + self.header.block_size

    def end_of_headers(self):
        h = self.header
        end = max(self.footer.data_offset + HEADER_SIZE, h.table_offset + h.bat_size)
        if self.batmap_header is not None:
            end = max(end, h.table_offset + h.bat_size + 512,
                      self.batmap_header.batmap_offset + self.batmap_header.batmap_size * 512)
        for loc in h.locators:
            if loc.used:
                end = max(end, loc.data_offset + loc.space_bytes)
        return end

    def end_of_data(self):
        """vhd_end_of_data: the end of the metadata or of the last block."""
        if not self.footer.is_dynamic:
            return self.footer.current_size
        ends = [e * 512 + self.block_bytes for e in self.bat if e != batlib.UNUSED]
        return max([self.end_of_headers(), *ends])

    def locator_paths(self):
        """Parent paths the locators hold (MACX, then W2RU, then W2KU), as written."""
        found = {}
        for loc in self.header.locators:
            if loc.code in (PLAT_MACX, PLAT_W2RU, PLAT_W2KU) and 0 < loc.data_length <= 65536:
                path = loc.decode(os.pread(self.fd, loc.data_length, loc.data_offset))
                if path:
                    found.setdefault(loc.code, path)
        return [found[c] for c in (PLAT_MACX, PLAT_W2RU, PLAT_W2KU) if c in found]

    def parent_path(self):
        """vhd_parent_locator_get: the first locator naming an existing file, relative paths
        taken from the child's directory."""
        base = os.path.dirname(os.path.abspath(self.path))
        for path in self.locator_paths():
            full = os.path.normpath(os.path.join(base, path))
            if os.path.exists(full):
                return full
        raise Fail(errno.ENOENT, f"error finding {self.path} parent: -{errno.ENOENT}")

    # --- growing -------------------------------------------------------------------------
    def grow_plan(self, new_size):
        """The metadata end after growing to ``new_size`` (for the journal)."""
        if not self.footer.is_dynamic:
            return 0
        entries = -(-new_size // self.header.block_size)
        if entries <= self.header.max_table_entries:
            return self.end_of_headers()
        pos = self.header.table_offset + _round(entries * 4)
        pos += 512 + batmap_sectors(entries) * 512 if self.batmap_header is not None else 512
        for loc in self.header.locators:
            if loc.used:
                pos += loc.space_bytes
        return max(pos, self.end_of_headers())

    def grow(self, new_size, fault=None):
        """Grow the virtual size in place; the BAT and batmap grow where they are, and blocks
        (and locator data) in the way move to the end of the file."""
        f = self.footer
        if not f.is_dynamic:
            pwrite(self.fd, bytes(FOOTER_SIZE), self.data_end)    # the old footer is data now
            ftruncate(self.fd, new_size)
            self.data_end = new_size
        else:
            h = self.header
            entries = -(-new_size // h.block_size)
            if entries > h.max_table_entries:
                self._grow_table(entries, fault)
                fault = None
        f.current_size = new_size
        f.geometry = chs_geometry(new_size)
        self.meta_dirty = True
        if fault:       # the preallocated case: killed after the first footer copy changed
            pwrite(self.fd, f.pack(), 0 if f.is_dynamic else self.data_end)
            fault()

    def _grow_table(self, entries, fault):
        h = self.header
        pos = h.table_offset + _round(entries * 4)
        bm_at = clear_at = None
        if self.batmap_header is not None:
            bm_at = pos
            pos += 512 + batmap_sectors(entries) * 512
        else:       # a zero sector where a batmap header is looked for, not a moved block's data
            clear_at = pos
            pos += 512
        moves = []
        for loc in h.locators:
            if loc.used:
                data = os.pread(self.fd, loc.space_bytes, loc.data_offset)
                moves.append((loc, pos, data))
                pos += loc.space_bytes
        meta_end = pos
        self.data_end = max(self.data_end, _round(meta_end))
        for index, entry in sorted(enumerate(self.bat), key=lambda p: p[1]):
            if entry != batlib.UNUSED and entry * 512 < meta_end:
                data = os.pread(self.fd, self.block_bytes, entry * 512)
                pwrite(self.fd, data, self.data_end)
                self.bat[index] = self.data_end // 512
                self.data_end += self.block_bytes
        if fault:
            fault()
        for loc, at, data in moves:
            pwrite(self.fd, data, at)
            loc.data_offset = at
        if clear_at is not None:
            pwrite(self.fd, bytes(512), clear_at)
        self.bat.extend([batlib.UNUSED] * (entries - len(self.bat)))
        h.max_table_entries = entries
        if bm_at is not None:
            size = batmap_sectors(entries)
            self.batmap = self.batmap.ljust(size * 512, b"\0")[:size * 512]
            self.batmap_header.batmap_offset = bm_at + 512
            self.batmap_header.batmap_size = size
        self.meta_dirty = True

    # --- data ----------------------------------------------------------------------------
    def write_sectors(self, sector, data):
        """Write whole sectors at ``sector``: blocks allocated as needed, bitmaps set."""
        view = memoryview(data)
        if not self.footer.is_dynamic:
            pwrite(self.fd, view, sector * 512)
            return
        spb, bmsize = self.spb, self.header.bitmap_size
        done, total = 0, len(view) // 512
        while done < total:
            block, first = divmod(sector + done, spb)
            n = min(spb - first, total - done)
            entry = self.bat[block]
            if entry == batlib.UNUSED:
                entry = self.bat[block] = self.data_end // 512
                self.data_end += self.block_bytes
                pwrite(self.fd, bytes(self.block_bytes), entry * 512)
                # the file keeps ending in a footer (blktap writes it after each new block): a
                # process killed here leaves a file that opens, its old BAT not naming the block
                pwrite(self.fd, self.footer.pack(), self.data_end)
                self.masks[block] = 0
            elif block not in self.masks:
                self.masks[block] = batlib.bitmap_mask(os.pread(self.fd, bmsize, entry * 512), spb)
            pwrite(self.fd, view[done * 512:(done + n) * 512], entry * 512 + bmsize + first * 512)
            self.masks[block] |= ((1 << n) - 1) << (spb - first - n)
            done += n
        self.meta_dirty = True

    def mark_coalescing(self, child_uuid):
        """Say in both footer copies, before any data changes, that a coalesce from
        ``child_uuid`` is under way; ``flush`` writes the footers without it, last."""
        self.footer.coalescing = child_uuid
        packed = self.footer.pack()
        pwrite(self.fd, packed, self.data_end)
        if self.footer.is_dynamic:
            pwrite(self.fd, packed, 0)
        os.fsync(self.fd)

    def flush(self):
        """Bitmaps, BAT, batmap, header and both footers; the file ends after the footer."""
        if not self.meta_dirty:
            return
        f, h = self.footer, self.header
        if f.is_dynamic:
            full = (1 << self.spb) - 1
            for block, mask in self.masks.items():
                pwrite(self.fd, batlib.mask_bitmap(mask, self.spb, h.bitmap_size), self.bat[block] * 512)
                if self.batmap is not None and mask == full:
                    self.batmap[block >> 3] |= 0x80 >> (block & 7)
            pwrite(self.fd, batlib.pack_bat(self.bat, h.max_table_entries), h.table_offset)
            if self.batmap is not None:
                bh = self.batmap_header
                bh.checksum = batlib.batmap_checksum(self.batmap, f.current_size, bh.batmap_version)
                pwrite(self.fd, bh.pack(), batlib.batmap_header_offset(h))
                pwrite(self.fd, bytes(self.batmap), bh.batmap_offset)
            pwrite(self.fd, h.pack(), f.data_offset)
        packed = f.pack()
        if f.is_dynamic:
            pwrite(self.fd, packed, 0)
        pwrite(self.fd, packed, self.data_end)
        ftruncate(self.fd, self.data_end + FOOTER_SIZE)
        os.fsync(self.fd)
        self.meta_dirty = False


# --- journal ---------------------------------------------------------------------------------
def write_journal(jpath, image, meta_end):
    """Everything a grow can overwrite: the file's size, its first ``meta_end`` bytes and its
    trailing footer. Created exclusively (an existing journal is refused), synced, sealed with
    a SHA-256 so that a journal cut short is never applied."""
    try:
        jfd = os.open(jpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise Fail(exc.errno, f"creating journal failed: {-exc.errno}") from None
    size = image.file_size
    regions = [(0, min(meta_end, size)), (image.data_end, size - image.data_end)]
    body = bytearray(JOURNAL_MAGIC + struct.pack(">QI", size, len(regions)))
    for off, n in regions:
        body += struct.pack(">QQ", off, n) + os.pread(image.fd, n, off)
    body += hashlib.sha256(body).digest()
    try:
        write(jfd, body)
        os.fsync(jfd)
    finally:
        os.close(jfd)
    _fsync_dir(jpath)


def _fsync_dir(path):
    """The journal's directory entry on disk before the image changes (power loss too)."""
    try:
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def revert(path, jpath):
    try:
        with open(jpath, "rb") as j:
            body = j.read()
    except OSError as exc:
        raise Fail(exc.errno, f"opening journal failed: {-exc.errno}") from None
    if body[:8] != JOURNAL_MAGIC or len(body) < 52 or hashlib.sha256(body[:-32]).digest() != body[-32:]:
        raise Fail(errno.EINVAL, f"opening journal failed: -{errno.EINVAL} (not a complete xen-vhd-util journal)")
    size, count = struct.unpack_from(">QI", body, 8)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise Fail(exc.errno, f"opening journal failed: {-exc.errno}") from None
    try:
        pos = 20
        for _ in range(count):
            off, n = struct.unpack_from(">QQ", body, pos)
            pos += 16
            pwrite(fd, body[pos:pos + n], off)
            pos += n
        ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(jpath)


def fault_hook(name):
    """A kill in the middle of ``name`` when the fault variable asks for it (tests)."""
    if os.environ.get(FAULT_ENV) == name:
        return lambda: os.kill(os.getpid(), signal.SIGKILL)
    return None


__all__ = ["Fail", "Image", "write_journal", "revert", "fault_hook", "arm", "point", "writes_done", "DiskType"]

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

"""One VHD file: metadata read in offset order, then its blocks in file order.

``VhdMember.open(source)`` reads footer, dynamic header, BAT, batmap and locator data;
``blocks()`` yields ``Block``s (first virtual sector, sector count, bitmap mask, data) in file
order so a forward-only stream never seeks back; ``finish()`` reads the trailing footer.

This is the only VHD reader: conversion, ``ChainReader``, check, scan and dump all use it.
``strict=True`` (conversion) raises a FormatError on the first problem. ``strict=False``
(inspection) never raises for bad content: it records what it found - the raw footer copies,
block faults (``faults``: blocks clobbering headers, the footer or another block, in blktap's
terms), regions a stream could not reach (``unread``), why reading stopped (``fatal``) - and
skips blocks it cannot use.

Every field that sizes a read is checked against the real file size first: an untrusted
header can never make us allocate or loop beyond what the file holds.
"""

import heapq

from converter import bat as batlib
from converter.errors import FormatError
from converter.footer import COOKIE as FOOTER_COOKIE
from converter.footer import FOOTER_SIZE, NO_DATA_OFFSET, DiskType, Footer
from converter.header import COOKIE as HEADER_COOKIE
from converter.header import HEADER_SIZE, DynamicHeader
from converter.record import record

FIXED_CHUNK = 2 * 1024 * 1024   # fixed disks are streamed in pieces this size
MAX_LOCATOR_BYTES = 64 * 1024   # never read more than this for a path


@record
class Block:
    index: int            # BAT index (or piece number of a fixed disk)
    first_sector: int     # first virtual sector it covers
    nsectors: int         # sectors in use (the last block may be cut by the current size)
    mask: int | None      # MSB-first bitmap of nsectors bits; None = every sector present
    data: memoryview | None   # nsectors * 512 bytes (None when only the bitmap was asked for)


@record
class BlockFault:
    """An allocated block in the wrong place (vhd_util_check_bat's cases).

    ``kind``: 'headers' (starts before the end of the metadata), 'footer' (runs into the
    trailing footer or past the end of the file), 'block' (overlaps ``other``, the block
    before it in the file). ``entry``/``other_entry`` are BAT values, in sectors.
    """
    kind: str
    index: int
    entry: int
    other: int | None = None
    other_entry: int | None = None


class VhdMember:
    """A parsed VHD. ``strict`` raises on the first problem; otherwise problems are collected."""

    def __init__(self, source, strict=True):
        self.source = source
        self.where = source.where
        self.strict = strict
        self.problems = []          # the converter's refusals, when not strict
        self.footer = None          # authoritative footer
        self.head_raw = None        # the 512 bytes at offset 0 (None: not read)
        self.tail_raw = None        # the bytes where the trailing footer belongs, padded to 512
        self.head_footer = None     # the copy at offset 0 (when it has the cookie)
        self.tail_footer = None
        self.header = None
        self.header_raw = None
        self.bat = None             # entries in use (follow the current size)
        self.bat_error = None       # why the BAT was not read (not strict)
        self.bat_extra_used = 0     # allocated entries beyond the current size (preallocated BATs)
        self.batmap_header = None
        self.batmap_unread = False  # a stream had gone past the batmap header
        # A stream meets a batmap header position that lies in block data only as some block's
        # sector bitmap: those 512 bytes, kept when a block's bitmap covers it (see blocks()).
        self._batmap_probe = None
        self.batmap_probe_raw = None
        self.batmap = None
        self.locator_data = {}
        self.first_data = None      # first byte after metadata
        self.end_of_headers = None  # blktap's vhd_end_of_headers (bytes)
        self.faults = []            # BlockFault
        self.unread = []            # regions a stream could not go back to
        self.fatal = None           # why reading stopped (not strict)
        self.footer_size = FOOTER_SIZE
        self._allocated = []        # (entry, index) of usable blocks, file order
        self._fixed_pending = False
        self._head_bytes = b""
        self._buffer = bytearray()  # block reads with reuse=True

    # --- problems -------------------------------------------------------------------------
    def problem(self, detail, field=None):
        if self.strict:
            raise FormatError(self.where, detail, field=field)
        self.problems.append(f"{field}: {detail}" if field else detail)

    def fail(self, detail, field=None):
        """Reading cannot go on: raise when strict, else remember why and stop."""
        if self.strict:
            raise FormatError(self.where, detail, field=field)
        self.fatal = detail

    def _read(self, offset, n, what, *, required=True):
        """Bytes at ``offset``; None when a stream has gone past them (strict: only when
        not ``required``, the read raising otherwise)."""
        src = self.source
        if src.streaming and offset < src.pos and not (self.strict and required):
            if not self.strict:
                self.unread.append(f"{what} at byte {offset} comes before data already read: not checked "
                                   "from the stream (extract the archive to check it)")
            return None
        return src.read_at(offset, n)

    @property
    def data_end(self):
        """Where block data must end: the start of the trailing footer."""
        return self.source.size - self.footer_size

    # --- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, source, strict=True):
        member = cls(source, strict)
        member._open()
        return member

    @classmethod
    def inspect(cls, source):
        """Metadata only, tolerant (scan, dump): open, then read the trailing footer."""
        member = cls.open(source, strict=False)
        member.finish()
        return member

    def _open(self):
        src = self.source
        if src.size % 512 == FOOTER_SIZE - 1:
            self.footer_size = FOOTER_SIZE - 1
        if src.size < self.footer_size:
            return self.fail(f"{src.size} bytes is too small to be a VHD (no footer)")
        head = src.read_at(0, FOOTER_SIZE) if src.size >= FOOTER_SIZE else b""
        self.head_raw = head or None
        if head[:8] == FOOTER_COOKIE:
            self.head_footer = Footer.unpack(head, "head footer")
        if src.streaming:
            if self.head_footer is not None and self.head_footer.is_dynamic:
                self._adopt(self.head_footer, "head footer")
                return self._open_dynamic()
            # No dynamic footer copy in front: a fixed disk (or not a VHD); the footer comes last.
            self._fixed_pending = True
            self._head_bytes = head
            return
        tail = self._read_tail_footer()
        if tail is not None and not tail.problems(src.size):
            self._adopt(tail, "footer")
        else:
            if self.strict and src.size >= 1024 and self.head_footer is None:
                Footer.unpack(head, "head footer")      # raises: not a footer either
            head = self.head_footer if src.size >= 1024 else None
            if head is not None and head.is_dynamic and not head.problems(src.size):
                detail = "missing" if tail is None else "; ".join(tail.problems(src.size))
                self.problem(f"primary footer invalid ({detail}); the backup copy at offset 0 is valid",
                             field="footer")
                self._adopt(head, "footer")
            elif tail is None:
                return self.fail("no 'conectix' footer at the end of the file: not a VHD", field="footer")
            else:
                self._adopt(tail, "footer")
        if self.footer.is_dynamic:
            if self.strict and self.head_footer is None:
                Footer.unpack(self.head_raw or b"", "head footer")      # raises: dynamic disks need the copy
            self._open_dynamic()
        else:
            self._check_fixed_size()

    def _read_tail_footer(self):
        raw = self._read(self.source.size - self.footer_size, self.footer_size, "primary footer")
        if raw is None:
            return None
        self.tail_raw = bytes(raw).ljust(FOOTER_SIZE, b"\0")
        if raw[:8] != FOOTER_COOKIE:
            return None
        self.tail_footer = Footer.unpack(raw, "footer")
        return self.tail_footer

    def _adopt(self, footer, name):
        self.footer = footer
        for p in footer.problems(self.source.size):
            self.problem(p, field=name)

    @property
    def fixed_size_ok(self):
        """A fixed disk holds exactly its current size of data before the footer."""
        f = self.footer
        return f is None or f.disk_type != DiskType.FIXED or f.current_size == self.data_end

    def _check_fixed_size(self):
        f = self.footer
        if not self.fixed_size_ok:
            self.problem(f"fixed disk of current size {f.current_size} but {self.data_end} bytes of data",
                         field="footer")

    def _open_dynamic(self):
        src, f = self.source, self.footer
        if f.data_offset == NO_DATA_OFFSET or f.data_offset + HEADER_SIZE > self.data_end:
            return self.fail(f"header offset {f.data_offset:#x} is outside the file", field="footer.data_offset")
        raw = self._read(f.data_offset, HEADER_SIZE, "dynamic header")
        if raw is None:
            return self.fail("the dynamic header comes before data already read from the stream")
        self.header_raw = bytes(raw)
        if not self.strict and raw[:8] != HEADER_COOKIE:
            return self.fail(f"cookie is {bytes(raw[:8])!r}, not 'cxsparse': no dynamic header here", field="header")
        h = self.header = DynamicHeader.unpack(raw, "header")
        for p in h.problems(f, src.size):
            self.problem(p, field="header")
        bs = h.block_size
        if bs < 512 or bs & (bs - 1) or bs > 256 * 1024 * 1024 or h.table_offset % 512:
            return self.fail("cannot locate blocks with this header", field="header")
        in_use = -(-f.current_size // bs)
        if h.max_table_entries < in_use:
            self.problem(f"max table entries {h.max_table_entries} is less than the {in_use} blocks of the "
                         "current size", field="header")
            in_use = h.max_table_entries
        if h.table_offset + h.max_table_entries * 4 > self.data_end:
            if self.strict:
                raise FormatError(self.where, f"BAT of {h.max_table_entries} entries at {h.table_offset} does not "
                                  f"fit in a {src.size}-byte file", field="header.max_table_entries")
            self.bat_error = (f"{h.max_table_entries} BAT entries at byte {h.table_offset} do not fit in the "
                              f"{src.size}-byte file")
            return
        self._read_metadata(in_use)
        if self.bat is not None:
            self._place_blocks()

    def _read_metadata(self, in_use):
        """BAT, batmap header and map, locator data: in file order (a heap of regions, since
        the batmap header says where its map is). Regions a stream cannot reach any more, or
        that lie after the first block, are skipped (and recorded when not strict)."""
        src, f, h = self.source, self.footer, self.header
        queue, serial = [], 0

        def want(offset, length, what, done, required=False):
            nonlocal serial
            serial += 1
            heapq.heappush(queue, (offset, serial, length, what, done, required))

        first_block = [self.data_end]    # of blocks after the BAT; known once the BAT is read
        bat_end = h.table_offset + h.bat_size

        def got_bat(raw):
            table = batlib.unpack_bat(raw, h.max_table_entries)
            self.bat = table[:in_use]
            self.bat_extra_used = sum(1 for e in table[in_use:] if e != batlib.UNUSED)
            starts = [e * 512 for e in self.bat if e != batlib.UNUSED and e * 512 >= bat_end]
            first_block[0] = min(starts + [self.data_end])

        def got_batmap_header(raw):
            hdr = batlib.BatmapHeader.unpack(raw)
            if hdr is None:
                return
            self.batmap_header = hdr
            size = hdr.batmap_size * 512
            limit = min(first_block[0], self.data_end)
            if self.strict and (hdr.batmap_offset < offset + 512 or size < (h.max_table_entries + 7) // 8
                                or hdr.batmap_offset + size > limit):
                self.problem(f"batmap of {hdr.batmap_size} sectors at {hdr.batmap_offset} is misplaced or too "
                             "small", field="batmap")
            length = max(size, batlib.batmap_map_size(f.current_size))
            if hdr.batmap_offset + length > self.data_end:
                length = size
            if size and hdr.batmap_offset + length <= self.data_end:
                want(hdr.batmap_offset, length, "batmap", got_batmap)

        def got_batmap(raw):
            self.batmap = raw
            hdr = self.batmap_header
            computed = batlib.batmap_checksum(raw, f.current_size, hdr.batmap_version)
            if self.strict and computed != hdr.checksum:
                self.problem(f"invalid batmap checksum: stored 0x{hdr.checksum:08x}, computed 0x{computed:08x}",
                             field="batmap")

        want(h.table_offset, h.max_table_entries * 4, "BAT", got_bat, required=True)
        offset = batlib.batmap_header_offset(h)
        if offset + 512 <= self.data_end:
            want(offset, 512, "batmap header", got_batmap_header)
        for i, loc in enumerate(h.locators):
            if loc.used and loc.data_offset and 0 < loc.data_length <= MAX_LOCATOR_BYTES \
                    and loc.data_offset + loc.data_length <= self.data_end:
                want(loc.data_offset, loc.data_length, f"parent locator {i}",
                     lambda raw, i=i: self.locator_data.__setitem__(i, raw))
        while queue:
            at, _, length, what, done, required = heapq.heappop(queue)
            if src.streaming and not required and self.bat is not None and at + length > first_block[0]:
                if not self.strict:
                    self.unread.append(f"{what} at byte {at} lies after block data: not read from the stream")
                if what == "batmap header":
                    self.batmap_unread = True
                    self._batmap_probe = at
                continue
            raw = self._read(at, length, what, required=required)
            if raw is None:
                if required:
                    self.bat_error = "the BAT comes before data already read from the stream"
                    return
                self.batmap_unread = self.batmap_unread or what == "batmap header"
                continue
            done(raw)
        self.first_data = max(f.data_offset + HEADER_SIZE, bat_end, FOOTER_SIZE,
                              *(h.locators[i].data_offset + h.locators[i].space_bytes for i in self.locator_data))
        self.end_of_headers = self._end_of_headers()

    def _end_of_headers(self):
        """vhd_end_of_headers: the end of every metadata region the header and batmap name."""
        f, h, hdr = self.footer, self.header, self.batmap_header
        eoh = max(f.data_offset + HEADER_SIZE, batlib.batmap_header_offset(h))
        if hdr is not None and batlib.has_batmap(f, hdr):
            eoh = max(eoh, batlib.batmap_header_offset(h) + 512, hdr.batmap_offset + hdr.batmap_size * 512)
        for loc in h.locators:
            if loc.used:
                eoh = max(eoh, loc.data_offset + loc.space_bytes)
        return eoh

    def _place_blocks(self):
        """Every allocated block against the metadata, the footer and the block before it.
        Faults are recorded in blktap's terms; strict raises where the data cannot be read
        (or would be the metadata's); tolerant skips every faulty block."""
        f, h = self.footer, self.header
        bs = h.block_size
        block_bytes = h.bitmap_size + bs
        block_secs = block_bytes // 512
        eoh_secs = self.end_of_headers // 512
        end_secs = self.data_end // 512      # blktap: (eof - 512) / 512, a 511-byte footer counted as 512
        allocated = sorted((e, i) for i, e in enumerate(self.bat) if e != batlib.UNUSED)
        usable = []
        previous = None
        for entry, index in allocated:
            start = entry * 512
            used = min(bs, f.current_size - index * bs)
            faulty = False
            if entry < eoh_secs:
                self.faults.append(BlockFault("headers", index, entry))
                faulty = True
            elif entry + block_secs > end_secs:
                self.faults.append(BlockFault("footer", index, entry))
                faulty = True
            if start < FOOTER_SIZE or start < h.table_offset + h.bat_size and start + block_bytes > h.table_offset:
                self.problem(f"BAT entry {index} points at byte {start}, inside the file's metadata", field="BAT")
            if start + h.bitmap_size + used > self.data_end:
                if self.strict:
                    raise FormatError(self.where, f"BAT entry {index} points at byte {start}, past the end of the "
                                      f"data ({self.data_end} bytes)", field="BAT")
                faulty = True
            if previous is not None and entry < previous[0] + block_secs:
                if self.strict:
                    raise FormatError(self.where, f"BAT entries {previous[1]} and {index} overlap", field="BAT")
                self.faults.append(BlockFault("block", index, entry, previous[1], previous[0]))
                faulty = True
            previous = (entry, index)
            if self.strict or not faulty:
                usable.append((entry, index))
        self._allocated = usable

    # --- facts ----------------------------------------------------------------------------
    @property
    def disk_type(self):
        return self.footer.disk_type if self.footer else DiskType.FIXED

    @property
    def current_size(self):
        if self.footer is None:            # fixed disk in a stream, footer not read yet
            return self.data_end
        return self.footer.current_size

    @property
    def allocated_blocks(self):
        """Allocated BAT entries within the current size (None: no BAT)."""
        if self.header is None or self.bat is None:
            return None
        return len(self.bat) - self.bat.count(batlib.UNUSED)     # in C: a 2 TiB BAT has 1M entries

    @property
    def has_batmap(self):
        return self.footer is not None and batlib.has_batmap(self.footer, self.batmap_header)

    # --- data -----------------------------------------------------------------------------
    def blocks(self, only=None, *, data=True, whole=False, reuse=False, skip=None, select=None):
        """Blocks in file order. ``only``: a set of BAT indexes (random-access sources);
        ``skip(first_sector, nsectors)``: True for blocks not to read at all (random-access
        sources; conversion asks whether newer layers already hide every sector);
        ``select(first_sector, nsectors, mask)``: the mask of the present sectors to read
        (random-access sources, with ``data``): the bitmap is read first, then only those
        sectors' data, and the block comes with that mask. A partial block (a few KiB written
        in a 2 MiB block) then costs a few KiB of reading, not 2 MiB.

        ``data``: True (bitmap and data), False (bitmap only) or 'partial' (data only where the
        bitmap is not full); ``whole``: every sector of the block, not only those the current
        size covers (inspection). ``reuse``: blocks are read into one buffer, so a block's data
        is valid only until the next block is asked for (conversion, which writes it out at
        once: a fresh 2 MiB buffer per block costs page faults); or a function ``reuse(n)``
        returning the writable view to read the next block into.
        """
        if self.header is None:
            if self._fixed_pending or self.footer is not None and not self.footer.is_dynamic:
                yield from self._fixed_pieces(only, skip)
            return
        h, size = self.header, self.current_size
        spb, bmsize = h.sectors_per_block, h.bitmap_size
        for entry, index in self._allocated:
            if only is not None and index not in only:
                continue
            nsectors = spb if whole else min(spb, size // 512 - index * spb)
            if skip is not None and skip(index * spb, nsectors):
                continue
            start = entry * 512
            if select is not None and data is True and not self.source.streaming:
                block = self._read_selected(index, start, nsectors, select, reuse)
                if block is not None:
                    yield block
                continue
            if data is True:
                raw = self._read_block(start, bmsize + nsectors * 512, f"block {index}", reuse)
                if raw is None:
                    continue
                bitmap, payload = raw[:bmsize], raw[bmsize:]
            else:
                bitmap, payload = self._read(start, bmsize, f"bitmap of block {index}"), None
                if bitmap is None:
                    continue
            probe = self._batmap_probe
            if probe is not None and start <= probe and probe + 512 <= start + bmsize:
                self.batmap_probe_raw = bytes(bitmap[probe - start:probe - start + 512])
            mask = batlib.bitmap_mask(bitmap, nsectors)
            if mask == (1 << nsectors) - 1:
                mask = None
            if data == "partial" and mask is not None:
                payload = self._read(start + bmsize, nsectors * 512, f"block {index}")
                if payload is None:
                    continue
                payload = memoryview(payload)
            yield Block(index, index * spb, nsectors, mask, payload)

    # Present sectors are read run by run unless that takes more calls than this, or the runs
    # (with gaps under MERGE_GAP sectors read through) cover most of the block anyway.
    MAX_RUN_READS = 16
    MERGE_GAP = 128

    def _read_selected(self, index, start, nsectors, select, reuse):
        h = self.header
        spb, bmsize = h.sectors_per_block, h.bitmap_size
        mask = batlib.bitmap_mask(self._read(start, bmsize, f"bitmap of block {index}"), nsectors)
        full = (1 << nsectors) - 1
        want = select(index * spb, nsectors, None if mask == full else mask)
        if not want:
            return None
        view = self._buffer_for(nsectors * 512, reuse)
        spans = []
        for a, b in batlib.mask_runs(want, nsectors):
            if spans and a - spans[-1][1] < self.MERGE_GAP:
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
        if len(spans) > self.MAX_RUN_READS or sum(b - a for a, b in spans) * 4 > nsectors * 3:
            spans = [(0, nsectors)]
        for a, b in spans:
            self.source.read_into(start + bmsize + a * 512, view[a * 512:b * 512])
        return Block(index, index * spb, nsectors, None if want == full else want, view)

    def _buffer_for(self, n, reuse):
        if callable(reuse):
            return reuse(n)
        if not reuse:
            return memoryview(bytearray(n))
        if len(self._buffer) < n:
            self._buffer = bytearray(n)         # never resized in place: views of it may be alive
        return memoryview(self._buffer)[:n]

    def _read_block(self, offset, n, what, reuse):
        """``n`` bytes at ``offset`` as a memoryview (into the shared buffer when ``reuse``)."""
        if not (reuse and hasattr(self.source, "read_into")):
            raw = self._read(offset, n, what)
            return None if raw is None else memoryview(raw)
        view = self._buffer_for(n, reuse)
        self.source.read_into(offset, view)
        return view

    def _fixed_pieces(self, only, skip=None):
        size = self.current_size
        per = FIXED_CHUNK // 512
        for index in range(-(-size // FIXED_CHUNK)):
            if only is not None and index not in only:
                continue
            n = min(per, size // 512 - index * per)
            if skip is not None and not self.source.streaming and skip(index * per, n):
                continue
            head = self._head_bytes if index == 0 and self.source.streaming else b""   # already read
            data = bytes(head) + self.source.read_at(index * FIXED_CHUNK + len(head), n * 512 - len(head))
            yield Block(index, index * per, n, None, memoryview(data))

    def finish(self):
        """Read the trailing footer (streams) and check it against what was used."""
        src = self.source
        if not src.streaming:
            if self.header is not None and self.head_footer is not None and self.tail_footer is not None \
                    and self.head_footer.raw != self.tail_footer.raw:
                self.problem("the footer copy at offset 0 differs from the footer at the end", field="footer")
            return
        tail = self._read_tail_footer()
        if self._fixed_pending:
            if tail is None:
                return self.fail("no 'conectix' footer at the end and none at the start: not a VHD "
                                 "(a raw disk?)", field="footer")
            self._fixed_pending = False
            self._adopt(tail, "footer")
            if tail.disk_type != DiskType.FIXED:
                return self.fail(f"{tail.type_label} disk without the footer copy at offset 0 that "
                                 "its data offset needs", field="footer")
            self._check_fixed_size()
            return
        if self.footer is None:
            return
        if tail is None:
            self.problem("no footer at the end of the file (truncated?)", field="footer")
        elif tail.raw != self.head_footer.raw:
            if tail.problems(src.size):
                self.problem("primary footer invalid: " + "; ".join(tail.problems(src.size)), field="footer")
            else:
                self.problem("the footer copy at offset 0 differs from the footer at the end", field="footer")

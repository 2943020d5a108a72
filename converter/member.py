"""One VHD file: metadata read in offset order, then its blocks in file order.

``VhdMember.open(source)`` reads footer, dynamic header, BAT, batmap and locator data;
``blocks()`` yields ``Block``s (first virtual sector, sector count, bitmap mask, data) in file
order so a forward-only stream never seeks back; ``finish()`` reads the trailing footer.

Every field that sizes a read is checked against the real file size first: an untrusted
header can never make us allocate or loop beyond what the file holds.
"""

import dataclasses

from converter import bat as batlib
from converter.errors import FormatError
from converter.footer import FOOTER_SIZE, DiskType, Footer
from converter.header import HEADER_SIZE, DynamicHeader

FIXED_CHUNK = 2 * 1024 * 1024   # fixed disks are streamed in pieces this size


@dataclasses.dataclass
class Block:
    index: int            # BAT index (or piece number of a fixed disk)
    first_sector: int     # first virtual sector it covers
    nsectors: int         # sectors in use (the last block may be cut by the current size)
    mask: int | None      # MSB-first bitmap of nsectors bits; None = every sector present
    data: memoryview      # nsectors * 512 bytes


class VhdMember:
    """A parsed VHD. ``strict`` raises on the first problem; otherwise problems are collected."""

    def __init__(self, source, strict=True):
        self.source = source
        self.where = source.where
        self.strict = strict
        self.problems = []
        self.warnings = []
        self.footer = None          # authoritative footer
        self.head_footer = None     # the copy at offset 0 (dynamic disks)
        self.tail_footer = None
        self.header = None
        self.bat = None             # entries in use (follow the current size)
        self.bat_extra_used = 0     # allocated entries beyond the current size (preallocated BATs)
        self.batmap_header = None
        self.batmap = None
        self.locator_data = {}
        self.first_data = None      # first byte after metadata
        self.footer_size = FOOTER_SIZE
        self._fixed_pending = False
        self._head_bytes = b""

    # --- problems -------------------------------------------------------------------------
    def problem(self, detail, field=None):
        if self.strict:
            raise FormatError(self.where, detail, field=field)
        self.problems.append(f"{field}: {detail}" if field else detail)

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

    def _open(self):
        src = self.source
        if src.size % 512 == FOOTER_SIZE - 1:
            self.footer_size = FOOTER_SIZE - 1
        if src.size < self.footer_size:
            raise FormatError(self.where, f"{src.size} bytes is too small to be a VHD (no footer)")
        if src.streaming:
            head = src.read_at(0, FOOTER_SIZE) if src.size >= FOOTER_SIZE else b""
            if head[:8] == b"conectix":
                self.head_footer = Footer.unpack(head, "head footer")
                if self.head_footer.is_dynamic:
                    self._adopt(self.head_footer, "head footer")
                    self._open_dynamic()
                    return
            # No dynamic footer copy in front: a fixed disk (or not a VHD); the footer comes last.
            self._fixed_pending = True
            self.footer = None
            self._head_bytes = head
            return
        tail = self._read_tail_footer()
        if tail is not None and not tail.problems(src.size):
            self._adopt(tail, "footer")
        else:
            head = Footer.unpack(src.read_at(0, FOOTER_SIZE), "head footer") if src.size >= 1024 else None
            if head is not None and head.is_dynamic and not head.problems(src.size):
                detail = "missing" if tail is None else "; ".join(tail.problems(src.size))
                self.problem(f"primary footer invalid ({detail}); the backup copy at offset 0 is valid",
                             field="footer")
                self._adopt(head, "footer")
            elif tail is None:
                raise FormatError(self.where, "no 'conectix' footer at the end of the file: not a VHD",
                                  field="footer")
            else:
                self._adopt(tail, "footer")
        if self.footer.is_dynamic:
            self.head_footer = Footer.unpack(src.read_at(0, FOOTER_SIZE), "head footer") \
                if src.size >= FOOTER_SIZE else None
            self._open_dynamic()
        else:
            self._check_fixed_size()

    def _read_tail_footer(self):
        raw = self.source.read_at(self.source.size - self.footer_size, self.footer_size)
        if raw[:8] != b"conectix":
            return None
        self.tail_footer = Footer.unpack(raw, "footer")
        return self.tail_footer

    def _adopt(self, footer, name):
        self.footer = footer
        for p in footer.problems(self.source.size):
            self.problem(p, field=name)

    def _check_fixed_size(self):
        f = self.footer
        if f.disk_type == DiskType.FIXED and f.current_size != self.data_end:
            self.problem(f"fixed disk of current size {f.current_size} but {self.data_end} bytes of data",
                         field="footer")

    def _open_dynamic(self):
        src, f = self.source, self.footer
        if f.data_offset == 0xFFFFFFFFFFFFFFFF or f.data_offset + HEADER_SIZE > self.data_end:
            raise FormatError(self.where, f"header offset {f.data_offset:#x} is outside the file",
                              field="footer.data_offset")
        h = self.header = DynamicHeader.unpack(src.read_at(f.data_offset, HEADER_SIZE), "header")
        for p in h.problems(f, src.size):
            self.problem(p, field="header")
        bs = h.block_size
        if bs < 512 or bs & (bs - 1) or bs > 256 * 1024 * 1024 or h.table_offset % 512:
            raise FormatError(self.where, "cannot locate blocks with this header", field="header")
        in_use = -(-f.current_size // bs)
        if h.max_table_entries < in_use:
            raise FormatError(self.where, f"max table entries {h.max_table_entries} is less than the {in_use} "
                              f"blocks of the current size", field="header")
        if h.table_offset + h.max_table_entries * 4 > self.data_end:
            raise FormatError(self.where, f"BAT of {h.max_table_entries} entries at {h.table_offset} does not "
                              f"fit in a {src.size}-byte file", field="header.max_table_entries")
        # Metadata regions in file order: BAT, batmap header, batmap, locators (only those
        # before the first block can be read from a stream).
        raw_bat = src.read_at(h.table_offset, h.max_table_entries * 4)
        table = batlib.unpack_bat(raw_bat, h.max_table_entries)
        self.bat = table[:in_use]
        self.bat_extra_used = sum(1 for e in table[in_use:] if e != batlib.UNUSED)
        del raw_bat, table
        block_bytes = h.bitmap_size + bs
        allocated = sorted((e, i) for i, e in enumerate(self.bat) if e != batlib.UNUSED)
        meta_end = max(f.data_offset + HEADER_SIZE, h.table_offset + h.bat_size, FOOTER_SIZE)
        self._read_batmap(meta_end, allocated)
        regions = [(loc.data_offset, i) for i, loc in enumerate(h.locators) if loc.used]
        first_block = allocated[0][0] * 512 if allocated else self.data_end
        for offset, i in sorted(regions):
            loc = h.locators[i]
            if loc.data_offset + loc.data_length > self.data_end or loc.data_length > 64 * 1024:
                continue        # header.problems() reported it
            if src.streaming and (offset < src.pos or offset >= first_block):
                continue        # not readable from a stream; only inspection cares
            self.locator_data[i] = src.read_at(loc.data_offset, loc.data_length)
            meta_end = max(meta_end, loc.data_offset + loc.space_bytes)
        self.first_data = meta_end
        previous_end, previous_index = 0, None
        for entry, index in allocated:
            start = entry * 512
            used = min(bs, f.current_size - index * bs)
            if start < FOOTER_SIZE or start < h.table_offset + h.bat_size and start + block_bytes > h.table_offset:
                self.problem(f"BAT entry {index} points at byte {start}, inside the file's metadata", field="BAT")
            if start + h.bitmap_size + used > self.data_end:
                raise FormatError(self.where, f"BAT entry {index} points at byte {start}, past the end of the "
                                  f"data ({self.data_end} bytes)", field="BAT")
            if start < previous_end:
                raise FormatError(self.where, f"BAT entries {previous_index} and {index} overlap", field="BAT")
            previous_end, previous_index = start + block_bytes, index
        self._allocated = allocated

    def _read_batmap(self, after_bat, allocated):
        src, h = self.source, self.header
        offset = h.table_offset + h.bat_size
        first_block = allocated[0][0] * 512 if allocated else self.data_end
        if offset + 512 > min(first_block, self.data_end) or (src.streaming and offset < src.pos):
            return
        hdr = batlib.BatmapHeader.unpack(src.read_at(offset, 512))
        if hdr is None:
            return
        self.batmap_header = hdr
        size = hdr.batmap_size * 512
        needed = (h.max_table_entries + 7) // 8
        limit = min(first_block, self.data_end)
        if hdr.batmap_offset < offset + 512 or size < needed or hdr.batmap_offset + size > limit:
            self.problem(f"batmap of {hdr.batmap_size} sectors at {hdr.batmap_offset} is misplaced or too small",
                         field="batmap")
            return
        self.batmap = src.read_at(hdr.batmap_offset, size)
        if batlib.batmap_checksum(self.batmap) != hdr.checksum:
            self.problem(f"invalid batmap checksum: stored 0x{hdr.checksum:08x}, computed "
                         f"0x{batlib.batmap_checksum(self.batmap):08x}", field="batmap")

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
        return len(self._allocated) if self.header else None

    # --- data -----------------------------------------------------------------------------
    def blocks(self, only=None):
        """Blocks in file order. ``only``: a set of BAT indexes (random-access sources)."""
        if self.header is None:
            yield from self._fixed_pieces(only)
            return
        h, size = self.header, self.current_size
        spb, bmsize = h.sectors_per_block, h.bitmap_size
        for entry, index in self._allocated:
            if only is not None and index not in only:
                continue
            nsectors = min(spb, size // 512 - index * spb)
            raw = memoryview(self.source.read_at(entry * 512, bmsize + nsectors * 512))
            mask = batlib.bitmap_mask(raw[:bmsize], nsectors)
            if mask == (1 << nsectors) - 1:
                mask = None
            yield Block(index, index * spb, nsectors, mask, raw[bmsize:])

    def _fixed_pieces(self, only):
        size = self.current_size
        per = FIXED_CHUNK // 512
        for index in range(-(-size // FIXED_CHUNK)):
            if only is not None and index not in only:
                continue
            n = min(per, size // 512 - index * per)
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
                raise FormatError(self.where, "no 'conectix' footer at the end and none at the start: not a VHD "
                                  "(a raw disk?)", field="footer")
            self._fixed_pending = False
            self._adopt(tail, "footer")
            if tail.disk_type != DiskType.FIXED:
                raise FormatError(self.where, f"{tail.type_label} disk without the footer copy at offset 0 that "
                                  "its data offset needs", field="footer")
            self._check_fixed_size()
            return
        if tail is None:
            self.problem("no footer at the end of the file (truncated?)", field="footer")
        elif tail.raw != self.head_footer.raw:
            if tail.problems(src.size):
                self.problem("primary footer invalid: " + "; ".join(tail.problems(src.size)), field="footer")
            else:
                self.problem("the footer copy at offset 0 differs from the footer at the end", field="footer")

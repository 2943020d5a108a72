"""blktap ``vhd-util check`` validations, per member and per XenServer chain.

Per member, in blktap's order (vhd/lib/vhd-util-check.c): primary footer, backup footer and
their match, dynamic header, differencing-header fields, BAT (size, clobbered headers, footer
and blocks), batmap, parent locators, and optionally the sector bitmaps. Reasons use
vhd-util's strings ("primary footer invalid: invalid checksum") so they read like the real
tool, but unlike vhd-util we keep going after the first failure and report every problem.

Per chain (XenServer images link by position, see chain.link_problems): numbering, types,
parent UUIDs; a hidden leaf is a warning; parent names and locators pointing at files that
are not in the image are normal (XenServer relinks on import) and only reported as info.

Members are read once, in file order (``inspect_member``), so a tgz is checked in a single
streaming pass without extracting anything.
"""

import dataclasses
import heapq
import posixpath
import time
import uuid as uuidlib

from converter import archive
from converter import bat as batlib
from converter.chain import LinkInfo, link_problems, runs
from converter.errors import ArchiveError, VhdError
from converter.footer import CHECKSUM_OFFSET as FOOTER_CSUM_OFFSET
from converter.footer import COOKIE as FOOTER_COOKIE
from converter.footer import FILE_FORMAT_VERSION, NO_DATA_OFFSET, VHD_EPOCH, DiskType, Footer, checksum, chs_geometry
from converter.header import CHECKSUM_OFFSET as HEADER_CSUM_OFFSET
from converter.header import COOKIE as HEADER_COOKIE
from converter.header import (
    HEADER_SIZE,
    HEADER_VERSION,
    KNOWN_PLATFORMS,
    LOCATOR_OFFSET,
    PLAT_MACX,
    PLAT_W2KU,
    PLAT_W2RU,
    DynamicHeader,
)

TIMESTAMP_MAX_SLACK = 1800              # blktap tolerates NFS clock skew of 30 minutes
MAX_BLOCK_SIZE = 2 * 1024 * 1024        # vhd_open refuses larger blocks
TAP_CURRENT_VERSION = 0x00010003
BATMAP_MAX_VERSION = 0x00010002
MAX_LOCATOR_BYTES = 64 * 1024           # never read more than this for a path
MAX_BAT_ENTRIES = 1 << 22               # 2 TiB of 512 KiB blocks; XenServer needs at most 1 << 20


# --- reading a member once, in file order ---------------------------------------------------
@dataclasses.dataclass
class Inspection:
    """Raw metadata of one VHD, gathered in offset order (safe on forward-only streams)."""
    name: str
    where: str
    file_size: int
    streaming: bool
    footer_len: int = 512
    head_raw: bytes | None = None
    tail_raw: bytes | None = None
    head_footer: Footer | None = None
    tail_footer: Footer | None = None
    footer: Footer | None = None          # the footer the layout was read with
    header_raw: bytes | None = None
    header: DynamicHeader | None = None
    bat: object = None                    # all max_table_entries entries
    batmap_header_raw: bytes | None = None
    batmap_header: batlib.BatmapHeader | None = None
    batmap: bytes | None = None
    locator_data: dict = dataclasses.field(default_factory=dict)
    bitmaps_read: bool = False
    bitmap_blocks: set = dataclasses.field(default_factory=set)    # blocks whose bitmap was read
    full_blocks: set = dataclasses.field(default_factory=set)
    dirty_sectors: list = dataclasses.field(default_factory=list)   # (block, first sector, count)
    unread: list = dataclasses.field(default_factory=list)         # regions a stream could not reach
    fatal: str | None = None              # why the member could not be read further
    bat_error: str | None = None          # why the BAT was not read

    @property
    def disk_type(self):
        return self.footer.disk_type if self.footer else None

    @property
    def is_dynamic(self):
        return self.footer is not None and self.footer.is_dynamic

    @property
    def blocks_in_use(self):
        """BAT entries the current size covers (header block size, rounded up)."""
        h, f = self.header, self.footer
        if h is None or h.block_size <= 0 or self.bat is None:
            return 0
        return min(-(-f.current_size // h.block_size), len(self.bat))


def _parse_footer(raw):
    if raw is None or raw[:8] != FOOTER_COOKIE:
        return None
    return Footer.unpack(raw)


def _footer_checksum_ok(f):
    return f is not None and f.computed_checksum == f.checksum


class _Reader:
    """Reads regions of a source in increasing offset order; notes what a stream skipped.

    Regions may overlap (a batmap probe where a block starts): the last piece read from a
    stream is kept so a later region that starts inside it is still served.
    """

    def __init__(self, source, ins):
        self.source, self.ins = source, ins
        self.queue = []
        self.cache_at, self.cache = 0, b""
        self.serial = 0

    def want(self, offset, length, what, callback):
        self.serial += 1
        heapq.heappush(self.queue, (offset, length, self.serial, what, callback))

    def run(self):
        while self.queue:
            offset, length, _, what, callback = heapq.heappop(self.queue)
            data = self.read(offset, length, what)
            if data is not None:
                callback(data)

    def read(self, offset, length, what):
        src = self.source
        if offset < 0 or offset + length > src.size:
            return None
        if not src.streaming:
            return bytes(src.read_at(offset, length))
        prefix, start = b"", offset
        if offset < src.pos:
            cache_end = self.cache_at + len(self.cache)
            if not self.cache_at <= offset <= cache_end or cache_end != src.pos:
                self.ins.unread.append(f"{what} at byte {offset} comes before data already read: not checked "
                                       "from the stream (extract the archive to check it)")
                return None
            prefix = self.cache[offset - self.cache_at:offset - self.cache_at + length]
            if len(prefix) == length:
                return prefix
            offset, length = src.pos, length - len(prefix)
        data = prefix + bytes(src.read_at(offset, length))
        self.cache_at, self.cache = start, data
        return data


def inspect_member(source, name, *, read_bitmaps=True, read_data=True):
    """Read everything ``check`` looks at, once and in file order. Never raises for bad content."""
    size = source.size
    ins = Inspection(name=name, where=source.where, file_size=size, streaming=source.streaming)
    ins.footer_len = 511 if size % 512 else 512
    if size < 512:
        ins.fatal = f"file is {size} bytes: too small to hold a VHD footer"
        _drain(source)
        return ins
    reader = _Reader(source, ins)
    ins.head_raw = reader.read(0, 512, "backup footer")
    ins.head_footer = _parse_footer(ins.head_raw)
    tail_at = size - ins.footer_len
    if not source.streaming:
        ins.tail_raw = _pad(source.read_at(tail_at, ins.footer_len))
        ins.tail_footer = _parse_footer(ins.tail_raw)
        primary, backup = ins.tail_footer, ins.head_footer
        if _footer_checksum_ok(primary) or not (_footer_checksum_ok(backup) and backup.is_dynamic):
            ins.footer = primary
        else:
            ins.footer = backup          # the primary is broken: read the layout with the copy
    elif ins.head_footer is not None and ins.head_footer.is_dynamic:
        ins.footer = ins.head_footer     # a stream meets the copy first; the tail is compared later
    if ins.footer is not None and ins.footer.is_dynamic:
        _read_dynamic(source, ins, reader, read_bitmaps, read_data)
    if source.streaming:
        _drain(source, tail_at)
        tail = reader.read(tail_at, ins.footer_len, "primary footer")
        if tail is not None:
            ins.tail_raw = _pad(tail)
            ins.tail_footer = _parse_footer(ins.tail_raw)
        if ins.footer is None:
            ins.footer = ins.tail_footer
        _drain(source)
    if ins.footer is None and ins.fatal is None:
        ins.fatal = "no 'conectix' footer at the end or at the start of the file: not a VHD"
    return ins


def _pad(raw):
    return bytes(raw) + b"\0" * (512 - len(raw))


def _drain(source, upto=None):
    if source.streaming:
        source.skip_to(source.size if upto is None else max(upto, source.pos))


def _read_dynamic(source, ins, reader, read_bitmaps, read_data):
    f, size = ins.footer, ins.file_size
    if f.data_offset + HEADER_SIZE > size:
        ins.fatal = f"header offset 0x{f.data_offset:x} in the footer is outside the {size}-byte file"
        return
    ins.header_raw = reader.read(f.data_offset, HEADER_SIZE, "dynamic header")
    if ins.header_raw is None:
        ins.fatal = "dynamic header not readable"
        return
    if ins.header_raw[:8] != HEADER_COOKIE:
        ins.fatal = "no 'cxsparse' dynamic header where the footer points"
        return
    h = ins.header = DynamicHeader.unpack(ins.header_raw)

    def got_bat(data):
        ins.bat = batlib.unpack_bat(data, h.max_table_entries)

    def got_batmap_header(data):
        ins.batmap_header_raw = data
        ins.batmap_header = hdr = batlib.BatmapHeader.unpack(data)
        if hdr is not None and hdr.batmap_size:
            length = max(hdr.batmap_size * 512, _batmap_map_size(f.current_size))
            if hdr.batmap_offset + length <= size and length <= MAX_BAT_ENTRIES // 8 + 512:
                reader.want(hdr.batmap_offset, length, "batmap", lambda d: setattr(ins, "batmap", d))

    if h.max_table_entries > MAX_BAT_ENTRIES:
        ins.bat_error = f"{h.max_table_entries} BAT entries: more than the {MAX_BAT_ENTRIES} this checker reads"
    elif 0 < h.table_offset and h.max_table_entries * 4 <= size:
        reader.want(h.table_offset, h.max_table_entries * 4, "BAT", got_bat)
    if _is_tap(f) and f.creator_version > 1:
        reader.want(_batmap_header_offset(h), 512, "batmap header", got_batmap_header)
    for i, loc in enumerate(h.locators):
        if loc.used and loc.data_offset and 0 < loc.data_length <= MAX_LOCATOR_BYTES:
            reader.want(loc.data_offset, loc.data_length, f"parent locator {i}",
                        lambda d, i=i: ins.locator_data.__setitem__(i, d))
    reader.run()
    if ins.bat is not None and (read_bitmaps or read_data):
        _read_blocks(source, ins, reader, read_data)


def _read_blocks(source, ins, reader, read_data):
    """Sector bitmaps (and data) of every block in use, in file order."""
    h = ins.header
    spb = h.sectors_per_block
    bm_bytes = h.bitmap_size
    limit = ins.file_size - ins.footer_len
    entries = sorted((e, i) for i, e in enumerate(ins.bat[:ins.blocks_in_use]) if e != batlib.UNUSED)
    ins.bitmaps_read = True
    for entry, index in entries:
        start = entry * 512
        if start + bm_bytes + spb * 512 > limit:
            continue            # the BAT check reports it
        bitmap = reader.read(start, bm_bytes, f"bitmap of block {index}")
        if bitmap is None:
            continue
        mask = batlib.bitmap_mask(bitmap, spb)
        ins.bitmap_blocks.add(index)
        if mask == batlib.full_mask(spb):
            ins.full_blocks.add(index)
            continue            # nothing can hide behind a full bitmap: skip its data
        if not read_data:
            continue
        data = reader.read(start + bm_bytes, spb * 512, f"block {index}")
        if data is None:
            continue
        for a, b in runs(~mask & batlib.full_mask(spb), spb):
            if data.count(0, a * 512, b * 512) == (b - a) * 512:
                continue
            dirty = [s for s in range(a, b) if data.count(0, s * 512, s * 512 + 512) != 512]
            ins.dirty_sectors.append((index, dirty[0], len(dirty)))


# --- small blktap helpers -------------------------------------------------------------------
def _is_tap(f):
    return f.creator_app[:3] == b"tap"


def _batmap_header_offset(h):
    return h.table_offset + (h.max_table_entries * 4 + 511) // 512 * 512


def _batmap_map_size(current_size):
    """blktap checksums only the bytes the current size needs, rounded up to a sector."""
    return 512 * max(1, -(-(current_size >> 24) // 512))


def _vhd_now():
    return (int(time.time()) - VHD_EPOCH) & 0xFFFFFFFF


def _pack_chs(c, h, s):
    return (c << 16) | (h << 8) | s


def _has_batmap(ins):
    """libvhd vhd_has_batmap: tap >= 1.2 always; 1.1 when a valid batmap header is there."""
    f = ins.footer
    if not ins.is_dynamic or not _is_tap(f) or f.creator_version <= 1:
        return False
    if f.creator_version >= 0x00010002:
        return True
    hdr = ins.batmap_header
    return hdr is not None and hdr.batmap_version <= BATMAP_MAX_VERSION


# --- per-member validations -----------------------------------------------------------------
def footer_reasons(raw, *, ignore_timestamps=False, now=None):
    """Every reason vhd_util_check_validate_footer would give, in its order ([] = valid)."""
    f = _parse_footer(raw)
    if f is None:
        return ["invalid cookie"]
    found = []
    if f.computed_checksum != f.checksum and not _hidden_checksum_ok(raw, f):
        found.append(f"invalid checksum (stored 0x{f.checksum:08x}, computed 0x{f.computed_checksum:08x})")
    if not f.features & 0x2:
        found.append("invalid 'reserved' feature")
    if f.features & ~0x3:
        found.append("invalid extra features")
    if f.version != FILE_FORMAT_VERSION:
        found.append("invalid file format version")
    if f.disk_type not in (DiskType.DYNAMIC, DiskType.DIFFERENCING) and f.data_offset != NO_DATA_OFFSET:
        found.append("invalid data offset")
    now = _vhd_now() if now is None else now
    if not ignore_timestamps and f.timestamp > now + TIMESTAMP_MAX_SLACK:
        found.append("creation time in future")
    if _is_tap(f) and f.creator_version > TAP_CURRENT_VERSION:
        found.append("unsupported tap creator version")
    size = max(512, -(-f.current_size // 512) * 512)
    if _pack_chs(*chs_geometry(size)) < _pack_chs(*f.geometry):
        found.append("geometry too large")
    if int(f.disk_type) not in (2, 3, 4):
        found.append("invalid type")
    if f.saved_state not in (0, 1):
        found.append("invalid 'saved' state")
    if f.hidden not in (0, 1):
        found.append("invalid 'hidden' state")
    if any(raw[86:512]):
        found.append("invalid 'reserved' bits")
    if f.uuid.int == 0:
        found.append("invalid (NULL) uuid")
    return found


def _hidden_checksum_ok(raw, f):
    """Early td-util set 'hidden' without updating the checksum (tap 0.1 and 1.1 only)."""
    if not f.hidden or not _is_tap(f) or f.creator_version not in (0x00000001, 0x00010001):
        return False
    fixed = bytearray(raw)
    fixed[85] = 0
    return checksum(fixed, FOOTER_CSUM_OFFSET) == f.checksum


def _footers_match(primary, backup):
    if primary.raw == backup.raw:
        return True
    if backup.hidden and _is_tap(backup) and backup.creator_version in (0x00000001, 0x00010001):
        fixed = bytearray(backup.raw)
        fixed[85] = 0
        p = bytearray(primary.raw)
        # compare as structs: the checksum field follows the bytes it covers
        return bytes(fixed[:64]) + bytes(fixed[68:]) == bytes(p[:64]) + bytes(p[68:])
    return False


def header_reasons(ins):
    """vhd_util_check_validate_header's reasons, then vhd_open's extra limits."""
    raw, h = ins.header_raw, ins.header
    found = []
    computed = checksum(raw, HEADER_CSUM_OFFSET)
    if computed != h.checksum:
        found.append(f"invalid checksum (stored 0x{h.checksum:08x}, computed 0x{computed:08x})")
    if h.version != HEADER_VERSION:
        found.append("invalid header version")
    if h.data_offset != NO_DATA_OFFSET:
        found.append("invalid data offset")
    eof = ins.file_size
    if h.table_offset <= 0 or h.table_offset % 512 or h.table_offset + h.max_table_entries * 4 > eof - 512:
        found.append(f"invalid table offset (BAT of {h.max_table_entries} entries at {h.table_offset} "
                     f"in a {eof}-byte file)")
    bs = h.block_size
    if bs <= 0 or bs & (bs - 1):
        found.append(f"invalid block size ({bs})")
    elif bs > MAX_BLOCK_SIZE:
        found.append(f"invalid block size ({bs}: libvhd opens at most {MAX_BLOCK_SIZE})")
    if any(raw[60:64]) or any(raw[LOCATOR_OFFSET + 8 * 24:HEADER_SIZE]):
        found.append("invalid reserved bits")
    return found


def decode_parent_name(ins):
    """The header's parent name as blktap decodes it (UTF-16BE to ASCII), or None."""
    raw = ins.header.raw_parent_name
    try:
        if ins.footer.creator_version == 0x00000001 and _is_tap(ins.footer):
            name = raw.decode("utf-16")
        else:
            name = raw.decode("utf-16-be")
        name = name.split("\0", 1)[0]
        name.encode("ascii")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return None
    return _windows_path(name)


def _windows_path(path):
    path = path.replace("\\", "/")
    if path[:2] in ("C:", "c:"):
        path = path[2:]
    return path


def differencing_reasons(ins, *, ignore_timestamps=False, now=None):
    h, f = ins.header, ins.footer
    found = []
    if f.disk_type == DiskType.DIFFERENCING:
        now = _vhd_now() if now is None else now
        if not ignore_timestamps and h.parent_timestamp > now + TIMESTAMP_MAX_SLACK:
            found.append("parent creation time in future")
        if decode_parent_name(ins) is None:
            found.append("invalid parent name")
    else:
        if any(h.raw_parent_name):
            found.append("invalid non-null parent name")
        if any(ins.header_raw[LOCATOR_OFFSET:LOCATOR_OFFSET + 8 * 24]):
            found.append("invalid non-null parent locators")
        if h.parent_uuid.int:
            found.append("invalid non-null parent uuid")
        if h.parent_timestamp:
            found.append("invalid non-zero parent timestamp")
    return found


def end_of_headers(ins):
    """vhd_end_of_headers: the end of every metadata region (bytes)."""
    f, h = ins.footer, ins.header
    eoh = max(f.data_offset + HEADER_SIZE, _batmap_header_offset(h))
    hdr = ins.batmap_header
    if _has_batmap(ins) and hdr is not None:
        eoh = max(eoh, _batmap_header_offset(h) + 512, hdr.batmap_offset + hdr.batmap_size * 512)
    for loc in h.locators:
        if loc.used:
            eoh = max(eoh, loc.data_offset + loc.space_bytes)
    return eoh


def bat_reasons(ins):
    """vhd_util_check_bat: file size, BAT size, and every block against headers, footer, blocks."""
    f, h = ins.footer, ins.header
    eof = ins.file_size
    if eof % 512:
        if eof % 512 != 511:
            return [f"invalid file size: 0x{eof:x}"]
        eof += 1
    if ins.bat is None:
        return [f"error reading bat: -22 ({ins.bat_error or 'the BAT lies outside the file'})"]
    bs = h.block_size
    if bs <= 0 or bs & (bs - 1):
        return []            # the header check reported it; blocks cannot be located
    found = []
    nblocks = -(-f.current_size // bs)
    if nblocks > h.max_table_entries:
        return [f"VHD size ({nblocks} blocks) exceeds BAT size ({h.max_table_entries})"]
    eof_secs = (eof - 512) // 512
    eoh_secs = end_of_headers(ins) // 512
    block_secs = bs // 512 + h.bitmap_size // 512
    used = []
    for i in range(nblocks):
        off = ins.bat[i]
        if off == batlib.UNUSED:
            continue
        if off < eoh_secs:
            found.append(f"block {i} (offset 0x{off:x}) clobbers headers")
        elif off + block_secs > eof_secs:
            found.append(f"block {i} (offset 0x{off:x}) clobbers footer (past the end of the data at "
                         f"sector 0x{eof_secs:x}: truncated file?)")
        used.append((off, i))
    used.sort()
    for (joff, j), (off, i) in zip(used, used[1:]):
        if off < joff + block_secs:
            found.append(f"block {i} (offset 0x{off:x}) clobbers block {j} (offset 0x{joff:x})")
    return found


def batmap_reasons(ins):
    f, h, hdr = ins.footer, ins.header, ins.batmap_header
    if hdr is None:
        return ["error reading batmap: -22 (no 'tdbatmap' header after the BAT)"]
    found = []
    if hdr.batmap_version > BATMAP_MAX_VERSION:
        found.append("unsupported batmap version")
    if ins.batmap is not None:
        stored, computed = hdr.checksum, _batmap_checksum(ins.batmap, f.current_size, hdr.batmap_version)
        if stored != computed:
            found.append(f"invalid checksum (stored 0x{stored:08x}, computed 0x{computed:08x})")
    if hdr.batmap_size == 0:
        found.append("invalid size zero")
    elif hdr.batmap_size << 12 < h.max_table_entries:
        found.append("batmap-BAT size mismatch")
    if hdr.batmap_offset == 0 or hdr.batmap_offset % 512:
        found.append("invalid batmap offset")
    if hdr.batmap_offset + hdr.batmap_size * 512 > ins.file_size - 512:
        found.append("invalid batmap size")
    return [f"batmap is invalid: {r}" for r in found]


def _batmap_checksum(data, current_size, version):
    part = data[:_batmap_map_size(current_size)]
    if version == 0x00010001:          # 1.1 summed signed chars
        total = sum(b - 256 if b > 127 else b for b in part)
        return ~total & 0xFFFFFFFF
    return batlib.batmap_checksum(part)


def batmap_consistency(ins):
    """A set batmap bit promises a full block: tapdisk then reads it without the bitmap."""
    if ins.batmap is None or ins.bat is None:
        return []
    found = []
    for i in range(ins.blocks_in_use):
        if not batlib.batmap_bit(ins.batmap, i):
            continue
        if ins.bat[i] == batlib.UNUSED:
            found.append(f"batmap shows unallocated block {i} full")
        elif i in ins.bitmap_blocks and i not in ins.full_blocks:
            found.append(f"batmap shows block {i} full but its sector bitmap is not full")
    return found


_LOCATOR_CODES = set(KNOWN_PLATFORMS)


def decode_locator(code, data):
    """A locator's path as blktap reads it, or None (MacX: file:// URL; W2ku/W2ru: UTF-16LE)."""
    try:
        if code == PLAT_MACX:
            text = data.decode("utf-8").split("\0", 1)[0]
            return text[7:] if text.startswith("file://") else None
        if code in (PLAT_W2KU, PLAT_W2RU):
            return _windows_path(data.decode("utf-16-le").split("\0", 1)[0])
    except UnicodeDecodeError:
        return None
    return None


def locator_reasons(ins):
    """vhd_util_check_parent_locators without resolving paths; returns (problems, paths)."""
    h = ins.header
    eof = ins.file_size
    found, paths, seen = [], {}, {}
    for i, loc in enumerate(h.locators):
        raw = ins.header_raw[LOCATOR_OFFSET + 24 * i:LOCATOR_OFFSET + 24 * (i + 1)]
        reason = None
        if loc.code != b"\0\0\0\0" and loc.code not in _LOCATOR_CODES:
            reason = f"invalid platform code ({loc.code!r})"
        elif not loc.used:
            if any(raw):
                reason = "non-zero locator"
            else:
                continue
        elif loc.data_offset == 0:
            reason = "invalid data offset"
        elif loc.data_space == 0:
            reason = "invalid data space"
        elif loc.data_length == 0:
            reason = "invalid data length"
        elif loc.data_offset + _ms_locator_size(loc) > eof - 512:
            reason = "invalid size"
        elif loc.reserved:
            reason = "invalid reserved bits"
        if reason:
            found.append(f"invalid parent locator {i}: {reason}")
            continue
        if loc.code in seen:
            found.append(f"duplicate platform code in locator {i}: 0x{int.from_bytes(loc.code, 'big'):x}")
        seen[loc.code] = i
        if loc.code in (PLAT_MACX, PLAT_W2KU, PLAT_W2RU):
            data = ins.locator_data.get(i)
            path = decode_locator(loc.code, data) if data is not None else None
            if path is None:
                if data is not None:
                    found.append(f"error reading parent locator {i}: -22")
                continue
            paths[i] = path
    return found, paths


def _ms_locator_size(loc):
    """vhd_parent_locator_size: space < 512 is sectors, a multiple of 512 is bytes, else 0."""
    if loc.data_space < 512:
        return loc.data_space * 512
    return loc.data_space if loc.data_space % 512 == 0 else 0


def bitmap_reasons(ins):
    found = []
    for block, first, count in ins.dirty_sectors:
        more = f" (and {count - 1} more sectors of this block)" if count > 1 else ""
        found.append(f"sector 0x{first:x} of block 0x{block:x} has data where bitmap is clear{more}")
    return found


# --- reports --------------------------------------------------------------------------------
@dataclasses.dataclass
class MemberCheck:
    name: str
    where: str
    position: int | None = None
    problems: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)
    info: list = dataclasses.field(default_factory=list)
    disk_type: str | None = None
    current_size: int | None = None
    original_size: int | None = None
    hidden: bool = False
    uuid: uuidlib.UUID | None = None
    parent_uuid: uuidlib.UUID | None = None
    parent_name: str | None = None
    parent_locators: dict = dataclasses.field(default_factory=dict)   # index -> decoded path
    file_size: int = 0
    creator: str | None = None
    creator_version: int | None = None
    allocated_blocks: int | None = None

    @property
    def ok(self):
        return not self.problems

    def to_json(self):
        return {"name": self.name, "where": self.where, "position": self.position, "ok": self.ok,
                "problems": list(self.problems), "warnings": list(self.warnings), "info": list(self.info),
                "disk_type": self.disk_type, "current_size": self.current_size,
                "original_size": self.original_size, "hidden": self.hidden,
                "uuid": _str(self.uuid), "parent_uuid": _str(self.parent_uuid),
                "parent_name": self.parent_name,
                "parent_locators": {str(k): v for k, v in self.parent_locators.items()},
                "file_size": self.file_size, "creator": self.creator,
                "creator_version": None if self.creator_version is None else
                f"{self.creator_version >> 16}.{self.creator_version & 0xFFFF}",
                "allocated_blocks": self.allocated_blocks}


def _str(value):
    return None if value is None else str(value)


@dataclasses.dataclass
class CheckReport:
    source: str
    kind: str
    members: list                 # MemberCheck, newest first
    chain_problems: list = dataclasses.field(default_factory=list)
    chain_warnings: list = dataclasses.field(default_factory=list)
    chain_info: list = dataclasses.field(default_factory=list)

    @property
    def problems(self):
        return [p for m in self.members for p in m.problems] + list(self.chain_problems)

    @property
    def warnings(self):
        return list(self.chain_warnings) + [w for m in self.members for w in m.warnings]

    @property
    def info(self):
        return [i for m in self.members for i in m.info] + list(self.chain_info)

    @property
    def ok(self):
        return not self.problems

    def to_json(self):
        return {"source": self.source, "kind": self.kind, "ok": self.ok, "problems": self.problems,
                "warnings": self.warnings, "info": self.info,
                "chain_problems": list(self.chain_problems),
                "members": [m.to_json() for m in self.members]}


def check_inspection(ins, *, check_bitmaps=True, ignore_timestamps=False, now=None):
    """Every blktap check of one member, in blktap's order; returns a MemberCheck."""
    mc = MemberCheck(name=ins.name, where=ins.where, file_size=ins.file_size)
    say = lambda reason: mc.problems.append(f"{ins.name}: {reason}")       # noqa: E731
    f = ins.footer
    if f is not None:
        _fill_identity(mc, ins)
    # footers
    primary_reasons = footer_reasons(ins.tail_raw, ignore_timestamps=ignore_timestamps, now=now) \
        if ins.tail_raw is not None else ["missing"]
    for r in primary_reasons:
        say(f"primary footer invalid: {r}")
    if ins.fatal and f is None:
        say(ins.fatal)
        return mc
    if f.disk_type == DiskType.FIXED and ins.footer is ins.tail_footer:
        data = ins.file_size - ins.footer_len
        if f.current_size != data:
            say(f"fixed disk of current size {f.current_size} holds {data} bytes of data (truncated file?)")
        return mc                                   # blktap checks nothing more on a fixed disk
    if not ins.is_dynamic:
        return mc
    for r in footer_reasons(ins.head_raw, ignore_timestamps=ignore_timestamps, now=now):
        say(f"backup footer invalid: {r}")
    if not primary_reasons and ins.head_footer is not None and ins.tail_footer is not None \
            and not _footers_match(ins.tail_footer, ins.head_footer):
        diff = _footer_diff(ins.tail_footer, ins.head_footer)
        say(f"primary and backup footers do not match ({diff})")
    # header
    if ins.header is None:
        say(f"header is invalid: {'invalid cookie' if ins.header_raw else 'missing'}"
            + (f" ({ins.fatal})" if ins.fatal else ""))
        return mc
    for r in header_reasons(ins):
        say(f"header is invalid: {r}")
    for r in differencing_reasons(ins, ignore_timestamps=ignore_timestamps, now=now):
        say(f"differencing header is invalid: {r}")
    for r in bat_reasons(ins):
        say(r)
    if _has_batmap(ins):
        if ins.batmap_header is None:
            mc.warnings.append(f"{ins.name}: no batmap, though creator tap "
                               f"{f.creator_version >> 16}.{f.creator_version & 0xFFFF} files have one "
                               "(vhd-util check would print 'error reading batmap: -22')")
        else:
            for r in batmap_reasons(ins):
                say(r)
    for r in batmap_consistency(ins):
        say(r)
    if f.disk_type == DiskType.DIFFERENCING:
        problems, paths = locator_reasons(ins)
        for r in problems:
            say(r)
        mc.parent_locators = paths
        pname = decode_parent_name(ins)
        for i, path in paths.items():
            if pname is not None and posixpath.basename(path) != pname:
                say(f"parent locator {i} name ({posixpath.basename(path)}) does not match header name ({pname})")
    if check_bitmaps:
        for r in bitmap_reasons(ins):
            say(r)
    for r in ins.unread:
        mc.warnings.append(f"{ins.name}: {r}")
    if ins.bat is not None:
        mc.allocated_blocks = sum(1 for e in ins.bat[:ins.blocks_in_use] if e != batlib.UNUSED)
    return mc


def _fill_identity(mc, ins):
    f, h = ins.footer, ins.header
    mc.disk_type = f.type_label
    mc.current_size = f.current_size
    mc.original_size = f.original_size
    mc.hidden = bool(f.hidden)
    mc.uuid = f.uuid
    mc.creator = f.creator
    mc.creator_version = f.creator_version
    if f.disk_type == DiskType.DIFFERENCING and ins.header is not None:
        mc.parent_uuid = h.parent_uuid
        mc.parent_name = h.parent_name


def _footer_diff(a, b):
    fields = ["features", "version", "data_offset", "timestamp", "creator_app", "creator_version",
              "creator_os", "original_size", "current_size", "geometry", "disk_type", "uuid",
              "saved_state", "hidden"]
    names = [n for n in fields if getattr(a, n) != getattr(b, n)]
    return "differing fields: " + ", ".join(names) if names else "reserved bytes differ"


def check_member(source, name=None, **options):
    """Check one VHD read from ``source`` (a FileSource or StreamSource)."""
    check_bitmaps = options.get("check_bitmaps", True)
    try:
        ins = inspect_member(source, name or source.where, read_bitmaps=True, read_data=check_bitmaps)
    except ArchiveError:
        raise
    except VhdError as exc:                 # e.g. a truncated stream: report, do not raise
        mc = MemberCheck(name=name or source.where, where=source.where, file_size=source.size)
        mc.problems.append(f"{mc.name}: cannot be read: {exc}")
        return mc, None
    return check_inspection(ins, **options), ins


def check_image(source, *, ignore_parent_uuid=False, check_bitmaps=True, ignore_timestamps=False):
    """Check every member of a XenServer image (tgz, directory, VHD path or list of paths,
    newest first) and the chain they form. A tgz is read in one streaming pass."""
    members, refs = [], []
    with archive.open_source(source) as opened:
        for ref in opened.members:
            name = archive.canonical_name(ref.name) or ref.name
            mc, _ins = check_member(ref.source, name, check_bitmaps=check_bitmaps,
                                    ignore_timestamps=ignore_timestamps)
            mc.position = ref.rank
            members.append(mc)
            refs.append(ref)
        report = CheckReport(source=str(opened.where), kind=opened.kind, members=members)
        report.chain_warnings.extend(opened.warnings)
        if opened.streaming:
            try:
                archive.finalize_ranks(refs, opened.where)          # duplicates, old names
            except ArchiveError as exc:
                report.chain_problems.append(str(exc))
            for mc, ref in zip(members, refs):
                mc.position = ref.rank
    members.sort(key=lambda m: (m.position, m.name))
    single = opened.kind == "files" and not isinstance(source, (list, tuple))
    _check_chain(report, ignore_parent_uuid=ignore_parent_uuid, single=single)
    return report


_TYPES = {"fixed": DiskType.FIXED, "dynamic": DiskType.DYNAMIC, "differencing": DiskType.DIFFERENCING}


def _check_chain(report, *, ignore_parent_uuid, single):
    members = report.members
    if not members:
        return
    leaf = members[0]
    if leaf.hidden:
        report.chain_warnings.append(f"{leaf.name}: the leaf is hidden (hidden=1): XenServer refuses to import "
                                     "it ('marked as hidden without child')")
    if single:
        if leaf.disk_type == "differencing":
            leaf.info.append(f"{leaf.name}: differencing disk checked alone: its parent "
                             f"{leaf.parent_name!r} (UUID {leaf.parent_uuid}) was not checked")
        return
    unreadable = [m.name for m in members if m.disk_type not in _TYPES]
    if unreadable:
        report.chain_problems.append(f"chain not checked: {', '.join(unreadable)} could not be read "
                                     "(no usable footer)")
        return
    links = [LinkInfo(position=m.position, where=m.name, disk_type=_TYPES[m.disk_type],
                      uuid=m.uuid, parent_uuid=m.parent_uuid, current_size=m.current_size, hidden=m.hidden)
             for m in members]
    report.chain_problems.extend(link_problems(links, allow_uuid_mismatch=ignore_parent_uuid))
    names = {m.name for m in members}
    for child, parent in zip(members, members[1:]):
        if child.disk_type != "differencing":
            continue
        where = f"{child.name}: parent name {child.parent_name!r}"
        if child.parent_locators:
            where += f" (locators: {', '.join(dict.fromkeys(child.parent_locators.values()))})"
        if child.parent_name in names:
            child.info.append(f"{where} is in the image (linked by position to {parent.name} all the same)")
        else:
            child.info.append(f"{where} is not in the image (normal for XenServer); linked by position "
                              f"to {parent.name}")
        if ignore_parent_uuid and child.parent_uuid != parent.uuid:
            child.info.append(f"{child.name}: parent UUID {child.parent_uuid} is not {parent.name}'s "
                              f"UUID {parent.uuid}; accepted (ignore_parent_uuid)")
    for m in members[1:]:
        if not m.hidden:
            m.info.append(f"{m.name}: parent member is not hidden (XenServer base copies are hidden=1)")


def format_report(report):
    """vhd-util's voice: per member '<name> is valid', or its reason lines then
    '<name> appears invalid'; then chain problems, warnings and info."""
    lines = []
    for m in report.members:
        lines.extend(m.problems)
        lines.append(f"{m.name} is valid" if m.ok else f"{m.name} appears invalid")
    lines.extend(f"chain: {p}" if not p.startswith("chain") else p for p in report.chain_problems)
    lines.extend(f"warning: {w}" for w in report.warnings)
    lines.extend(f"info: {i}" for i in report.info)
    if len(report.members) > 1 or report.chain_problems:
        lines.append(f"{report.source}: chain of {len(report.members)} member(s) "
                     + ("is valid" if report.ok else "appears invalid"))
    return "\n".join(lines)

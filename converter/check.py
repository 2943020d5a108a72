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

"""blktap ``vhd-util check`` validations, per member and per XenServer chain.

Per member, in blktap's order (vhd/lib/vhd-util-check.c): primary footer, backup footer and
their match, dynamic header, differencing-header fields, BAT (size, clobbered headers, footer
and blocks), batmap, parent locators, and optionally the sector bitmaps. Reasons use
vhd-util's strings ("primary footer invalid: invalid checksum") so they read like the real
tool, but unlike vhd-util we keep going after the first failure and report every problem.

Per chain (XenServer images link by position, see chain.link_problems): numbering, types,
parent UUIDs; a hidden leaf is a warning; parent names and locators pointing at files that
are not in the image are normal (XenServer relinks on import) and only reported as info.

The structures validate themselves (footer.Footer.findings, header.DynamicHeader.findings,
bat.BatmapHeader.problems); the shared reader (member.VhdMember, not strict) records block
faults and what a stream could not reach. This module orders their reasons as vhd-util
does and adds what needs several structures (BAT against file size, batmap against bitmaps,
locators against the parent name, data hidden behind clear bitmap bits). Members are read
once, in file order, so a tgz is checked in a single streaming pass without extracting anything.
"""

import posixpath
import uuid as uuidlib

from converter import archive
from converter import bat as batlib
from converter.bat import batmap_bit, full_mask
from converter.chain import LinkInfo, link_problems, runs
from converter.errors import ArchiveError, VhdError
from converter.footer import DiskType, coalesce_mark, footer_reasons, reasons, vhd_now
from converter.header import PLAT_MACX, PLAT_W2KU, PLAT_W2RU
from converter.member import VhdMember
from converter.record import factory, record

READABLE_LOCATORS = (PLAT_MACX, PLAT_W2KU, PLAT_W2RU)      # the ones blktap resolves


# --- what the blocks hold -------------------------------------------------------------------
@record
class BlockScan:
    """Sector bitmaps (and, with data, the sectors their clear bits hide) of a member's blocks."""
    read: set = factory(set)       # blocks whose bitmap was read
    full: set = factory(set)       # ... and found full
    dirty: list = factory(list)    # (block, first sector, count)


def scan_blocks(member, *, read_data=True):
    """Read every usable block's bitmap in file order; with ``read_data``, the data of blocks
    whose bitmap is not full, noting non-zero sectors whose bit is clear."""
    found = BlockScan()
    if member.header is None or member.bat is None:
        return found
    spb = member.header.sectors_per_block
    for block in member.blocks(data="partial" if read_data else False, whole=True):
        found.read.add(block.index)
        if block.mask is None:
            found.full.add(block.index)         # nothing can hide behind a full bitmap
            continue
        if block.data is None:
            continue
        data = bytes(block.data)
        for a, b in runs(~block.mask & full_mask(spb), spb):
            if data.count(0, a * 512, b * 512) == (b - a) * 512:
                continue
            dirty = [s for s in range(a, b) if data.count(0, s * 512, s * 512 + 512) != 512]
            found.dirty.append((block.index, dirty[0], len(dirty)))
    return found


# --- per-member validations that need more than one structure ----------------------------------
def bat_reasons(member):
    """vhd_util_check_bat: file size, BAT size, then the block faults the reader recorded
    (headers and footer in BAT order, then overlaps in file order)."""
    f, h = member.footer, member.header
    eof = member.source.size
    if eof % 512 and eof % 512 != 511:
        return [f"invalid file size: 0x{eof:x}"]
    bs = h.block_size
    if bs <= 0 or bs & (bs - 1):
        return []            # the header check reported it; blocks cannot be located
    if member.bat is None:
        return [f"error reading bat: -22 ({member.bat_error or member.fatal or 'the BAT lies outside the file'})"]
    nblocks = -(-f.current_size // bs)
    if nblocks > h.max_table_entries:
        return [f"VHD size ({nblocks} blocks) exceeds BAT size ({h.max_table_entries})"]
    end_secs = member.data_end // 512
    found = []
    for fault in sorted((x for x in member.faults if x.kind != "block"), key=lambda x: x.index):
        if fault.kind == "headers":
            found.append(f"block {fault.index} (offset 0x{fault.entry:x}) clobbers headers")
        else:
            found.append(f"block {fault.index} (offset 0x{fault.entry:x}) clobbers footer (past the end of the "
                         f"data at sector 0x{end_secs:x}: truncated file?)")
    for fault in member.faults:
        if fault.kind == "block":
            found.append(f"block {fault.index} (offset 0x{fault.entry:x}) clobbers block {fault.other} "
                         f"(offset 0x{fault.other_entry:x})")
    return found


def batmap_consistency(member, blocks):
    """A set batmap bit promises a full block: tapdisk then reads it without the bitmap."""
    if member.batmap is None or member.bat is None:
        return []
    found = []
    for i, entry in enumerate(member.bat):
        if not batmap_bit(member.batmap, i):
            continue
        if entry == batlib.UNUSED:
            found.append(f"batmap shows unallocated block {i} full")
        elif i in blocks.read and i not in blocks.full:
            found.append(f"batmap shows block {i} full but its sector bitmap is not full")
    return found


def locator_paths(member):
    """The paths of the locators blktap would read (valid MacX/W2ku/W2ru), as {index: path};
    and the reasons of those it could not decode."""
    h, size = member.header, member.source.size
    paths, found = {}, []
    for i, loc in enumerate(h.locators):
        if loc.code not in READABLE_LOCATORS or reasons(loc.findings(i, h.locator_raw(i), size)):
            continue
        data = member.locator_data.get(i)
        path = loc.decode(data) if data is not None else None
        if path is None:
            if data is not None:
                found.append(f"error reading parent locator {i}: -22")
            continue
        paths[i] = path
    return paths, found


def bitmap_reasons(blocks):
    found = []
    for block, first, count in blocks.dirty:
        more = f" (and {count - 1} more sectors of this block)" if count > 1 else ""
        found.append(f"sector 0x{first:x} of block 0x{block:x} has data where bitmap is clear{more}")
    return found


# --- reports --------------------------------------------------------------------------------
@record
class MemberCheck:
    name: str
    where: str
    position: int | None = None
    problems: list = factory(list)
    warnings: list = factory(list)
    info: list = factory(list)
    disk_type: str | None = None
    current_size: int | None = None
    original_size: int | None = None
    hidden: bool = False
    uuid: uuidlib.UUID | None = None
    parent_uuid: uuidlib.UUID | None = None
    parent_name: str | None = None
    parent_locators: dict = factory(dict)   # index -> decoded path
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


@record
class CheckReport:
    source: str
    kind: str
    members: list                 # MemberCheck, newest first
    chain_problems: list = factory(list)
    chain_warnings: list = factory(list)
    chain_info: list = factory(list)

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


def _probe_is_not_batmap_header(member):
    """In a stream, the batmap header's place held a block's sector bitmap, read with the block:
    the verdict of a random-access read of that place (no 'tdbatmap' cookie there)."""
    raw = member.batmap_probe_raw
    return raw is not None and batlib.BatmapHeader.unpack(raw) is None


def check_vhd(member, name, blocks=None, *, check_bitmaps=True, ignore_timestamps=False, now=None):
    """Every blktap check of one member read by VhdMember (not strict), in blktap's order;
    ``blocks``: its BlockScan. Returns a MemberCheck."""
    blocks = blocks or BlockScan()
    size = member.source.size
    mc = MemberCheck(name=name, where=member.where, file_size=size)
    say = lambda reason: mc.problems.append(f"{name}: {reason}")       # noqa: E731
    f, h = member.footer, member.header
    if f is not None:
        _fill_identity(mc, member)
    now = None if ignore_timestamps else (vhd_now() if now is None else now)
    marks = {coalesce_mark(raw) for raw in (member.tail_raw, member.head_raw)} - {None}
    for child in sorted(marks, key=str):
        say(f"interrupted coalesce: holds a mix of its own sectors and those of child {child}; "
            "run the same coalesce again")
    # footers
    primary_reasons = footer_reasons(member.tail_raw, now=now)
    for r in primary_reasons:
        say(f"primary footer invalid: {r}")
    if f is None:
        say(member.fatal or "no valid footer")
        return mc
    if f.disk_type == DiskType.FIXED and f is member.tail_footer:
        if not member.fixed_size_ok:
            say(f"fixed disk of current size {f.current_size} holds {member.data_end} bytes of data "
                "(truncated file?)")
        return mc                                   # blktap checks nothing more on a fixed disk
    if not f.is_dynamic:
        return mc
    for r in footer_reasons(member.head_raw, now=now):
        say(f"backup footer invalid: {r}")
    head, tail = member.head_footer, member.tail_footer
    if not primary_reasons and head is not None and tail is not None and not tail.matches(head):
        say(f"primary and backup footers do not match ({_footer_diff(tail, head)})")
    # header
    if h is None:
        say(f"header is invalid: {'invalid cookie' if member.header_raw else 'missing'}"
            + (f" ({member.fatal})" if member.fatal else ""))
        return mc
    for r in reasons(h.findings(f, size)):
        say(f"header is invalid: {r}")
    for r in reasons(h.differencing_findings(f, now=now)):
        say(f"differencing header is invalid: {r}")
    for r in bat_reasons(member):
        say(r)
    if member.has_batmap and member.end_of_headers is not None:
        hdr = member.batmap_header
        if hdr is not None:
            for r in hdr.problems(member.batmap, f.current_size, h.max_table_entries, size):
                say(f"batmap is invalid: {r}")
        elif not member.batmap_unread or _probe_is_not_batmap_header(member):
            say(f"error reading batmap: -22 (no 'tdbatmap' header after the BAT, though creator tap "
                f"{f.creator_version >> 16}.{f.creator_version & 0xFFFF} disks have one)")
    for r in batmap_consistency(member, blocks):
        say(r)
    if f.disk_type == DiskType.DIFFERENCING:
        for r in reasons(h.locator_findings(size)):
            say(r)
        paths, problems = locator_paths(member)
        for r in problems:
            say(r)
        mc.parent_locators = paths
        pname = h.decode_parent_name(f.is_tap and f.creator_version == 0x00000001)
        for i, path in paths.items():
            if pname is not None and posixpath.basename(path) != pname:
                say(f"parent locator {i} name ({posixpath.basename(path)}) does not match header name ({pname})")
    if check_bitmaps:
        # blktap's check calls such a file valid (the read rule never shows those bytes):
        # reported, with blktap's verdict
        for r in bitmap_reasons(blocks):
            mc.warnings.append(f"{name}: {r} (never read; vhd-util check calls the file valid)")
    for r in member.unread:
        mc.warnings.append(f"{name}: {r}")
    mc.allocated_blocks = member.allocated_blocks
    return mc


def _fill_identity(mc, member):
    f, h = member.footer, member.header
    mc.disk_type = f.type_label
    mc.current_size = f.current_size
    mc.original_size = f.original_size
    mc.hidden = bool(f.hidden)
    mc.uuid = f.uuid
    mc.creator = f.creator
    mc.creator_version = f.creator_version
    if f.disk_type == DiskType.DIFFERENCING and h is not None:
        mc.parent_uuid = h.parent_uuid
        mc.parent_name = h.parent_name


def _footer_diff(a, b):
    fields = ["features", "version", "data_offset", "timestamp", "creator_app", "creator_version",
              "creator_os", "original_size", "current_size", "geometry", "disk_type", "uuid",
              "saved_state", "hidden"]
    names = [n for n in fields if getattr(a, n) != getattr(b, n)]
    return "differing fields: " + ", ".join(names) if names else "reserved bytes differ"


def check_member(source, name=None, *, check_bitmaps=True, ignore_timestamps=False, now=None):
    """Check one VHD read from ``source`` (a FileSource or StreamSource) in one pass, in file
    order; returns (MemberCheck, VhdMember or None)."""
    name = name or source.where
    try:
        member = VhdMember.open(source, strict=False)
        blocks = scan_blocks(member, read_data=check_bitmaps)
        member.finish()
    except ArchiveError:
        raise
    except VhdError as exc:                 # e.g. a truncated stream: report, do not raise
        mc = MemberCheck(name=name, where=source.where, file_size=source.size)
        mc.problems.append(f"{name}: cannot be read: {exc}")
        return mc, None
    return check_vhd(member, name, blocks, check_bitmaps=check_bitmaps, ignore_timestamps=ignore_timestamps,
                     now=now), member


def check_image(source, *, ignore_parent_uuid=False, check_bitmaps=True, ignore_timestamps=False):
    """Check every member of a XenServer image (tgz, directory, VHD path or list of paths,
    newest first) and the chain they form. A tgz is read in one streaming pass."""
    members, refs = [], []
    with archive.open_source(source) as opened:
        for ref in opened.members:
            name = archive.canonical_name(ref.name) or ref.name
            mc, _member = check_member(ref.source, name, check_bitmaps=check_bitmaps,
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

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

"""``vhd-util read -p`` style dumps (blktap vhd/lib/vhd-util-read.c), per member.

``dump_member`` turns a member's metadata (footer, dynamic header, parent locators with
their decoded paths, a BAT summary, the batmap header) into a JSON-friendly dict;
``format_dump`` prints it with blktap's labels (padded to 20 columns, then ': ').
Numbers are decimal as without ``-x``; timestamps use ctime in the local time zone, as
blktap does. The BAT summary is ours (blktap prints none with -p).
"""

import os
import time

from converter import archive
from converter import bat as batlib
from converter.errors import ArchiveError, VhdError
from converter.footer import VHD_EPOCH, DiskType
from converter.header import LOCATOR_COUNT
from converter.member import VhdMember
from converter.source import FileSource

DISK_TYPE_NAMES = {0: "None", 1: "Reserved (deprecated)", 2: "Fixed hard disk", 3: "Dynamic hard disk",
                   4: "Differencing hard disk", 5: "Reserved (deprecated)", 6: "Reserved (deprecated)"}
CREATOR_OS = {0x5769326B: "Windows", 0x4D616320: "Macintosh"}
PLATFORM_NAMES = {b"MacX": "PLAT_CODE_MACX", b"W2ku": "PLAT_CODE_W2KU", b"W2ru": "PLAT_CODE_W2RU",
                  b"Wi2r": "PLAT_CODE_WI2R", b"Wi2k": "PLAT_CODE_WI2K", b"Mac ": "PLAT_CODE_MAC"}


def _text(raw):
    return raw.split(b"\0", 1)[0].decode("latin-1")


def _footer_dict(f):
    return {"cookie": _text(f.cookie), "features": f.features, "version": f.version,
            "data_offset": f.data_offset, "timestamp": f.timestamp, "creator_app": _text(f.creator_app),
            "creator_version": f.creator_version, "creator_os": int.from_bytes(f.creator_os, "big"),
            "original_size": f.original_size, "current_size": f.current_size, "geometry": list(f.geometry),
            "disk_type": int(f.disk_type), "disk_type_label": f.type_label, "checksum": f.checksum,
            "computed_checksum": f.computed_checksum, "uuid": str(f.uuid), "saved_state": f.saved_state,
            "hidden": f.hidden}


def _header_dict(member):
    h = member.header
    # blktap decodes UTF-16BE to ASCII; None prints as 'failed to read name'
    f = member.footer
    name = h.decode_parent_name(f.is_tap and f.creator_version == 0x00000001) \
        if f.disk_type == DiskType.DIFFERENCING else h.parent_name
    return {"cookie": _text(h.cookie), "data_offset": h.data_offset, "table_offset": h.table_offset,
            "version": h.version, "max_table_entries": h.max_table_entries, "block_size": h.block_size,
            "parent_name": name, "parent_uuid": str(h.parent_uuid), "parent_timestamp": h.parent_timestamp,
            "checksum": h.checksum, "computed_checksum": h.computed_checksum}


def _locators(member):
    out = []
    for i, loc in enumerate(member.header.locators[:LOCATOR_COUNT]):
        if not loc.used:
            continue
        data = member.locator_data.get(i)
        out.append({"index": i, "code": _text(loc.code) if loc.code.isascii() else loc.code.hex(),
                    "code_name": PLATFORM_NAMES.get(loc.code, "UNKOWN"), "data_space": loc.data_space,
                    "data_length": loc.data_length, "data_offset": loc.data_offset,
                    "decoded": None if data is None else loc.decode(data)})
    return out


def _bat_summary(member):
    f, h, table = member.footer, member.header, member.bat
    if table is None:
        return None
    in_use = min(-(-f.current_size // h.block_size), len(table)) if h.block_size > 0 else 0
    used = [e for e in table[:in_use] if e != batlib.UNUSED]
    out = {"max_table_entries": h.max_table_entries, "entries_in_use": in_use, "allocated_blocks": len(used),
           "first_block_offset": min(used) * 512 if used else None,
           "last_block_end": max(used) * 512 + h.bitmap_size + h.block_size if used else None}
    if member.batmap is not None:
        out["full_blocks"] = sum(1 for i in range(in_use) if batlib.batmap_bit(member.batmap, i))
    return out


def _batmap_dict(member):
    hdr = member.batmap_header
    if hdr is None:
        return None
    out = {"offset": hdr.batmap_offset, "size": hdr.batmap_size, "version": hdr.batmap_version,
           "checksum": hdr.checksum, "marker": hdr.marker, "computed_checksum": None}
    if member.batmap is not None:
        out["computed_checksum"] = batlib.batmap_checksum(member.batmap, member.footer.current_size,
                                                          hdr.batmap_version)
    return out


def dump_member(member, name=None):
    """A dict of ``member``'s metadata: a VhdMember (any mode) or a VHD path."""
    if isinstance(member, (str, os.PathLike)):
        with FileSource(member) as src:
            return dump_member(VhdMember.inspect(src), name or os.fspath(member))
    out = {"name": name or member.where, "where": member.where, "file_size": member.source.size, "footer": None,
           "header": None, "parent_locators": [], "bat": None, "batmap": None, "error": member.fatal}
    f = member.footer
    if f is None:
        out["error"] = out["error"] or "no valid footer"
        return out
    out["footer"] = _footer_dict(f)
    if member.header is None:
        if f.is_dynamic and not out["error"]:
            out["error"] = "no dynamic header"
        return out
    out["header"] = _header_dict(member)
    if f.disk_type == DiskType.DIFFERENCING:
        out["parent_locators"] = _locators(member)
    out["bat"] = _bat_summary(member)
    out["batmap"] = _batmap_dict(member)
    return out


def dump_image(source):
    """dump_member for every member of a XenServer image, newest first (a tgz in one pass)."""
    dumps = []
    with archive.open_source(source) as opened:
        for ref in opened.members:
            name = archive.canonical_name(ref.name) or ref.name
            try:
                d = dump_member(VhdMember.inspect(ref.source), name)
            except ArchiveError:
                raise
            except VhdError as exc:
                d = {"name": name, "where": ref.where, "file_size": ref.source.size, "footer": None,
                     "header": None, "parent_locators": [], "bat": None, "batmap": None, "error": str(exc)}
            d["position"] = ref.rank
            dumps.append(d)
    dumps.sort(key=lambda d: (d["position"], d["name"]))
    return dumps


# --- text -------------------------------------------------------------------------------------
def _row(label, value):
    return f"{label:<20}: {value}"


def _ctime(ts):
    return time.ctime(ts + VHD_EPOCH)


def _checksum(stored, computed):
    if computed is None:
        return f"0x{stored:x}"
    return f"0x{stored:x}|0x{computed:x} ({'Good!' if stored == computed else 'Bad!'})"


def _mb(n):
    return f"{n >> 20} MB ({n} Bytes)"


def _format_footer(f):
    tags = ("<TEMP>" if f["features"] & 1 else "") + ("<RESV>" if f["features"] & 2 else "")
    c, h, s = f["geometry"]
    return [
        "VHD Footer Summary:", "-------------------",
        _row("Cookie", f["cookie"]),
        _row("Features", f"(0x{f['features']:08x}) {tags}"),
        _row("File format version", f"Major: {f['version'] >> 16}, Minor: {f['version'] & 0xFFFF}"),
        _row("Data offset", f["data_offset"]),
        _row("Timestamp", _ctime(f["timestamp"])),
        _row("Creator Application", f"'{f['creator_app']}'"),
        _row("Creator version", f"Major: {f['creator_version'] >> 16}, Minor: {f['creator_version'] & 0xFFFF}"),
        _row("Creator OS", CREATOR_OS.get(f["creator_os"], "Unknown!")),
        _row("Original disk size", _mb(f["original_size"])),
        _row("Current disk size", _mb(f["current_size"])),
        _row("Geometry", f"Cyl: {c}, Hds: {h}, Sctrs: {s}"),
        _row("", f"= {(c * h * s) >> 11} MB ({(c * h * s) << 9} Bytes)"),
        _row("Disk type", DISK_TYPE_NAMES.get(f["disk_type"], "Unknown type!")),
        _row("Checksum", _checksum(f["checksum"], f["computed_checksum"])),
        _row("UUID", f["uuid"]),
        _row("Saved state", "Yes" if f["saved_state"] else "No"),
        _row("Hidden", f["hidden"]),
        ""]


def _format_header(h):
    return [
        "VHD Header Summary:", "-------------------",
        _row("Cookie", h["cookie"]),
        _row("Data offset (unusd)", h["data_offset"]),
        _row("Table offset", h["table_offset"]),
        _row("Header version", f"0x{h['version']:08x}"),
        _row("Max BAT size", h["max_table_entries"]),
        _row("Block size", f"{h['block_size']} ({h['block_size'] >> 20} MB)"),
        _row("Parent name", "failed to read name" if h["parent_name"] is None else h["parent_name"]),
        _row("Parent UUID", h["parent_uuid"]),
        _row("Parent timestamp", _ctime(h["parent_timestamp"])),
        _row("Checksum", _checksum(h["checksum"], h["computed_checksum"])),
        ""]


def _format_locators(locs):
    lines = ["VHD Parent Locators:", "--------------------"]
    for loc in locs:
        lines += [_row("locator:", loc["index"]),
                  _row("       code", loc["code_name"]),
                  _row("       data_space", loc["data_space"]),
                  _row("       data_length", loc["data_length"]),
                  _row("       data_offset", loc["data_offset"]),
                  _row("       decoded name", loc["decoded"] if loc["decoded"] is not None
                       else "failed to read parent name"),
                  ""]
    return lines


def _format_bat(b):
    lines = ["VHD BAT Summary:", "----------------",
             _row("Max BAT size", b["max_table_entries"]),
             _row("Entries in use", b["entries_in_use"]),
             _row("Allocated blocks", b["allocated_blocks"])]
    if b["first_block_offset"] is not None:
        lines += [_row("First block offset", b["first_block_offset"]),
                  _row("Last block end", b["last_block_end"])]
    if "full_blocks" in b:
        lines.append(_row("Full blocks (batmap)", b["full_blocks"]))
    return lines + [""]


def _format_batmap(m):
    return ["VHD Batmap Summary:", "-------------------",
            _row("Batmap offset", m["offset"]),
            _row("Batmap size (secs)", m["size"]),
            _row("Batmap version", f"0x{m['version']:08x}"),
            _row("Checksum", _checksum(m["checksum"], m["computed_checksum"])),
            ""]


def format_dump(d, *, blktap=False):
    """The dict of dump_member as ``vhd-util read -p`` prints it, preceded by the member name
    and followed by a BAT summary; ``blktap``: exactly blktap's sections (footer, header,
    locators, batmap), for ``xen-vhd-util``."""
    lines = [] if blktap else [f"{d['name']}:"]
    if d.get("error") and not blktap:
        lines += [f"Failed to open {d['name']}: -22 ({d['error']})", ""]
    if d["footer"]:
        lines += _format_footer(d["footer"])
    if d["header"]:
        lines += _format_header(d["header"])
    if d["parent_locators"]:
        lines += _format_locators(d["parent_locators"])
    if d["bat"] and not blktap:
        lines += _format_bat(d["bat"])
    if d["batmap"]:
        lines += _format_batmap(d["batmap"])
    return "\n".join(lines)


def format_unopenable(d):
    """``vhd-util read -p`` on a file libvhd cannot open: its footer and header as read."""
    lines = [f"Failed to open {d['name']}: -22", "", f"{d['name']} appears invalid; dumping headers", ""]
    if d["footer"]:
        lines += _format_footer(d["footer"])
    if d["header"]:
        lines += _format_header(d["header"])
    return "\n".join(lines)

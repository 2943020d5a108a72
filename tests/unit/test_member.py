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

"""converter.member in tolerant mode (what check, scan and dump read with), the blktap batmap
checksum, and the blktap-like defaults of the writer."""

import os
import struct
import tarfile
import uuid as uuidlib

import pytest

from converter import bat
from converter.check import check_image
from converter.errors import FormatError
from converter.footer import DiskType, Footer
from converter.header import DynamicHeader
from converter.member import BlockFault, VhdMember
from converter.source import FileSource, StreamSource
from converter.writer import VhdWriter, vhd_from_raw
from tests.unit.test_check import (
    BLOCK,
    MIB,
    bat_of,
    has,
    make_vhd,
    pack_shuffled,
    patch,
    read_at,
    rewrite_header,
    set_bat,
)


def open_file(path, strict):
    src = FileSource(path)
    return VhdMember.open(src, strict=strict)


def open_stream(tgz, strict):
    """The single member of ``tgz`` as a forward-only stream, read with ``strict``; the member
    is consumed (blocks, then footer) while the archive is open."""
    with tarfile.open(tgz, "r:gz") as t:
        (info,) = [m for m in t.getmembers() if m.isfile()]
        f = t.extractfile(info)
        member = VhdMember.open(StreamSource(f.read, info.size, info.name), strict=strict)
        blocks = [b.index for b in member.blocks()]
        member.finish()
    return member, blocks


# --- tolerant mode: block faults are recorded, faulty blocks skipped ---------------------------
def test_overlapping_blocks_recorded_not_raised(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, writes=((0, BLOCK), (BLOCK, BLOCK)))
    table = bat_of(p)
    set_bat(p, 1, table[0] + 8)
    with pytest.raises(FormatError, match="BAT entries 0 and 1 overlap"):
        open_file(p, strict=True)
    m = open_file(p, strict=False)
    assert m.faults == [BlockFault("block", 1, table[0] + 8, 0, table[0])]
    assert [b.index for b in m.blocks()] == [0]
    assert m.allocated_blocks == 2 and m.fatal is None


def test_block_past_eof_recorded_not_raised(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, writes=((0, BLOCK), (BLOCK, 4096)))
    beyond = os.path.getsize(p) // 512 + 100
    set_bat(p, 1, beyond)
    with pytest.raises(FormatError, match="past the end of the data"):
        open_file(p, strict=True)
    m = open_file(p, strict=False)
    assert m.faults == [BlockFault("footer", 1, beyond)]
    assert [b.index for b in m.blocks()] == [0]


def test_block_clobbering_metadata_recorded_not_raised(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, writes=((0, BLOCK), (BLOCK, 4096)))
    set_bat(p, 1, 3)                                  # sector 3: the BAT itself
    with pytest.raises(FormatError, match="inside the file's metadata"):
        open_file(p, strict=True)
    m = open_file(p, strict=False)
    assert BlockFault("headers", 1, 3) in m.faults
    assert 1 not in [b.index for b in m.blocks()]


def test_end_of_headers_covers_batmap_and_locators(tmp_path):
    p = tmp_path / "c.vhd"
    make_vhd(p, disk_type="differencing", parent_uuid=uuidlib.uuid4(), writes=((0, 512),))
    m = open_file(p, strict=False)
    h = m.header
    loc_end = max(loc.data_offset + loc.space_bytes for loc in h.locators if loc.used)
    assert m.end_of_headers == loc_end == bat_of(p)[0] * 512       # the first block follows
    assert m.batmap_header.batmap_offset + 512 <= loc_end and m.faults == []


def test_unreadable_header_and_bat_are_recorded(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    rewrite_header(p, lambda h: setattr(h, "max_table_entries", 1 << 30))
    m = open_file(p, strict=False)
    assert m.bat is None and "1073741824 BAT entries" in m.bat_error and m.fatal is None
    assert list(m.blocks()) == []
    patch(p, 512, b"notcxspa")
    with pytest.raises(FormatError, match="not 'cxsparse'"):
        open_file(p, strict=True)
    m = open_file(p, strict=False)
    assert m.header is None and "no dynamic header here" in m.fatal and m.header_raw[:8] == b"notcxspa"


def test_not_a_vhd_is_fatal_not_raised(tmp_path):
    p = tmp_path / "x.vhd"
    p.write_bytes(b"\x07" * 4096)
    m = open_file(p, strict=False)
    assert m.footer is None and "not a VHD" in m.fatal and m.tail_raw == b"\x07" * 512


def test_stream_records_what_it_cannot_reach(tmp_path):
    """A locator whose data lies inside a block: a stream cannot read it without giving up the
    block. Tolerant mode records it as not read (and the block as clobbering the headers, as
    blktap would); conversion skips the locator silently and reads the block; files read both."""
    p = tmp_path / "0.vhd"
    make_vhd(p, disk_type="differencing", parent_uuid=uuidlib.uuid4(), writes=((0, BLOCK),))
    first = bat_of(p)[0]
    rewrite_header(p, lambda h: setattr(h.locators[1], "data_offset", (first + 1) * 512 + BLOCK // 2))
    tgz = pack_shuffled(tmp_path / "i.tgz", [p], [0])
    tolerant, blocks = open_stream(tgz, strict=False)
    assert blocks == [] and tolerant.faults == [BlockFault("headers", 0, first)]
    assert 1 not in tolerant.locator_data and 0 in tolerant.locator_data
    assert has(tolerant.unread, "parent locator 1 at byte", "not read from the stream")
    strict, blocks = open_stream(tgz, strict=True)
    assert blocks == [0] and strict.unread == [] and 1 not in strict.locator_data
    assert 1 in open_file(p, strict=False).locator_data
    report = check_image(tgz)
    assert has(report.warnings, "0.vhd: parent locator 1", "not read from the stream")
    assert has(report.problems, f"0.vhd: block 0 (offset 0x{first:x}) clobbers headers")


def test_primary_footer_bytes_are_kept_for_the_checker(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    size = os.path.getsize(p)
    patch(p, size - 512, b"garbage!")
    m = open_file(p, strict=False)
    assert m.tail_raw[:8] == b"garbage!" and m.tail_footer is None
    assert m.footer is m.head_footer and has(m.problems, "primary footer invalid")


# --- structures: one validation, two voices ----------------------------------------------------
def test_footer_findings_give_blktap_reasons_and_converter_messages():
    f = Footer(disk_type=DiskType.DYNAMIC, current_size=8 * MIB, original_size=8 * MIB, uuid=uuidlib.uuid4(),
               data_offset=512, saved_state=3, features=0)
    f.pack()
    assert f.problems() == ["invalid saved state 3"]
    assert f.reasons() == ["invalid 'reserved' feature", "invalid 'saved' state"]


def test_header_findings_give_blktap_reasons_and_converter_messages():
    h = DynamicHeader(table_offset=1536, max_table_entries=4, block_size=4 * MIB)
    h.pack()
    assert h.problems() == []                                       # the converter reads 4 MiB blocks
    assert [f.text for f in h.findings() if f.reason] == ["invalid block size (4194304: libvhd opens at most 2097152)"]


# --- batmap checksum ---------------------------------------------------------------------------
def test_batmap_map_size_follows_current_size():
    assert bat.batmap_map_size(8 * MIB) == 512                     # at least one sector
    assert bat.batmap_map_size(16 * MIB * 512) == 512              # one byte per 16 MiB
    assert bat.batmap_map_size(16 * MIB * 513) == 1024
    assert bat.batmap_map_size(16 * MIB * 512 + 14 * MIB) == 512   # the count is floored


def test_batmap_checksum_covers_only_the_map_size():
    data = b"\x01" * 512 + b"\xff" * 512
    assert bat.batmap_checksum(data, 8 * MIB) == ~512 & 0xFFFFFFFF
    assert bat.batmap_checksum(data, 16 * MIB * 513) == ~(512 + 255 * 512) & 0xFFFFFFFF
    assert bat.batmap_checksum(b"\x01", 8 * MIB) == ~1 & 0xFFFFFFFF     # missing bytes count as zero


def test_batmap_checksum_version_1_1_sums_signed_chars():
    data = bytes([0x80, 0xFF, 0x01, 0x7F])
    assert bat.batmap_checksum(data, 8 * MIB, 0x00010002) == ~(0x80 + 0xFF + 0x01 + 0x7F) & 0xFFFFFFFF
    assert bat.batmap_checksum(data, 8 * MIB, 0x00010001) == ~(-128 - 1 + 1 + 127) & 0xFFFFFFFF == 0
    assert bat.batmap_checksum(b"\x90", 8 * MIB, 0x00010001) == ~(0x90 - 256) & 0xFFFFFFFF == 0x6F


def _set_batmap_version(path, version, *, signed):
    header = DynamicHeader.unpack(read_at(path, 512, 1024))
    at = header.table_offset + header.bat_size
    hdr = bat.BatmapHeader.unpack(read_at(path, at, 512))
    data = read_at(path, hdr.batmap_offset, hdr.batmap_size * 512)
    hdr.batmap_version = version
    hdr.checksum = bat.batmap_checksum(data, 8 * MIB, 0x00010001 if signed else 0x00010002)
    patch(path, at, hdr.pack())
    return data


def test_version_1_1_batmap_checked_with_signed_sum(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, creator_version=0x00010001, batmap=True)           # block 0 full: map byte 0x80
    data = _set_batmap_version(p, 0x00010001, signed=True)
    assert data[0] == 0x80
    assert check_image(p).ok
    m = open_file(p, strict=True)                                   # conversion agrees
    assert m.batmap_header.batmap_version == 0x00010001
    _set_batmap_version(p, 0x00010001, signed=False)
    assert has(check_image(p).problems, "batmap is invalid: invalid checksum")
    with pytest.raises(FormatError, match="invalid batmap checksum"):
        open_file(p, strict=True)


# --- writer: like blktap -----------------------------------------------------------------------
def test_tap_disks_look_like_blktaps(tmp_path):
    p = tmp_path / "d.vhd"
    make_vhd(p, batmap=None)
    m = open_file(p, strict=True)
    assert m.footer.creator_os == b"\0\0\0\0" and m.batmap_header is not None and m.has_batmap
    assert m.batmap_header.checksum == bat.batmap_checksum(m.batmap, 8 * MIB)
    assert check_image(p).ok


@pytest.mark.parametrize("kw,has_batmap", [
    (dict(batmap=False), False),
    (dict(creator_version=0x00010001), False),           # tap 1.1: optional, blktap did not write one
    (dict(creator_app=b"vpc "), False),
    (dict(disk_type="fixed"), False),
])
def test_writer_batmap_defaults(tmp_path, kw, has_batmap):
    p = tmp_path / "d.vhd"
    with VhdWriter(p, size=4 * MIB, **kw) as w:
        w.write(0, b"x" * 512)
    m = open_file(p, strict=True)
    assert (m.batmap_header is not None) == has_batmap
    if kw.get("creator_app") == b"vpc ":
        assert m.footer.creator_os == b"Lnux"


def test_vhd_from_raw_passes_batmap_through(tmp_path):
    raw = tmp_path / "d.raw"
    raw.write_bytes(b"\x01" * MIB + bytes(MIB))
    vhd_from_raw(raw, tmp_path / "a.vhd")
    vhd_from_raw(raw, tmp_path / "b.vhd", batmap=False)
    assert open_file(tmp_path / "a.vhd", True).batmap_header is not None
    assert open_file(tmp_path / "b.vhd", True).batmap_header is None
    assert struct.unpack(">I", read_at(tmp_path / "a.vhd", 36, 4)) == (0,)       # creator OS

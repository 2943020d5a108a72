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

"""converter.check: blktap ``vhd-util check`` validations per member and per XenServer chain."""

import json
import os
import struct
import tarfile
import uuid as uuidlib

import pytest

from converter import archive
from converter.bat import UNUSED, pack_bat, unpack_bat
from converter.check import check_image, format_report
from converter.errors import VhdError
from converter.footer import Footer, now_timestamp
from converter.header import DynamicHeader
from converter.writer import VhdWriter, set_hidden

MIB = 1 << 20
BLOCK = 2 * MIB


# --- helpers (also used by test_scan and test_dump) --------------------------------------------
def make_vhd(path, *, size=8 * MIB, writes=((0, BLOCK),), batmap=True, **kw):
    """A VHD written by VhdWriter; ``writes``: (offset, length) filled with a pattern."""
    with VhdWriter(path, size=size, batmap=batmap, **kw) as w:
        for offset, length in writes:
            w.write(offset, bytes([(offset >> 9) % 251 + 1]) * length)
    return w.uuid


def make_chain(directory, n=3, *, mismatch_at=None, leaf_hidden=False, names=None, sizes=None, **kw):
    """Members 0 (leaf) .. n-1 (base) of a XenServer chain; returns paths newest first."""
    names = names or [f"{i}.vhd" for i in range(n)]
    sizes = sizes or [8 * MIB] * n
    paths = [os.path.join(directory, name) for name in names]
    parent_uuid = None
    for i in reversed(range(n)):
        hidden = i > 0 or leaf_hidden
        if i == n - 1:
            parent_uuid = make_vhd(paths[i], size=sizes[i], hidden=hidden, **kw)
            continue
        claimed = uuidlib.uuid4() if mismatch_at == i else parent_uuid
        parent_uuid = make_vhd(paths[i], size=sizes[i], disk_type="differencing", parent_uuid=claimed,
                               parent_name=f"{uuidlib.uuid4()}.vhd", hidden=hidden,
                               writes=((4096 * (i + 1), 1024),), **kw)
    return paths


def pack_shuffled(tgz, paths, order):
    """A tgz with members ./k.vhd stored in ``order`` (positions), after a './' entry."""
    archive.write_tar(tgz, [paths[p] for p in order], [f"./{p}.vhd" for p in order])
    return tgz


def patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def read_at(path, offset, n):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def tail_offset(path):
    size = os.path.getsize(path)
    return size - (511 if size % 512 else 512)


def rewrite_footer(path, mutate, *, head=True, tail=True):
    """Apply ``mutate`` to the footer and write it back (checksum recomputed)."""
    footer = Footer.unpack(read_at(path, tail_offset(path), 512))
    mutate(footer)
    raw = footer.pack()
    if tail:
        patch(path, tail_offset(path), raw)
    if head:
        patch(path, 0, raw)


def rewrite_header(path, mutate):
    header = DynamicHeader.unpack(read_at(path, 512, 1024))
    mutate(header)
    patch(path, 512, header.pack())


def set_bat(path, index, value):
    header = DynamicHeader.unpack(read_at(path, 512, 1024))
    table = list(unpack_bat(read_at(path, header.table_offset, header.max_table_entries * 4),
                            header.max_table_entries))
    table[index] = value
    patch(path, header.table_offset, pack_bat(table, header.max_table_entries))
    return table


def bat_of(path):
    header = DynamicHeader.unpack(read_at(path, 512, 1024))
    return list(unpack_bat(read_at(path, header.table_offset, header.max_table_entries * 4),
                           header.max_table_entries))


def has(lines, *fragments):
    """Some line holds every fragment."""
    return any(all(f in line for f in fragments) for line in lines)


# --- valid members ----------------------------------------------------------------------------
def test_valid_dynamic(tmp_path):
    p = tmp_path / "d.vhd"
    uid = make_vhd(p, writes=((0, BLOCK), (BLOCK + 4096, 512)))
    report = check_image(p)
    assert report.ok, report.problems
    assert report.problems == [] and report.warnings == []
    m = report.members[0]
    assert (m.disk_type, m.current_size, m.original_size, m.hidden, m.uuid) == ("dynamic", 8 * MIB, 8 * MIB,
                                                                                 False, uid)
    assert m.creator == "tap" and m.allocated_blocks == 2 and m.file_size == os.path.getsize(p)
    assert format_report(report) == f"{p} is valid"
    json.dumps(report.to_json())


def test_valid_fixed_and_511_byte_footer(tmp_path):
    fixed = tmp_path / "f.vhd"
    make_vhd(fixed, disk_type="fixed", size=MIB, batmap=False, writes=((0, 4096),))
    old = tmp_path / "old.vhd"
    make_vhd(old, footer_511=True)
    assert os.path.getsize(old) % 512 == 511
    for p in (fixed, old):
        report = check_image(p)
        assert report.ok, report.problems
    assert check_image(fixed).members[0].disk_type == "fixed"


def test_valid_differencing_alone_is_info(tmp_path):
    p = tmp_path / "child.vhd"
    parent = uuidlib.uuid4()
    make_vhd(p, disk_type="differencing", parent_uuid=parent, parent_name="base.vhd", writes=((512, 512),))
    report = check_image(p)
    assert report.ok, report.problems
    m = report.members[0]
    assert m.disk_type == "differencing" and m.parent_uuid == parent and m.parent_name == "base.vhd"
    assert m.parent_locators == {0: "./base.vhd", 1: "base.vhd"}
    assert has(report.info, "checked alone", "base.vhd")


def test_xenserver_tgz_shuffled_is_valid_with_dangling_parent_info(tmp_path):
    paths = make_chain(tmp_path, 3, sizes=[16 * MIB, 16 * MIB, 8 * MIB])
    tgz = pack_shuffled(tmp_path / "image.tgz", paths, [2, 0, 1])
    report = check_image(tgz)
    assert report.ok, report.problems
    assert [m.name for m in report.members] == ["0.vhd", "1.vhd", "2.vhd"]
    assert [m.disk_type for m in report.members] == ["differencing", "differencing", "dynamic"]
    assert [m.hidden for m in report.members] == [False, True, True]
    assert [m.current_size for m in report.members] == [16 * MIB, 16 * MIB, 8 * MIB]
    assert report.members[0].where == f"{tgz}:./0.vhd"
    assert report.members[0].parent_uuid == report.members[1].uuid
    assert has(report.info, "0.vhd: parent name", "not in the image", "linked by position to 1.vhd")
    assert has(report.info, "1.vhd: parent name", "linked by position to 2.vhd")
    assert report.warnings == []
    text = format_report(report)
    assert text.splitlines()[:3] == ["0.vhd is valid", "1.vhd is valid", "2.vhd is valid"]
    assert f"{tgz}: chain of 3 member(s) is valid" in text
    doc = report.to_json()
    json.dumps(doc)
    assert doc["ok"] is True and doc["members"][2]["disk_type"] == "dynamic"


def test_directory_and_list_sources(tmp_path):
    paths = make_chain(tmp_path, 2)
    assert check_image(tmp_path).ok
    report = check_image(paths)
    assert report.ok and [m.position for m in report.members] == [0, 1]


# --- footer and header ------------------------------------------------------------------------
@pytest.mark.parametrize("container", ["file", "tgz"])
def test_bad_footer_checksum(tmp_path, container):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    off = tail_offset(p)
    patch(p, off + 64, b"\x00\x00\x00\x01")
    src = p if container == "file" else pack_shuffled(tmp_path / "i.tgz", [p], [0])
    report = check_image(src)
    assert not report.ok
    assert has(report.problems, "0.vhd: primary footer invalid: invalid checksum")
    assert "0.vhd appears invalid" in format_report(report)


def test_bad_backup_footer_and_mismatch(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    rewrite_footer(p, lambda f: setattr(f, "timestamp", f.timestamp - 100), tail=False)
    report = check_image(p)
    assert report.problems == [f"{p}: primary and backup footers do not match (differing fields: timestamp)"]
    patch(p, 64, b"\0\0\0\0")
    assert has(check_image(p).problems, "backup footer invalid: invalid checksum")


def test_footer_field_reasons(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    rewrite_footer(p, lambda f: (setattr(f, "timestamp", now_timestamp() + 7200), setattr(f, "features", 0),
                                 setattr(f, "saved_state", 3)))
    problems = check_image(p).problems
    for reason in ("invalid 'reserved' feature", "creation time in future", "invalid 'saved' state"):
        assert has(problems, f"primary footer invalid: {reason}"), problems
        assert has(problems, f"backup footer invalid: {reason}"), problems
    assert not has(check_image(p, ignore_timestamps=True).problems, "creation time")


def test_bad_header_checksum_and_all_problems_reported(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    patch(p, 512 + 36, b"\xde\xad\xbe\xef")              # header checksum
    patch(p, tail_offset(p) + 64, b"\x00\x00\x00\x01")    # footer checksum
    report = check_image(p)
    assert has(report.problems, "header is invalid: invalid checksum", "stored 0xdeadbeef")
    assert has(report.problems, "primary footer invalid: invalid checksum")
    lines = format_report(report).splitlines()
    assert lines[-1] == f"{p} appears invalid" and len(lines) == 3


def test_header_fields(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    rewrite_header(p, lambda h: (setattr(h, "block_size", 3 * MIB), setattr(h, "version", 2)))
    problems = check_image(p).problems
    assert has(problems, "header is invalid: invalid block size")
    assert has(problems, "header is invalid: invalid header version")


def test_dynamic_disk_with_parent_fields(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    rewrite_header(p, lambda h: setattr(h, "parent_uuid", uuidlib.uuid4()))
    assert has(check_image(p).problems, "differencing header is invalid: invalid non-null parent uuid")


# --- BAT --------------------------------------------------------------------------------------
def test_bat_entry_past_eof(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, writes=((0, BLOCK), (BLOCK, 4096)))
    set_bat(p, 1, os.path.getsize(p) // 512 + 100)
    report = check_image(p)
    assert has(report.problems, "block 1 (offset 0x", "clobbers footer")
    assert not has(report.problems, "block 0")


def test_bat_entry_overlapping_metadata(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, writes=((0, BLOCK), (BLOCK, 4096)))
    set_bat(p, 1, 3)                       # sector 3: inside the header
    assert has(check_image(p).problems, f"{p}: block 1 (offset 0x3) clobbers headers")


def test_overlapping_blocks(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, writes=((0, BLOCK), (BLOCK, BLOCK)))
    table = bat_of(p)
    set_bat(p, 1, table[0] + 8)
    problems = check_image(p).problems
    assert has(problems, f"block 1 (offset 0x{table[0] + 8:x}) clobbers block 0 (offset 0x{table[0]:x})")


def test_bat_beyond_max_entries_and_odd_size(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    with open(p, "ab") as f:
        f.write(b"\0" * 100)
    assert has(check_image(p).problems, "invalid file size: 0x")


def test_truncated_file(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, writes=((0, BLOCK), (BLOCK, BLOCK)))
    os.truncate(p, os.path.getsize(p) - MIB)
    report = check_image(p)
    assert not report.ok
    assert has(report.problems, "primary footer invalid: invalid cookie")
    assert has(report.problems, "block 1 (offset 0x", "clobbers footer", "truncated")
    assert not has(report.problems, "batmap shows")        # block 1's bitmap was never read


def test_truncated_tgz_member_does_not_raise(tmp_path):
    paths = make_chain(tmp_path, 2)
    os.truncate(paths[0], 3000)
    report = check_image(pack_shuffled(tmp_path / "i.tgz", paths, [1, 0]))
    assert not report.ok and report.members[1].ok
    assert has(report.members[0].problems, "0.vhd: primary footer invalid")


def test_garbage_member_is_a_problem_not_an_exception(tmp_path):
    paths = make_chain(tmp_path, 2)
    with open(paths[0], "wb") as f:
        f.write(os.urandom(4096))
    report = check_image(pack_shuffled(tmp_path / "i.tgz", paths, [0, 1]))
    assert not report.ok
    assert has(report.members[0].problems, "0.vhd:", "not a VHD")
    assert has(report.problems, "chain not checked: 0.vhd could not be read")


def test_container_errors_propagate(tmp_path):
    p = tmp_path / "raw.img"
    p.write_bytes(os.urandom(8192))
    with pytest.raises(VhdError):
        check_image(p)


# --- batmap -----------------------------------------------------------------------------------
def _batmap_header_at(path):
    header = DynamicHeader.unpack(read_at(path, 512, 1024))
    return header.table_offset + header.bat_size


def test_bad_batmap_checksum(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    patch(p, _batmap_header_at(p) + 24, b"\0\0\0\x07")
    assert has(check_image(p).problems, f"{p}: batmap is invalid: invalid checksum (stored 0x00000007")


def test_batmap_bit_on_non_full_and_unallocated_blocks(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, writes=((0, BLOCK), (BLOCK, 4096)))     # block 0 full, block 1 partial, 2 unallocated
    hdr_at = _batmap_header_at(p)
    batmap_at = struct.unpack(">Q", read_at(p, hdr_at + 8, 8))[0]
    data = bytearray(read_at(p, batmap_at, 512))
    assert data[0] == 0x80
    data[0] = 0x80 | 0x40 | 0x20
    patch(p, batmap_at, bytes(data))
    patch(p, hdr_at + 24, struct.pack(">I", ~sum(data) & 0xFFFFFFFF))
    problems = check_image(p).problems
    assert has(problems, "batmap shows block 1 full but its sector bitmap is not full")
    assert has(problems, "batmap shows unallocated block 2 full")
    assert not has(problems, "block 0 full")


def test_missing_batmap_of_tap_1_3_is_a_problem(tmp_path):
    """vhd-util check fails a tap >= 1.2 dynamic disk without a batmap ('error reading batmap')."""
    p = tmp_path / "0.vhd"
    make_vhd(p, batmap=False)          # the writer says tap 1.1 for that; a crafted 1.3 file:
    rewrite_footer(p, lambda f: setattr(f, "creator_version", 0x00010003))
    report = check_image(p)
    assert not report.ok and report.warnings == []
    assert report.problems == [f"{p}: error reading batmap: -22 (no 'tdbatmap' header after the BAT, though "
                               "creator tap 1.3 disks have one)"]
    old = tmp_path / "old.vhd"
    make_vhd(old, batmap=False, creator_version=0x00010001)      # tap 1.1: the batmap is optional
    assert check_image(old).ok
    # The same files inside a tgz: the same verdicts, though a stream meets the batmap header's
    # place only as the first block's sector bitmap.
    for vhd, ok in ((p, False), (old, True)):
        tgz = tmp_path / f"{vhd.stem}.tgz"
        with tarfile.open(tgz, "w:gz") as tar:
            tar.add(vhd, arcname="0.vhd")
        streamed = check_image(str(tgz))
        assert streamed.ok is ok
        assert [q.split(": ", 1)[1] for q in streamed.problems] == \
            [q.split(": ", 1)[1] for q in check_image(vhd).problems]


# --- bitmaps ----------------------------------------------------------------------------------
def test_data_where_bitmap_is_clear(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, disk_type="differencing", parent_uuid=uuidlib.uuid4(), fill=b"\xab" * 512,
             writes=((1024, 512),))
    report = check_image(p)
    # reported, but blktap's verdict: vhd-util check calls such a file valid
    assert report.ok and report.problems == []
    assert has(report.warnings, "sector 0x0 of block 0x0 has data where bitmap is clear (and 1 more",
               "vhd-util check calls the file valid")
    assert has(report.warnings, "sector 0x3 of block 0x0 has data where bitmap is clear (and 4092 more")
    assert check_image(p, check_bitmaps=False).warnings == []


def test_batmap_less_tap_files_are_written_as_tap_1_1(tmp_path):
    """libvhd requires a batmap from tap 1.2 on: the writer marks batmap-less files tap 1.1,
    which blktap's check, resize and coalesce accept."""
    from converter.member import VhdMember
    from converter.source import FileSource
    p = tmp_path / "0.vhd"
    make_vhd(p, batmap=False)
    member = VhdMember.open(FileSource(str(p)))
    assert member.footer.creator_version == 0x00010001 and not member.has_batmap
    assert check_image(p).ok


# --- parent locators --------------------------------------------------------------------------
def test_locator_problems(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p, disk_type="differencing", parent_uuid=uuidlib.uuid4(), parent_name="a.vhd")
    rewrite_header(p, lambda h: (setattr(h.locators[1], "data_length", 0), setattr(h, "parent_name", "b.vhd")))
    problems = check_image(p).problems
    assert has(problems, "invalid parent locator 1: invalid data length")
    assert has(problems, "parent locator 0 name (a.vhd) does not match header name (b.vhd)")


# --- chains -----------------------------------------------------------------------------------
def test_parent_uuid_mismatch_and_ignore(tmp_path):
    paths = make_chain(tmp_path, 3, mismatch_at=1)
    tgz = pack_shuffled(tmp_path / "i.tgz", paths, [0, 1, 2])
    report = check_image(tgz)
    assert not report.ok and all(m.ok for m in report.members)
    assert has(report.problems, "1.vhd: parent UUID", "is not the UUID", "of 2.vhd")
    relaxed = check_image(tgz, ignore_parent_uuid=True)
    assert relaxed.ok, relaxed.problems
    assert has(relaxed.info, "1.vhd: parent UUID", "accepted (ignore_parent_uuid)")


def test_numbering_gap(tmp_path):
    paths = make_chain(tmp_path, 3)
    os.rename(paths[1], tmp_path / "5.vhd")
    report = check_image(tmp_path)
    assert has(report.problems, "not numbered 0..2 without gaps", "missing: 1.vhd")


def test_hidden_leaf_is_a_warning(tmp_path):
    paths = make_chain(tmp_path, 2)
    set_hidden(paths[0], True)
    report = check_image(tmp_path)
    assert report.ok, report.problems
    assert has(report.warnings, "0.vhd: the leaf is hidden")
    assert "warning: 0.vhd: the leaf is hidden" in format_report(report)


def test_non_differencing_member_not_last(tmp_path):
    paths = make_chain(tmp_path, 2)
    make_vhd(paths[0])                          # the leaf becomes a dynamic disk
    report = check_image(paths)
    assert has(report.problems, "is a dynamic disk but", "only the last member may have no parent")


def test_differencing_base(tmp_path):
    paths = make_chain(tmp_path, 2)
    os.unlink(paths[1])
    report = check_image([paths[0]])
    assert has(report.problems, "is the last member but is a differencing disk")


def test_duplicate_members_in_tgz(tmp_path):
    paths = make_chain(tmp_path, 2)
    tgz = tmp_path / "dup.tgz"
    archive.write_tar(tgz, [paths[0], paths[1], paths[0]], ["./0.vhd", "./1.vhd", "0.vhd"])
    assert has(check_image(tgz).problems, "position 0 twice")


def test_bat_entries_unused_beyond_current_size(tmp_path):
    """XenServer preallocates BATs: entries past the current size are not checked."""
    p = tmp_path / "0.vhd"
    make_vhd(p, max_table_entries=64)
    assert bat_of(p)[5] == UNUSED
    assert check_image(p).ok


def test_stream_and_directory_agree(tmp_path):
    """A tgz (one forward pass) finds the same problems as the extracted files."""
    d = tmp_path / "d"
    d.mkdir()
    paths = make_chain(d, 3)
    make_vhd(paths[2], writes=((0, BLOCK), (BLOCK, BLOCK)), hidden=True,
             uuid=check_image(paths[2]).members[0].uuid)
    table = bat_of(paths[2])
    set_bat(paths[2], 1, table[0] + 8)                         # overlapping blocks
    patch(paths[1], 512 + 36, b"\0\0\0\x09")                    # header checksum
    from_dir = check_image(d)
    from_tgz = check_image(pack_shuffled(tmp_path / "i.tgz", paths, [1, 2, 0]))
    strip = [p.split(": ", 1)[1] for p in from_dir.problems]
    assert strip == [p.split(": ", 1)[1] for p in from_tgz.problems]
    assert has(strip, "clobbers block 0") and has(strip, "header is invalid: invalid checksum")
    assert from_tgz.warnings == []


def test_old_style_names(tmp_path):
    paths = make_chain(tmp_path, 3, names=["snap.vhd", "image.vhd", "base.vhd"])
    tgz = tmp_path / "old.tgz"
    archive.write_tar(tgz, [paths[2], paths[0], paths[1]], ["./base.vhd", "./snap.vhd", "./image.vhd"])
    report = check_image(tgz)
    assert report.ok, report.problems
    assert [(m.name, m.position) for m in report.members] == [("snap.vhd", 0), ("image.vhd", 1), ("base.vhd", 2)]


def test_hostile_bat_size_is_not_read(tmp_path):
    p = tmp_path / "0.vhd"
    make_vhd(p)
    rewrite_header(p, lambda h: setattr(h, "max_table_entries", 1 << 30))
    problems = check_image(p).problems
    assert has(problems, "header is invalid: invalid table offset")
    assert has(problems, "error reading bat: -22", "BAT entries")

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

"""converter.dump: ``vhd-util read -p`` style dumps."""

import json
import subprocess
import time
import uuid as uuidlib

from converter.dump import dump_image, dump_member, format_dump
from converter.member import VhdMember
from converter.source import FileSource
from tests.unit.test_check import BLOCK, MIB, make_chain, make_vhd, pack_shuffled, patch

FOOTER_LABELS = ["Cookie", "Features", "File format version", "Data offset", "Timestamp", "Creator Application",
                 "Creator version", "Creator OS", "Original disk size", "Current disk size", "Geometry", "",
                 "Disk type", "Checksum", "UUID", "Saved state", "Hidden"]
HEADER_LABELS = ["Cookie", "Data offset (unusd)", "Table offset", "Header version", "Max BAT size", "Block size",
                 "Parent name", "Parent UUID", "Parent timestamp", "Checksum"]


def section(text, title):
    """{label: value} rows of one titled section (rows are 'label padded to 20: value')."""
    lines = text.splitlines()
    start = lines.index(title) + 2
    rows = []
    for line in lines[start:]:
        if not line:
            break
        assert line[20:22] == ": ", line
        rows.append((line[:20].rstrip(), line[22:]))
    return rows


def test_dynamic_dump_labels_and_values(tmp_path):
    p = tmp_path / "d.vhd"
    uid = make_vhd(p, writes=((0, BLOCK), (BLOCK, 4096)), timestamp=0)
    d = dump_member(str(p))
    json.dumps(d)
    assert d["footer"]["disk_type"] == 3 and d["footer"]["current_size"] == 8 * MIB
    assert d["bat"] == {"max_table_entries": 4, "entries_in_use": 4, "allocated_blocks": 2,
                        "first_block_offset": d["bat"]["first_block_offset"],
                        "last_block_end": d["bat"]["last_block_end"], "full_blocks": 1}
    text = format_dump(d)
    footer = section(text, "VHD Footer Summary:")
    assert [label for label, _ in footer] == FOOTER_LABELS
    values = dict(footer)
    assert values["Cookie"] == "conectix"
    assert values["Features"] == "(0x00000002) <RESV>"
    assert values["File format version"] == "Major: 1, Minor: 0"
    assert values["Data offset"] == "512"
    assert values["Timestamp"] == time.ctime(946684800)
    assert values["Creator Application"] == "'tap'"
    assert values["Creator version"] == "Major: 1, Minor: 3"
    assert values["Creator OS"] == "Unknown!"
    assert values["Current disk size"] == f"8 MB ({8 * MIB} Bytes)"
    assert values["Geometry"] == "Cyl: 240, Hds: 4, Sctrs: 17"
    assert values[""] == f"= 7 MB ({240 * 4 * 17 * 512} Bytes)"
    assert values["Disk type"] == "Dynamic hard disk"
    assert values["Checksum"].endswith("(Good!)") and values["Checksum"].count("|") == 1
    assert values["UUID"] == str(uid)
    assert (values["Saved state"], values["Hidden"]) == ("No", "0")
    header = dict(section(text, "VHD Header Summary:"))
    assert list(header) == HEADER_LABELS
    assert header["Table offset"] == "1536" and header["Header version"] == "0x00010000"
    assert header["Block size"] == "2097152 (2 MB)" and header["Max BAT size"] == "4"
    assert header["Data offset (unusd)"] == str(2 ** 64 - 1)
    batmap = dict(section(text, "VHD Batmap Summary:"))
    assert list(batmap) == ["Batmap offset", "Batmap size (secs)", "Batmap version", "Checksum"]
    assert batmap["Batmap size (secs)"] == "1" and batmap["Batmap version"] == "0x00010002"
    assert batmap["Checksum"].endswith("(Good!)")
    bat = dict(section(text, "VHD BAT Summary:"))
    assert bat["Allocated blocks"] == "2" and bat["Full blocks (batmap)"] == "1"
    assert "VHD Parent Locators:" not in text


def test_differencing_dump_decodes_locators(tmp_path):
    p = tmp_path / "c.vhd"
    parent = uuidlib.uuid4()
    make_vhd(p, disk_type="differencing", parent_uuid=parent, parent_name=f"{parent}.vhd", writes=((512, 512),))
    d = dump_member(str(p))
    assert [(loc["code_name"], loc["decoded"]) for loc in d["parent_locators"]] == [
        ("PLAT_CODE_MACX", f"./{parent}.vhd"), ("PLAT_CODE_W2KU", f"{parent}.vhd")]
    text = format_dump(d)
    header = dict(section(text, "VHD Header Summary:"))
    assert header["Parent name"] == f"{parent}.vhd" and header["Parent UUID"] == str(parent)
    assert dict(section(text, "VHD Footer Summary:"))["Disk type"] == "Differencing hard disk"
    lines = text.splitlines()
    start = lines.index("VHD Parent Locators:")
    assert lines[start + 2:start + 8] == [
        "locator:            : 0",
        "       code         : PLAT_CODE_MACX",
        "       data_space   : 512",
        f"       data_length  : {len(f'file://./{parent}.vhd')}",
        f"       data_offset  : {d['parent_locators'][0]['data_offset']}",
        f"       decoded name : ./{parent}.vhd",
    ]


def test_fixed_dump_has_only_the_footer(tmp_path):
    p = tmp_path / "f.vhd"
    make_vhd(p, disk_type="fixed", size=MIB, batmap=False, writes=())
    d = dump_member(str(p))
    assert d["header"] is None and d["bat"] is None and d["error"] is None
    text = format_dump(d)
    assert dict(section(text, "VHD Footer Summary:"))["Disk type"] == "Fixed hard disk"
    assert dict(section(text, "VHD Footer Summary:"))["Data offset"] == str(2 ** 64 - 1)
    assert "VHD Header Summary:" not in text


def test_bad_header_checksum_shows_bad(tmp_path):
    p = tmp_path / "d.vhd"
    make_vhd(p)
    patch(p, 512 + 36, b"\0\0\0\x01")
    header = dict(section(format_dump(dump_member(str(p))), "VHD Header Summary:"))
    assert header["Checksum"].startswith("0x1|0x") and header["Checksum"].endswith("(Bad!)")


def test_dump_image_streams_tgz_in_chain_order(tmp_path):
    paths = make_chain(tmp_path, 3)
    dumps = dump_image(pack_shuffled(tmp_path / "i.tgz", paths, [2, 1, 0]))
    json.dumps(dumps)
    assert [d["name"] for d in dumps] == ["0.vhd", "1.vhd", "2.vhd"]
    assert [d["position"] for d in dumps] == [0, 1, 2]
    assert [d["footer"]["hidden"] for d in dumps] == [0, 1, 1]
    assert dumps[0]["parent_locators"][0]["decoded"].startswith("./")
    assert format_dump(dumps[0]).splitlines()[0] == "0.vhd:"


def test_dump_of_a_vhdmember(tmp_path):
    p = tmp_path / "d.vhd"
    make_vhd(p)
    with FileSource(p) as src:
        d = dump_member(VhdMember.open(src, strict=False))
    assert d["footer"]["current_size"] == 8 * MIB and d["bat"]["allocated_blocks"] == 1
    assert "VHD Batmap Summary:" in format_dump(d)


def test_garbage_member_dump_reports_error(tmp_path):
    paths = make_chain(tmp_path, 2)
    with open(paths[0], "wb") as f:
        f.write(b"\x07" * 4096)
    dumps = dump_image(tmp_path)
    assert dumps[0]["error"] and dumps[0]["footer"] is None
    assert "Failed to open 0.vhd: -22" in format_dump(dumps[0])


def test_virtual_size_matches_qemu_img(tmp_path):
    p = tmp_path / "d.vhd"
    make_vhd(p, size=10 * MIB + 512 * 7)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-f", "vpc", str(p)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["virtual-size"] == dump_member(str(p))["footer"]["current_size"]

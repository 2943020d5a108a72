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

"""On-disk structures: round trips, checksums, and agreement with VHDs qemu-img writes."""

import subprocess
import uuid

import pytest

from converter import bat
from converter.errors import FormatError
from converter.footer import DiskType, Footer, chs_geometry
from converter.header import PLAT_MACX, PLAT_W2KU, DynamicHeader, ParentLocator
from converter.member import VhdMember
from converter.source import FileSource
from converter.writer import VhdWriter, read_footer, set_hidden


def test_footer_round_trip_and_checksum():
    f = Footer(disk_type=DiskType.DYNAMIC, current_size=1 << 30, original_size=40 << 20,
               uuid=uuid.uuid4(), data_offset=512, hidden=1)
    raw = f.pack()
    assert len(raw) == 512 and raw[:8] == b"conectix" and raw[85] == 1
    back = Footer.unpack(raw)
    assert back.problems() == []
    assert (back.current_size, back.original_size, back.hidden, back.uuid) == (1 << 30, 40 << 20, 1, f.uuid)
    # The hidden byte is inside the checksum: flipping it without re-summing is detected.
    tampered = bytearray(raw)
    tampered[85] = 0
    assert "invalid checksum" in Footer.unpack(bytes(tampered)).problems()[0]


def test_footer_511_bytes_is_accepted():
    f = Footer(disk_type=DiskType.FIXED, current_size=4096, original_size=4096, uuid=uuid.uuid4())
    assert Footer.unpack(f.pack()[:511]).problems() == []


def test_footer_rejects_non_vhd():
    with pytest.raises(FormatError, match="not a VHD footer"):
        Footer.unpack(bytes(512))


def test_header_round_trip_with_locators():
    h = DynamicHeader(table_offset=1536, max_table_entries=512, parent_uuid=uuid.uuid4(),
                      parent_name="66083a56-f5e8-4d8a-847a-a1e23526472c.vhd")
    h.locators[0] = ParentLocator(PLAT_MACX, 1, 20, 0, 4096)      # data space in sectors
    h.locators[1] = ParentLocator(PLAT_W2KU, 512, 80, 0, 4608)    # data space in bytes
    back = DynamicHeader.unpack(h.pack())
    assert back.problems() == []
    assert back.parent_name == h.parent_name and back.parent_uuid == h.parent_uuid
    assert [loc.space_bytes for loc in back.locators[:2]] == [512, 512]
    assert back.locators[1].decode("x.vhd".encode("utf-16-le")) == "x.vhd"


@pytest.mark.parametrize("block_size,bad", [(3 * 512, "power of two"), (1 << 30, "power of two")])
def test_header_block_size_validation(block_size, bad):
    h = DynamicHeader(table_offset=1536, max_table_entries=4, block_size=block_size)
    assert any(bad in p for p in DynamicHeader.unpack(h.pack()).problems())


def test_bitmap_masks_are_msb_first():
    bitmap = bytes([0b10000000, 0b00000001]) + bytes(510)
    mask = bat.bitmap_mask(bitmap, 16)
    assert format(mask, "016b") == "1000000000000001"
    assert bat.mask_bitmap(mask, 16, 512)[:2] == bitmap[:2]


def test_chs_explains_the_seeds_odd_size():
    # The seed's fdisk showed 1073479680 bytes for a 1 GiB disk: old qemu's CHS rounding.
    c, h, s = chs_geometry(1 << 30)
    assert c * h * s * 512 == 1073479680
    assert chs_geometry(40 << 20) == (963, 5, 17)


@pytest.mark.parametrize("subformat", ["dynamic", "fixed"])
def test_parses_what_qemu_img_writes(tmp_path, subformat):
    path = tmp_path / "q.vhd"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vpc", "-o", f"subformat={subformat}", str(path), "64M"],
                   check=True)
    m = VhdMember.open(FileSource(path))
    assert m.footer.creator in ("qemu", "qem2")
    assert m.footer.disk_type == (DiskType.DYNAMIC if subformat == "dynamic" else DiskType.FIXED)
    # qemu rounds the size to CHS geometry: the geometry we compute for its size must match its own.
    assert chs_geometry(m.current_size)[1:] == m.footer.geometry[1:]


def test_set_hidden_rewrites_both_footers(tmp_path):
    path = tmp_path / "a.vhd"
    with VhdWriter(path, size=4 << 20) as w:
        w.write(0, b"x" * 512)
    set_hidden(path, True)
    m = VhdMember.open(FileSource(path))
    assert m.footer.hidden == 1 and m.head_footer.hidden == 1 and m.head_footer.problems() == []
    assert read_footer(path).hidden == 1

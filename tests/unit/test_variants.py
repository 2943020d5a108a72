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

"""Known-wrong conversions: each reproduces its bug, checked against independent answers."""

import os
import subprocess
import sys

import pytest

from converter.builder import ImageBuilder
from converter.member import VhdMember
from converter.source import FileSource
from converter.variants import VARIANTS, convert_variant
from tests.conftest import MIB, disk_bytes

BLOCK = 2 * MIB


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    d = tmp_path_factory.mktemp("variants")
    b = ImageBuilder(disk_bytes(6 * MIB, 31))
    b.snapshot(size=16 * MIB)
    b.write(9 * MIB + 100, b"grown area" * 300)       # past the base's end
    b.snapshot()
    b.write(512 * 3, b"\x77" * 1024)                   # a partial block over base data
    b.write(11 * MIB, b"\x55" * BLOCK)                 # a whole block past the base
    b.write(16 * MIB - 5000, b"tail" * 1000)           # data in the last MiB
    image = d / "image.tgz"
    b.build(image, fill=b"\xaa" * 512)
    (d / "m").mkdir()
    members = b.write_members(d / "m", fill=b"\xaa" * 512)
    return b, image, members, d


def out(d, name):
    return d / f"{name}.raw"


def test_every_variant_differs_from_the_reference(chain):
    b, image, _, d = chain
    expected = b.expected()
    for variant in VARIANTS:
        convert_variant(image, out(d, variant), variant)
        assert out(d, variant).read_bytes() != expected, variant
    convert_variant(image, out(d, "ref"), None)
    assert out(d, "ref").read_bytes() == expected


def test_raw_copy_is_the_archive(chain):
    _, image, _, d = chain
    convert_variant(image, out(d, "rc"), "raw-copy")
    assert out(d, "rc").read_bytes() == image.read_bytes()


def test_leaf_only_is_what_qemu_img_makes_of_0_vhd(chain):
    _, image, members, d = chain
    convert_variant(image, out(d, "lo"), "leaf-only")
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", members[0], str(out(d, "q"))], check=True)
    assert out(d, "lo").read_bytes() == out(d, "q").read_bytes()


def test_no_resize_stops_at_the_base_size(chain):
    b, image, _, d = chain
    convert_variant(image, out(d, "nr"), "no-resize")
    assert out(d, "nr").read_bytes() == b.expected()[:6 * MIB]


def test_ignore_bitmaps_takes_whole_blocks_from_the_newest_layer(chain):
    # Oracle: qemu-img's view of each member alone (whole blocks), block by block from the
    # newest member whose BAT has the block.
    b, image, members, d = chain
    views = []
    for i, m in enumerate(members):
        p = d / f"view{i}.raw"
        subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", m, str(p)], check=True)
        with FileSource(m) as src:
            bat = VhdMember.open(src).bat
        views.append((p.read_bytes(), bat))
    size = b.size
    want = bytearray(size)
    for block in range(size // BLOCK):
        for data, bat in views:
            if block < len(bat) and bat[block] != 0xFFFFFFFF:
                want[block * BLOCK:(block + 1) * BLOCK] = data[block * BLOCK:(block + 1) * BLOCK].ljust(BLOCK, b"\0")
                break
    convert_variant(image, out(d, "ib"), "ignore-bitmaps")
    assert out(d, "ib").read_bytes() == bytes(want)


def test_wrong_order_lets_older_layers_win(chain):
    # blktap's rule over the chain read backwards: the base is "newest", so it wins where it has
    # data, and its size clips everything the newer layers wrote past its end.
    b, image, _, d = chain
    convert_variant(image, out(d, "wo"), "wrong-order")
    data = out(d, "wo").read_bytes()
    base = disk_bytes(6 * MIB, 31)
    assert data[512 * 3:512 * 5] == base[512 * 3:512 * 5]          # the base won over the leaf
    assert data[6 * MIB:] == bytes(10 * MIB)                        # past the base's end: zero
    assert len(data) == 16 * MIB


def test_truncate_zeroes_the_last_mib(chain):
    b, image, _, d = chain
    convert_variant(image, out(d, "tr"), "truncate")
    expected = b.expected()
    data = out(d, "tr").read_bytes()
    assert data[:-MIB] == expected[:-MIB] and data[-MIB:] == bytes(MIB) != expected[-MIB:]


def test_cli_emulate(chain, tmp_path):
    _, image, _, d = chain
    r = subprocess.run([sys.executable, "-m", "converter.cli", "convert", "--emulate", "no-resize", str(image),
                        str(tmp_path / "e.raw")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(tmp_path / "e.raw") == 6 * MIB

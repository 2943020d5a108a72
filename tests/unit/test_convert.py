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

"""Conversion on synthetic chains: the streaming converter, the random-access reader and the
coalesced VHD all agree byte for byte with the builder's independently computed disk."""

import itertools
import os
import random
import subprocess
import tarfile

import pytest

from converter.builder import ImageBuilder
from converter.chain import ChainReader
from converter.convert import convert_image
from tests.conftest import MIB, disk_bytes

BLOCK = 2 * MIB


def history(depth, seed, base_size=5 * MIB + 3 * 512, grow=True):
    """A builder with ``depth`` members: random writes of every shape across layers."""
    rnd = random.Random(seed)
    b = ImageBuilder(disk_bytes(base_size, seed))
    for layer in range(1, depth):
        size = b.size + (rnd.choice((0, 512 * 7, 3 * MIB)) if grow else 0)
        b.snapshot(size=size)
        for _ in range(rnd.randint(1, 6)):
            kind = rnd.random()
            length = rnd.choice((1, 100, 512, 4096, 70_000, 2 * MIB + 1000))
            offset = rnd.randrange(0, b.size - min(length, b.size - 1))
            length = min(length, b.size - offset)
            if kind < 0.2:
                data = bytes(length)                             # zeros over data
            elif kind < 0.6:
                data = rnd.randbytes(length)
            else:
                data = (b"layer %d " % layer) * (length // 8 + 1)
            b.write(offset, data[:length])
        if grow and b.size > b.layers[-2].size:                  # a write past the parent's end
            b.write(b.layers[-2].size + 13, b"past the parent's end")
    return b


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def assert_converts(builder, tmp_path, **build_options):
    image = tmp_path / "image.tgz"
    builder.build(image, **build_options)
    expected = builder.expected()
    out = tmp_path / "disk.raw"
    result = convert_image(image, out)
    assert result.virtual_size == len(expected) == os.path.getsize(out)
    assert read_all(out) == expected
    return image, out, expected


@pytest.mark.parametrize("depth", range(1, 9))
def test_depths_1_to_8_stream_and_random_access(tmp_path, depth):
    b = history(depth, seed=depth)
    image, out, expected = assert_converts(b, tmp_path, order="shuffle", fill=b"\xee" * 512)
    with ChainReader(image) as reader:
        assert reader.read(0, len(expected)) == expected
        rnd = random.Random(depth)
        for _ in range(20):
            off = rnd.randrange(len(expected))
            assert reader.read(off, 5000) == expected[off:off + 5000]


def test_every_member_order_of_a_three_member_chain(tmp_path):
    b = history(3, seed=42)
    expected = b.expected()
    for order in itertools.permutations(range(3)):
        image = tmp_path / "o.tgz"
        b.build(image, order=list(order))
        convert_image(image, tmp_path / "o.raw")
        assert read_all(tmp_path / "o.raw") == expected, order


def test_bitmap_clear_sectors_never_leak(tmp_path):
    # The leaf's block is full of 0xAA garbage except the one sector it wrote.
    b = ImageBuilder(bytes(4 * MIB))
    b.snapshot()
    b.write(BLOCK + 512 * 5, b"\x01" * 512)
    image, out, expected = assert_converts(b, tmp_path, fill=b"\xaa" * 512)
    assert b"\xaa" not in read_all(out)


def test_resized_children_read_zero_past_the_parents_end(tmp_path):
    b = ImageBuilder(b"\x11" * (3 * MIB))
    b.snapshot(size=64 * MIB)
    b.snapshot(size=65 * MIB)
    b.write(64 * MIB - 512, b"\x22" * 1024)
    _, out, expected = assert_converts(b, tmp_path, fill=b"\x99" * 512)
    data = read_all(out)
    assert data[:3 * MIB] == b"\x11" * (3 * MIB) and data[3 * MIB:3 * MIB + 4096] == bytes(4096)


def test_full_blocks_via_batmap(tmp_path):
    b = ImageBuilder(disk_bytes(6 * MIB, 3))
    b.snapshot()
    b.write(0, b"\x33" * BLOCK)               # one full block: batmap bit set
    b.write(BLOCK + 512, b"\x44" * 512)       # one partial block: batmap bit clear
    image, _, _ = assert_converts(b, tmp_path, batmap=True)
    with ChainReader(image) as reader:
        leaf = reader.members[0]
        assert leaf.batmap_header is not None
        assert leaf.batmap[0] & 0x80 and not leaf.batmap[0] & 0x40


@pytest.mark.parametrize("base_size", [512, 3 * 512, BLOCK - 512, BLOCK + 512, 7 * MIB + 1024])
def test_unaligned_base_sizes(tmp_path, base_size):
    b = ImageBuilder(disk_bytes(base_size, base_size))
    b.snapshot(size=base_size + 4096)
    b.write(base_size - 1, b"ab")
    assert_converts(b, tmp_path)


def test_preallocated_bat_like_xenserver_sm(tmp_path):
    b = history(2, seed=5)
    assert_converts(b, tmp_path, max_table_entries=1 << 20)   # 1M entries, only a few in use


def test_511_byte_footers(tmp_path):
    b = history(3, seed=6)
    image, _, _ = assert_converts(b, tmp_path, footer_511=True)
    with tarfile.open(image) as t:
        assert {m.size % 512 for m in t.getmembers() if m.isfile()} == {511}


def test_fixed_base(tmp_path):
    b = history(3, seed=7)
    assert_converts(b, tmp_path, base_type="fixed", order=[0, 2, 1])


@pytest.mark.parametrize("dotslash", [True, False])
def test_names_with_and_without_dot_slash(tmp_path, dotslash):
    assert_converts(history(2, seed=8), tmp_path, dotslash=dotslash)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_old_style_names(tmp_path, depth):
    assert_converts(history(depth, seed=9), tmp_path, old_names=True, order="shuffle")


def test_directory_and_file_list_sources(tmp_path):
    b = history(3, seed=10)
    paths = b.write_members(tmp_path)
    (tmp_path / "swap.vhd").write_bytes(b"not part of the chain")
    expected = b.expected()
    for source in (str(tmp_path), paths):
        convert_image(source, tmp_path / "d.raw")
        assert read_all(tmp_path / "d.raw") == expected


def test_output_is_sparse(tmp_path):
    b = ImageBuilder(bytes(64 * MIB))
    b.snapshot(size=1 << 30)
    b.write(100 * MIB, b"\x5a" * (3 * MIB))
    image = tmp_path / "s.tgz"
    b.build(image)
    out = tmp_path / "s.raw"
    convert_image(image, out)
    st = os.stat(out)
    assert st.st_size == 1 << 30
    assert st.st_blocks * 512 <= 3 * MIB + 64 * 1024


def test_zeros_over_older_data_are_really_zero(tmp_path):
    # Base data, then the leaf zeroes it: arrival order base-last and base-first both work.
    b = ImageBuilder(b"\x77" * (4 * MIB))
    b.snapshot()
    b.write(MIB, bytes(MIB))
    for order in ([0, 1], [1, 0]):
        image, out, _ = assert_converts(b, tmp_path, order=order)
        assert read_all(out)[MIB:2 * MIB] == bytes(MIB)


def test_existing_output_file_is_replaced(tmp_path):
    b = history(2, seed=11)
    out = tmp_path / "disk.raw"
    out.write_bytes(b"\xff" * (40 * MIB))
    image = tmp_path / "i.tgz"
    b.build(image)
    convert_image(image, out)
    assert read_all(out) == b.expected()


def test_coalesced_vhd_reads_the_same_in_qemu(tmp_path):
    b = history(4, seed=12)
    image = tmp_path / "c.tgz"
    b.build(image, order="shuffle", fill=b"\x5c" * 512)
    out = tmp_path / "c.vhd"
    result = convert_image(image, out, output_format="vhd")
    assert result.virtual_size == b.size
    raw = tmp_path / "q.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(out), str(raw)], check=True)
    assert read_all(raw) == b.expected()


def test_two_tib_sparse_chain(tmp_path):
    # A 2 TiB disk with a few blocks: bounded memory, exact bytes where written, sparse output.
    tib2 = 2040 * (1 << 30)
    b = ImageBuilder(b"\x01" * MIB, base_size=MIB)
    b.snapshot(size=tib2)
    b.write(tib2 - 4096, b"end of the disk!" * 256)
    b.write(1 << 40, b"one tebibyte in" * 100)
    image = tmp_path / "big.tgz"
    b.build(image)
    out = tmp_path / "big.raw"
    result = convert_image(image, out)
    assert result.virtual_size == tib2 == os.path.getsize(out)
    with open(out, "rb") as f:
        assert f.read(MIB) == b"\x01" * MIB
        f.seek(tib2 - 4096)
        assert f.read() == b"end of the disk!" * 256
        f.seek(1 << 40)
        assert f.read(1500) == b"one tebibyte in" * 100
    assert os.stat(out).st_blocks * 512 < 4 * MIB

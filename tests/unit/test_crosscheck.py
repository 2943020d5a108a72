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

"""Cross-checks against independent readers, where those readers are right.

qemu-img's vpc driver ignores bitmaps and parents, so it is only a referee for single disks
whose allocated blocks are full. libvhdi follows parents but takes the disk size from the
original size and mis-reads some clear bitmap bits, so it referees chains without resize
whose blocks are full.
"""

import random
import subprocess

import pytest

from converter.builder import ImageBuilder
from converter.chain import ChainReader
from converter.convert import convert_image
from tests.conftest import MIB, disk_bytes

BLOCK = 2 * MIB


def whole_block_history(depth, seed, size=9 * MIB):
    rnd = random.Random(seed)
    b = ImageBuilder(disk_bytes(size, seed))
    for _ in range(1, depth):
        b.snapshot()
        for _ in range(3):
            block = rnd.randrange(size // BLOCK)
            b.write(block * BLOCK, rnd.randbytes(BLOCK))
    return b


@pytest.mark.parametrize("base_type", ["dynamic", "fixed"])
def test_single_disk_matches_qemu_img(tmp_path, base_type):
    b = ImageBuilder(disk_bytes(11 * MIB, 21))
    (member,) = b.write_members(tmp_path, base_type=base_type)
    qemu_raw = tmp_path / "qemu.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", member, str(qemu_raw)], check=True)
    ours = tmp_path / "ours.raw"
    convert_image(member, ours)
    assert ours.read_bytes() == qemu_raw.read_bytes() == b.expected()


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_chain_matches_libvhdi(tmp_path, depth):
    import pyvhdi
    b = whole_block_history(depth, seed=depth)
    paths = b.write_members(tmp_path)
    handles = []
    for p in paths:
        f = pyvhdi.file()
        f.open(p)
        handles.append(f)
    for child, parent in zip(handles, handles[1:]):
        child.set_parent(parent)
    leaf = handles[0]
    theirs = leaf.read_buffer_at_offset(leaf.media_size, 0)
    with ChainReader(paths) as reader:
        ours = reader.read(0, reader.size)
    for f in handles:
        f.close()
    assert ours == theirs == b.expected()

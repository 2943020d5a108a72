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

"""converter.writer.VhdSink: the one-pass coalesced VHD, driven directly."""

import os

from converter.chain import ChainReader
from converter.check import check_image
from converter.member import VhdMember
from converter.source import FileSource
from converter.writer import VhdSink

MIB = 1 << 20


def _sink(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    return fd, VhdSink(fd, str(path))


def test_blocks_in_first_write_order_size_decided_at_finish(tmp_path):
    path = tmp_path / "o.vhd"
    fd, sink = _sink(path)
    sink.write(9 * MIB, b"\x09" * 4096)             # block 4 first
    sink.write(512, b"\x01" * 512)                   # then block 0
    sink.write(20 * MIB, b"\x20" * 512)              # block 10: beyond the final size
    sink.zero(9 * MIB, 512, True)                    # an older layer's bytes overwritten by zeros
    sink.zero(30 * MIB, MIB, True)                   # nothing there: nothing allocated
    sink.finish(16 * MIB)
    os.close(fd)
    with FileSource(path) as src:
        m = VhdMember.open(src)
        assert m.current_size == 16 * MIB and m.header.max_table_entries == 8
        assert [i for i, e in enumerate(m.bat) if e != 0xFFFFFFFF] == [0, 4]
        assert m.bat[4] < m.bat[0]                   # allocation order
        assert m.has_batmap
    report = check_image(path)
    assert report.ok and not report.warnings, report.problems + report.warnings
    with ChainReader([path]) as r:
        disk = r.read(0, 16 * MIB)
    expected = bytearray(16 * MIB)
    expected[512:1024] = b"\x01" * 512
    expected[9 * MIB + 512:9 * MIB + 4096] = b"\x09" * 3584
    assert disk == bytes(expected)
    # The cut-off block's space is a hole: only two blocks' data are allocated.
    assert os.stat(path).st_blocks * 512 < 3 * (2 * MIB + 4096)


def test_empty_disk(tmp_path):
    path = tmp_path / "e.vhd"
    fd, sink = _sink(path)
    sink.finish(3 * MIB + 512)
    os.close(fd)
    assert check_image(path).ok
    with ChainReader([path]) as r:
        assert r.size == 3 * MIB + 512 and r.read(0, r.size) == bytes(r.size)

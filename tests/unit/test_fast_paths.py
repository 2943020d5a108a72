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

"""The conversion's fast paths give exactly what the plain ones would.

Sampled zero detection against a grain-by-grain reference; the write-behind sink against the
order and buffer-reuse guarantees the compositor relies on.
"""

import os
import random
import threading
import time

import pytest

from converter.chain import ZERO_GRAIN, zero_grains
from converter.errors import OutputError
from converter.sink import FileSink, WriteBehind, write_behind


def reference_zero_grains(data, head):
    """Every whole aligned grain tested on its own, adjacent ones coalesced."""
    found = []
    pos = head
    while pos + ZERO_GRAIN <= len(data):
        if not any(data[pos:pos + ZERO_GRAIN]):
            if found and found[-1][1] == pos:
                found[-1] = (found[-1][0], pos + ZERO_GRAIN)
            else:
                found.append((pos, pos + ZERO_GRAIN))
        pos += ZERO_GRAIN
    return found


@pytest.mark.parametrize("seed", range(40))
def test_zero_grains_matches_grain_by_grain(seed):
    rnd = random.Random(seed)
    data = bytearray(rnd.choice([1, 8, 9, 100, 512, 4096]) * 512)
    for _ in range(rnd.randrange(0, 10)):
        a = rnd.randrange(len(data))
        b = min(len(data), a + rnd.choice([1, 511, 4096, 9000]))
        fill = rnd.choice([None, 0, 7])
        for i in range(a, b):
            data[i] = rnd.randrange(1, 256) if fill is None else fill
    for _ in range(rnd.randrange(0, 4)):          # lone bytes, often on a grain's edge
        data[rnd.randrange(len(data))] = rnd.randrange(256)
    head = rnd.randrange(ZERO_GRAIN)
    view = memoryview(bytes(data))
    assert zero_grains(view, head) == reference_zero_grains(view, head)


class SlowSink:
    """Records what each write saw, slowly, so the writer thread lags behind."""

    needs_zeroing = False

    def __init__(self, fail_at=None):
        self.seen = []
        self.bytes_written = 0
        self.fail_at = fail_at

    def write(self, offset, data):
        time.sleep(0.002)
        if len(self.seen) == self.fail_at:
            raise OutputError("slow", "write failed: No space left on device")
        self.seen.append((offset, bytes(data)))
        self.bytes_written += len(data)

    def zero(self, offset, length, prev):
        self.seen.append(("zero", offset, length, prev))

    def reserve(self, size):
        pass

    def finish(self, size):
        self.seen.append(("finish", size))


def test_write_behind_never_reuses_a_buffer_before_its_writes_are_done():
    sink = SlowSink()
    with WriteBehind(sink) as wb:
        for i in range(12):
            view = wb.buffer(4096)
            view[:] = bytes([i + 1]) * 4096
            wb.write(i * 4096, view[:1024])
            wb.write(i * 4096 + 1024, view[1024:])
        wb.zero(0, 512, True)
        wb.zero(512, 512, False)                  # a new file's hole: nothing to do
        wb.finish(12 * 4096)
    expected = []
    for i in range(12):
        expected += [(i * 4096, bytes([i + 1]) * 1024), (i * 4096 + 1024, bytes([i + 1]) * 3072)]
    assert sink.seen == expected + [("zero", 0, 512, True), ("finish", 12 * 4096)]
    assert wb.bytes_written == 12 * 4096
    assert not any(t.name == "write-behind" for t in threading.enumerate())


def test_write_behind_reports_a_failed_write():
    sink = SlowSink(fail_at=3)
    with pytest.raises(OutputError, match="No space left"):
        with WriteBehind(sink) as wb:
            for i in range(10):
                wb.write(i * 512, bytes(512))
            wb.finish(10 * 512)
    assert len(sink.seen) == 3


def test_write_behind_only_for_new_regular_files(tmp_path):
    fd = os.open(tmp_path / "out.raw", os.O_RDWR | os.O_CREAT)
    try:
        file_sink = FileSink(fd, "out.raw")
        with write_behind(file_sink) as s:
            assert isinstance(s, WriteBehind)
            s.write(4096, b"x" * 512)
            s.finish(8192)
        with write_behind(file_sink, overlap=False) as s:
            assert s is file_sink
        assert os.pread(fd, 8192, 0) == bytes(4096) + b"x" * 512 + bytes(3584)
    finally:
        os.close(fd)


def test_blocks_hidden_by_newer_layers_are_not_read(tmp_path, monkeypatch):
    """An extracted chain is read newest first: base blocks the leaf rewrote whole are skipped,
    and the result is what the random-access reader (which reads everything) gives."""
    import uuid

    from converter.chain import ChainReader
    from converter.convert import convert_image
    from converter.source import FileSource
    from converter.writer import VhdWriter

    mib = 1 << 20
    image = tmp_path / "image"
    image.mkdir()
    base_uuid = uuid.uuid4()
    with VhdWriter(image / "1.vhd", size=8 * mib, uuid=base_uuid, hidden=True) as w:
        w.write(0, b"B" * (8 * mib))                  # blocks 0..3 full
    with VhdWriter(image / "0.vhd", disk_type="differencing", size=8 * mib, parent_uuid=base_uuid) as w:
        w.write(0, b"L" * (4 * mib))                  # blocks 0 and 1 whole
        w.write(4 * mib + 512, b"l" * 1024)           # block 2 in part
    reads = []
    real = FileSource.read_into

    def recording(self, offset, view):
        reads.append((os.path.basename(self.path), offset))
        return real(self, offset, view)

    monkeypatch.setattr(FileSource, "read_into", recording)
    out = tmp_path / "out.raw"
    convert_image(str(image), str(out))
    base_reads = [offset for name, offset in reads if name == "1.vhd"]
    assert len(base_reads) == 2                       # blocks 2 and 3 only
    with ChainReader(str(image)) as reader:
        assert out.read_bytes() == reader.read(0, 8 * mib)

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

"""Hostile archives: each is rejected (or handled as documented) with a clear message, nothing
is created outside the output path, and no partial output is left that looks complete."""

import gzip
import io
import os
import tarfile
import time

import pytest

from converter.archive import pack_image
from converter.builder import ImageBuilder
from converter.check import check_image
from converter.convert import convert_image
from converter.errors import VhdError
from converter.writer import VhdWriter
from tests.conftest import MIB

BAD = [VhdError]


def good_members(tmp_path):
    b = ImageBuilder(b"\x42" * (4 * MIB))
    b.snapshot(size=8 * MIB)
    b.write(5 * MIB, b"leaf" * 1000)
    d = tmp_path / "m"
    d.mkdir()
    return b, b.write_members(d)


def assert_clean_failure(tmp_path, image, message):
    outdir = tmp_path / "out"
    outdir.mkdir(exist_ok=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(VhdError) as info:
        convert_image(image, outdir / "disk.raw")
    assert message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)
    assert list(outdir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return str(info.value)


def test_ten_thousand_members(tmp_path):
    b, paths = good_members(tmp_path)
    image = tmp_path / "many.tgz"
    with tarfile.open(image, "w:gz") as t:
        for i, p in enumerate(paths):
            t.add(p, arcname=f"./{i}.vhd")
        for i in range(10_000):
            info = tarfile.TarInfo(f"./junk{i}.txt")
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
    t0 = time.monotonic()
    result = convert_image(image, tmp_path / "many.raw")
    assert time.monotonic() - t0 < 60
    assert (tmp_path / "many.raw").read_bytes() == b.expected()
    assert len(result.warnings) == 10_000       # each junk member named once, not fatal


def test_ten_thousand_vhd_members_are_refused(tmp_path):
    image = tmp_path / "deep.tgz"
    with tarfile.open(image, "w:gz") as t:
        for i in range(10_000):
            info = tarfile.TarInfo(f"./{i}.vhd")
            info.size = 0
            t.addfile(info, io.BytesIO(b""))
    assert_clean_failure(tmp_path, image, "too small to be a VHD")


def test_gzip_bomb_member(tmp_path):
    # 1 GiB of zeros named 0.vhd in a ~1 MiB archive: streamed in bounded memory, then refused
    # because it is not a VHD (no footer) - no output is left.
    image = tmp_path / "bomb.tgz"
    with open(image, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as gz:
        info = tarfile.TarInfo("./0.vhd")
        info.size = 1 << 30
        gz.write(info.tobuf(format=tarfile.GNU_FORMAT))
        chunk = bytes(MIB)
        for _ in range(1024):
            gz.write(chunk)
        gz.write(bytes(1024))
    assert os.path.getsize(image) < 2 * MIB
    assert_clean_failure(tmp_path, image, "not a VHD")


def test_dynamic_member_with_a_huge_gap_is_refused_before_reading_it(tmp_path):
    # A valid small VHD followed by 512 MiB of zeros before its footer: the BAT cannot account
    # for the size, so the member is refused up front instead of decompressing the gap.
    d = tmp_path / "g"
    d.mkdir()
    with VhdWriter(d / "0.vhd", size=4 * MIB) as w:
        w.write(0, b"a" * 512)
    data = (d / "0.vhd").read_bytes()
    image = tmp_path / "gap.tgz"
    with open(image, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as gz:
        size = len(data) + (512 << 20)
        info = tarfile.TarInfo("./0.vhd")
        info.size = size
        gz.write(info.tobuf(format=tarfile.GNU_FORMAT))
        gz.write(data[:-512])
        for _ in range(512):
            gz.write(bytes(MIB))
        gz.write(data[-512:])
        gz.write(bytes(-size % 512) + bytes(1024))
    t0 = time.monotonic()
    assert_clean_failure(tmp_path, image, "gzip bomb")
    assert time.monotonic() - t0 < 5


def test_garbage_appended_after_the_gzip_stream_is_refused(tmp_path):
    # gzip -d calls this "trailing garbage ignored" but exits 2; we refuse with a clear line.
    _, paths = good_members(tmp_path)
    image = tmp_path / "t.tgz"
    pack_image(image, paths)
    with open(image, "ab") as f:
        f.write(b"GARBAGE" * 1000)
    assert_clean_failure(tmp_path, image, "after the end of the gzip stream")


def test_trailing_garbage_inside_the_gzip_after_the_tar_is_ignored(tmp_path):
    b, paths = good_members(tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for i, p in enumerate(paths):
            t.add(p, arcname=f"./{i}.vhd")
    image = tmp_path / "g.tgz"
    image.write_bytes(gzip.compress(buf.getvalue() + b"\xde\xad" * 5000))
    convert_image(image, tmp_path / "g.raw")
    assert (tmp_path / "g.raw").read_bytes() == b.expected()


def test_truncated_gzip_mid_member(tmp_path):
    _, paths = good_members(tmp_path)
    image = tmp_path / "cut.tgz"
    pack_image(image, paths)
    data = image.read_bytes()
    image.write_bytes(data[:len(data) * 2 // 3])
    assert_clean_failure(tmp_path, image, "truncated")


def test_bat_claiming_two_tib_with_no_data(tmp_path):
    # A 2 TiB dynamic disk whose BAT is all unused: valid, converts to a 2 TiB sparse file.
    d = tmp_path / "big"
    d.mkdir()
    with VhdWriter(d / "0.vhd", size=2040 * (1 << 30)):
        pass
    image = tmp_path / "big.tgz"
    pack_image(image, [d / "0.vhd"])
    out = tmp_path / "big.raw"
    convert_image(image, out)
    assert os.path.getsize(out) == 2040 * (1 << 30) and os.stat(out).st_blocks == 0


def test_bat_entries_claiming_blocks_past_the_member(tmp_path):
    d = tmp_path / "bat"
    d.mkdir()
    with VhdWriter(d / "0.vhd", size=64 * MIB):
        pass
    raw = bytearray((d / "0.vhd").read_bytes())
    for i in range(32):                          # every block "allocated" far beyond the file
        raw[1536 + 4 * i:1540 + 4 * i] = (0x10000000 + i * 4200).to_bytes(4, "big")
    (d / "0.vhd").write_bytes(bytes(raw))
    image = tmp_path / "b.tgz"
    pack_image(image, [d / "0.vhd"])
    assert_clean_failure(tmp_path, image, "past the end")
    report = check_image(image)
    assert not report.ok and report.problems


@pytest.mark.parametrize("name", ["./0.vhd/../../etc/passwd", "/etc/0.vhd", "../0.vhd"])
def test_escaping_names(tmp_path, name):
    image = tmp_path / "n.tgz"
    with tarfile.open(image, "w:gz") as t:
        info = tarfile.TarInfo(name)
        info.size = 4
        t.addfile(info, io.BytesIO(b"abcd"))
    assert_clean_failure(tmp_path, image, "refused")
    assert not (tmp_path / "etc").exists()

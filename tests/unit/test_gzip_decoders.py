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

"""Every gzip decoder (XEN_VHD_GZIP) gives the same bytes, and fails the same way: one line,
no output left behind."""

import subprocess
import sys

import pytest

from converter import gzstream
from converter.builder import ImageBuilder
from converter.convert import convert_image
from converter.errors import ArchiveError, VhdError
from tests.conftest import MIB, disk_bytes

DECODERS = ["isal", "zlib", "rapidgzip"]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp("dec")
    b = ImageBuilder(disk_bytes(6 * MIB, 5))      # more than one rapidgzip chunk of input
    b.snapshot(size=8 * MIB)
    b.write(3 * MIB + 512, disk_bytes(300 * 1024, 6))
    b.snapshot()
    b.write(7 * MIB, b"leaf" * 5000)
    b.build(d / "i.tgz")
    return d / "i.tgz", b.expected()


@pytest.mark.parametrize("decoder", DECODERS)
def test_each_decoder_gives_the_same_bytes(image, tmp_path, monkeypatch, decoder):
    monkeypatch.setenv("XEN_VHD_GZIP", decoder)
    monkeypatch.setenv("XEN_VHD_GZIP_THREADS", "2")
    seen = []
    real = gzstream.open_reader
    monkeypatch.setattr(gzstream, "open_reader", lambda *a: seen.append(r := real(*a)) or r)
    convert_image(image[0], tmp_path / "o.raw")
    assert (tmp_path / "o.raw").read_bytes() == image[1]
    kind = gzstream.ParallelGzipReader if decoder == "rapidgzip" else gzstream.GzipReader
    assert [type(r) for r in seen] == [kind]            # the decoder asked for is the one used
    if decoder == "zlib":
        assert seen[0]._lib.__name__ == "gzip"


def test_decoder_choice(monkeypatch):
    assert gzstream.choose_decoder("x", {}) == (gzstream.BACKEND, 1)       # default: one thread
    assert gzstream.choose_decoder("x", {"XEN_VHD_GZIP": "rapidgzip", "XEN_VHD_GZIP_THREADS": "3"}) == \
        ("rapidgzip", 3)
    assert gzstream.choose_decoder("x", {"XEN_VHD_GZIP": "zlib"}) == ("zlib", 1)
    for bad in ({"XEN_VHD_GZIP": "lz4"}, {"XEN_VHD_GZIP": "rapidgzip", "XEN_VHD_GZIP_THREADS": "0"},
                {"XEN_VHD_GZIP_THREADS": "two"}):
        with pytest.raises(ArchiveError) as info:
            gzstream.choose_decoder("x", bad)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "trailing"])
@pytest.mark.parametrize("decoder", DECODERS)
def test_damaged_gzip_fails_in_one_line_and_leaves_nothing(image, tmp_path, monkeypatch, decoder, damage):
    if decoder == "zlib" and damage == "trailing":
        pytest.skip("stdlib gzip stops where the tar ends and never reads the garbage (isal reads ahead)")
    data = image[0].read_bytes()
    if damage == "truncated":
        data = data[:len(data) * 2 // 3]
    elif damage == "corrupt":
        mid = len(data) // 2
        data = data[:mid] + bytes(4096) + data[mid + 4096:]
    else:
        data += b"GARBAGE" * 1000
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("XEN_VHD_GZIP", decoder)
    with pytest.raises(VhdError) as info:
        convert_image(bad, out / "disk.raw")
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    assert list(out.iterdir()) == []


def test_cli_with_the_parallel_decoder_exits_cleanly_on_corrupt_input(image, tmp_path):
    # rapidgzip's threads must be joined on the error path too, or the interpreter aborts at exit.
    data = image[0].read_bytes()
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(data[:len(data) // 2] + bytes(4096) + data[len(data) // 2 + 4096:])
    run = subprocess.run([sys.executable, "-m", "converter.cli", "convert", str(bad), str(tmp_path / "o.raw")],
                         capture_output=True, text=True, env={"XEN_VHD_GZIP": "rapidgzip", "PATH": "/usr/bin:/bin",
                                                             "PYTHONPATH": ":".join(sys.path)})
    assert run.returncode == 1, run
    assert len(run.stderr.strip().splitlines()) == 1 and "gzip" in run.stderr
    assert not (tmp_path / "o.raw").exists()

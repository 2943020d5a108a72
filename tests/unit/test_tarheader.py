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

"""converter.tarheader reads every header as Python's tarfile does (it replaces it for reading)."""

import io
import tarfile

import pytest

from converter import tarheader


def _header_blocks(fmt, name, size=0, kind=tarfile.REGTYPE):
    """The 512-byte header blocks tarfile writes for one member (extension headers first)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    info.mode = 0o640
    raw = info.tobuf(fmt, "utf-8", "surrogateescape")
    blocks, pos = [], 0
    while pos < len(raw):                   # skip the data of extension headers
        blocks.append(raw[pos:pos + 512])
        pos += 512 + (tarfile.TarInfo.frombuf(blocks[-1], "utf-8", "surrogateescape").size + 511) // 512 * 512
    return blocks


CASES = [
    (tarfile.GNU_FORMAT, "./0.vhd", 1234, tarfile.REGTYPE),
    (tarfile.GNU_FORMAT, "./", 0, tarfile.DIRTYPE),
    (tarfile.GNU_FORMAT, "./big.vhd", 9 << 30, tarfile.REGTYPE),            # > 8 GiB: base-256 size
    (tarfile.USTAR_FORMAT, "d" * 120 + "/1.vhd", 7, tarfile.REGTYPE),         # name split into prefix
    (tarfile.USTAR_FORMAT, "link", 0, tarfile.SYMTYPE),
    (tarfile.USTAR_FORMAT, "fifo", 0, tarfile.FIFOTYPE),
    (tarfile.USTAR_FORMAT, "dev", 0, tarfile.CHRTYPE),
    (tarfile.PAX_FORMAT, "./2.vhd", 5, tarfile.REGTYPE),
    (tarfile.PAX_FORMAT, "é" * 60 + ".vhd", 5, tarfile.REGTYPE),              # pax header first
]


@pytest.mark.parametrize("fmt,name,size,kind", CASES)
def test_every_block_reads_as_tarfile_reads_it(fmt, name, size, kind):
    for block in _header_blocks(fmt, name, size, kind):
        ours = tarheader.parse(block)
        theirs = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        # tarfile drops a directory's trailing slash; the archive's names ignore it either way
        assert (ours.name.rstrip("/"), ours.size, ours.type, ours.mode) == (
            theirs.name.rstrip("/"), theirs.size, theirs.type, theirs.mode)


def test_kinds():
    kinds = {tarfile.REGTYPE: None, tarfile.AREGTYPE: None, tarfile.CONTTYPE: None,
             tarfile.DIRTYPE: "directory", tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link",
             tarfile.CHRTYPE: "device node", tarfile.BLKTYPE: "device node", tarfile.FIFOTYPE: "fifo"}
    for kind, words in kinds.items():
        block = _header_blocks(tarfile.GNU_FORMAT, "x", 0, kind)[-1]
        assert tarheader.parse(block).kind() == words, kind


def test_v7_directory_is_a_trailing_slash():
    block = _header_blocks(tarfile.GNU_FORMAT, "dir/", 0, tarfile.AREGTYPE)[0]
    assert tarheader.parse(block).kind() == "directory"


def _with_checksum(block, value):
    b = bytearray(block)
    b[148:156] = b"%06o\0 " % value
    return bytes(b)


def test_bad_checksum_refused():
    block = bytearray(_header_blocks(tarfile.GNU_FORMAT, "./0.vhd", 10)[0])
    block[0] ^= 1
    with pytest.raises(tarheader.HeaderError, match="bad checksum"):
        tarheader.parse(bytes(block))


def test_signed_checksum_accepted_as_tarfile_does():
    block = bytearray(_header_blocks(tarfile.GNU_FORMAT, "./0.vhd", 10)[0])
    block[300] = 0xE9                                   # a high byte in uname
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    signed = _with_checksum(block, unsigned - 256)
    assert tarfile.TarInfo.frombuf(signed, "utf-8", "surrogateescape").size == 10
    assert tarheader.parse(signed).size == 10
    with pytest.raises(tarheader.HeaderError):
        tarheader.parse(_with_checksum(block, unsigned - 512))


def test_bad_numbers_and_truncation():
    block = bytearray(_header_blocks(tarfile.GNU_FORMAT, "./0.vhd", 10)[0])
    block[124:136] = b"12x4567\0\0\0\0\0"
    block = _with_checksum(block, sum(block[:148]) + 256 + sum(block[156:]))
    with pytest.raises(tarheader.HeaderError, match="invalid number"):
        tarheader.parse(block)
    with pytest.raises(tarheader.HeaderError, match="truncated"):
        tarheader.parse(b"\1" * 100)


def test_a_whole_gnu_tar_stream_walks_the_same():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in (("./", None), ("./" + "n" * 150 + ".txt", b"abc"), ("./1.vhd", b"x" * 700)):
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    types = []
    pos = 0
    while raw[pos:pos + 512] != bytes(512):
        h = tarheader.parse(raw[pos:pos + 512])
        types.append(h.type)
        pos += 512 + (h.size + 511) // 512 * 512
    assert types == [tarheader.DIRECTORY, tarheader.GNU_LONGNAME, tarheader.REGULAR, tarheader.REGULAR]

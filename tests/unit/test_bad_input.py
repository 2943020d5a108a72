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

"""Bad input: one clear line naming what is wrong, exit 1, and nothing left behind."""

import gzip
import io
import os
import struct
import subprocess
import sys
import tarfile

import pytest

from converter.builder import ImageBuilder
from converter.convert import convert_image
from converter.errors import VhdError
from converter.writer import VhdWriter
from tests.conftest import MIB, disk_bytes


def xen_vhd(*args):
    return subprocess.run([sys.executable, "-m", "converter.cli", *map(str, args)], capture_output=True, text=True)


def three_members(tmp_path):
    b = ImageBuilder(disk_bytes(4 * MIB, 1))
    b.snapshot(size=8 * MIB)
    b.write(5 * MIB, b"x" * 5000)
    b.snapshot()
    b.write(100, b"y" * 700)
    d = tmp_path / "members"
    d.mkdir()
    return b, b.write_members(d)


def tgz(path, entries):
    """entries: (TarInfo-ish dict, bytes or None)."""
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as t:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE,
                             "fifo": tarfile.FIFOTYPE, "dir": tarfile.DIRTYPE}[kind]
                info.linkname = "/etc/passwd" if "link" in kind else ""
                t.addfile(info)
    return path


def assert_rejected(tmp_path, source, message):
    out = tmp_path / "out" / "disk.raw"
    out.parent.mkdir(exist_ok=True)
    before = set(os.listdir(tmp_path))
    r = xen_vhd("convert", source, out)
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xen-vhd: "), r.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    assert os.listdir(out.parent) == [], "partial output left behind"
    assert set(os.listdir(tmp_path)) == before
    return lines[0]


def mutate(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_truncated_member(tmp_path):
    _, paths = three_members(tmp_path)
    with open(paths[0], "r+b") as f:
        f.truncate(os.path.getsize(paths[0]) - 4096)
    image = tmp_path / "t.tgz"
    from converter.archive import pack_image
    pack_image(image, paths)
    assert_rejected(tmp_path, image, "0.vhd")


def test_bad_footer_checksum(tmp_path):
    _, paths = three_members(tmp_path)
    mutate(paths[1], os.path.getsize(paths[1]) - 512 + 100, b"\x01")
    mutate(paths[1], 100, b"\x01")
    line = assert_rejected(tmp_path, str(tmp_path / "members"), "invalid checksum")
    assert "1.vhd" in line


def test_bad_header_checksum(tmp_path):
    _, paths = three_members(tmp_path)
    mutate(paths[0], 512 + 64, b"\x00\x41")        # parent name changed, checksum not
    line = assert_rejected(tmp_path, str(tmp_path / "members"), "header")
    assert "checksum" in line


def _set_bat_entry(path, index, value):
    mutate(path, 1536 + 4 * index, struct.pack(">I", value))


def test_bat_entry_past_eof(tmp_path):
    _, paths = three_members(tmp_path)
    _set_bat_entry(paths[0], 0, 0x00FFFFFF)
    assert_rejected(tmp_path, str(tmp_path / "members"), "past the end")


def test_bat_entry_overlapping_metadata(tmp_path):
    _, paths = three_members(tmp_path)
    _set_bat_entry(paths[0], 0, 3)      # byte 1536: the BAT itself
    assert_rejected(tmp_path, str(tmp_path / "members"), "metadata")


def _rewrite_header(path, **fields):
    from converter.header import DynamicHeader
    with open(path, "r+b") as f:
        f.seek(512)
        h = DynamicHeader.unpack(f.read(1024))
        for k, v in fields.items():
            setattr(h, k, v)
        f.seek(512)
        f.write(h.pack())


def test_absurd_max_table_entries(tmp_path):
    _, paths = three_members(tmp_path)
    _rewrite_header(paths[0], max_table_entries=0xFFFFFFFF)
    assert_rejected(tmp_path, str(tmp_path / "members"), "extends past the end")


def test_absurd_block_size(tmp_path):
    _, paths = three_members(tmp_path)
    _rewrite_header(paths[0], block_size=3 * 1000)
    assert_rejected(tmp_path, str(tmp_path / "members"), "block size")


def test_parent_uuid_mismatch_and_override(tmp_path):
    b, paths = three_members(tmp_path)
    import uuid
    _rewrite_header(paths[0], parent_uuid=uuid.uuid4())
    assert_rejected(tmp_path, str(tmp_path / "members"), "--ignore-parent-uuid")
    r = xen_vhd("convert", "--ignore-parent-uuid", tmp_path / "members", tmp_path / "ok.raw")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ok.raw").read_bytes() == b.expected()


def test_parent_loop_same_disk_twice(tmp_path):
    _, paths = three_members(tmp_path)
    # 1.vhd replaced by a copy of 0.vhd: same UUID twice, and its parent is itself.
    with open(paths[0], "rb") as f:
        data = f.read()
    with open(paths[1], "wb") as f:
        f.write(data)
    assert_rejected(tmp_path, str(tmp_path / "members"), "0.vhd")


def test_gap_in_numbering(tmp_path):
    _, paths = three_members(tmp_path)
    os.rename(paths[1], os.path.join(os.path.dirname(paths[1]), "5.vhd"))
    assert_rejected(tmp_path, str(tmp_path / "members"), "missing: 1.vhd")


def test_duplicate_members_in_a_tar(tmp_path):
    _, paths = three_members(tmp_path)
    image = tmp_path / "dup.tgz"
    from converter.archive import write_tar
    write_tar(image, [paths[0], paths[0], paths[1], paths[2]], ["./0.vhd", "0.vhd", "./1.vhd", "./2.vhd"])
    assert_rejected(tmp_path, image, "position 0 again")


def test_hidden_leaf_converts_with_a_warning(tmp_path):
    b, paths = three_members(tmp_path)
    from converter.writer import set_hidden
    set_hidden(paths[0], True)
    r = xen_vhd("convert", tmp_path / "members", tmp_path / "h.raw")
    assert r.returncode == 0
    assert "leaf is hidden" in r.stderr
    assert (tmp_path / "h.raw").read_bytes() == b.expected()


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "chr", "fifo"])
def test_tar_members_that_are_not_files(tmp_path, kind):
    image = tgz(tmp_path / "l.tgz", [("./0.vhd", None, kind)])
    assert_rejected(tmp_path, image, "regular files only")


@pytest.mark.parametrize("name,message", [("/0.vhd", "absolute"), ("../0.vhd", "'..'"),
                                          ("./a/../../0.vhd", "'..'")])
def test_tar_paths_outside(tmp_path, name, message):
    image = tgz(tmp_path / "p.tgz", [(name, b"x" * 1024, "file")])
    assert_rejected(tmp_path, image, message)


def test_member_claiming_two_tib_in_a_tiny_file(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    with VhdWriter(d / "0.vhd", size=2040 * (1 << 30), max_table_entries=16) if False else \
            VhdWriter(d / "0.vhd", size=4 * MIB) as w:
        w.write(0, b"a" * 512)
    # Claim 2 TiB in the footers: the BAT no longer covers it.
    from converter.footer import Footer
    path = d / "0.vhd"
    raw = path.read_bytes()
    f = Footer.unpack(raw[:512])
    f.current_size = 2 * (1 << 40)
    packed = f.pack()
    mutate(path, 0, packed)
    mutate(path, len(raw) - 512, packed)
    from converter.archive import pack_image
    pack_image(tmp_path / "claim.tgz", [path])
    assert_rejected(tmp_path, tmp_path / "claim.tgz", "max table entries")


def test_not_gzip(tmp_path):
    p = tmp_path / "x.tgz"
    p.write_bytes(b"hello, this is not a tarball" * 100)
    assert_rejected(tmp_path, p, "neither a gzip-compressed tar")


def test_gzip_of_garbage(tmp_path):
    p = tmp_path / "x.tgz"
    p.write_bytes(gzip.compress(b"\x01" * 10000))
    assert_rejected(tmp_path, p, "tar header")


def test_truncated_gzip(tmp_path):
    b, paths = three_members(tmp_path)
    from converter.archive import pack_image
    image = tmp_path / "t.tgz"
    pack_image(image, paths)
    with open(image, "r+b") as f:
        f.truncate(os.path.getsize(image) // 2)
    assert_rejected(tmp_path, image, "truncated")


def test_raw_disk_passed_as_an_image(tmp_path):
    p = tmp_path / "disk.raw"
    p.write_bytes(disk_bytes(2 * MIB, 3))
    assert_rejected(tmp_path, p, "raw disk")


def test_raw_disk_inside_a_tgz(tmp_path):
    image = tgz(tmp_path / "r.tgz", [("./0.vhd", disk_bytes(MIB, 4), "file")])
    assert_rejected(tmp_path, image, "not a VHD")


def test_dynamic_member_not_last(tmp_path):
    _, paths = three_members(tmp_path)
    d = tmp_path / "members"
    os.rename(paths[2], d / "tmp")
    os.rename(paths[1], paths[2])
    os.rename(d / "tmp", paths[1])
    assert_rejected(tmp_path, str(d), "only the last member")


def test_missing_input_is_a_usage_error(tmp_path):
    r = xen_vhd("convert", tmp_path / "nope.tgz", tmp_path / "o.raw")
    assert r.returncode == 2 and "no such file" in r.stderr


def test_output_directory_missing(tmp_path):
    b, paths = three_members(tmp_path)
    r = xen_vhd("convert", tmp_path / "members", tmp_path / "no" / "such" / "o.raw")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_library_raises_only_vhd_errors(tmp_path):
    p = tmp_path / "x.tgz"
    p.write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    with pytest.raises(VhdError):
        convert_image(p, tmp_path / "o.raw")
    assert not (tmp_path / "o.raw").exists()

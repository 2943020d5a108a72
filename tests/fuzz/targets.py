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

"""The fuzz targets and their seed corpora (made by converter.builder at run time)."""

import contextlib
import io
import os
import random
import tarfile
import tempfile

from converter import archive, bat, footer, header
from converter.builder import ImageBuilder
from converter.convert import compose
from converter.member import VhdMember
from converter.sink import MemorySink
from converter.source import FileSource, StreamSource
from converter.vhdutil import cli as vhdutil
from converter.vhdutil import image as vhdimage
from converter.vhdutil import inspect as vhdinspect  # noqa: F401 (imported here to be instrumented)

# A scratch file per process for targets that need a path (tmpfs when there is one).
_SCRATCH_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_SCRATCH = os.path.join(_SCRATCH_DIR, f"xen-vhd-fuzz-{os.getpid()}")


def _scratch(data, suffix=""):
    path = _SCRATCH + suffix
    with open(path, "wb") as f:
        f.write(data)
    return path


def members():
    """Three small members, newest first: base, a grown layer, a leaf with a batmap."""
    rnd = random.Random(15)
    b = ImageBuilder(rnd.randbytes(64 * 1024), block_size=4096)
    b.snapshot(size=b.size + 8192)
    b.write(1000, rnd.randbytes(3000))
    b.snapshot()
    b.write(b.size - 5000, rnd.randbytes(700))
    with tempfile.TemporaryDirectory() as d:
        return [open(p, "rb").read() for p in b.write_members(d, batmap=True)]


def tar_of(datas):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for i, data in enumerate(datas):
            info = tarfile.TarInfo(f"./{i}.vhd")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- targets --------------------------------------------------------------------------------
def t_footer(data):
    f = footer.Footer.unpack(data[:512])
    f.findings(len(data))
    f.reasons()
    _ = (f.type_label, f.creator)   # properties: they parse fields too
    f.hidden_checksum_ok()
    f.matches(f)
    f.pack()


def t_header(data):
    h = header.DynamicHeader.unpack(data[:1024])
    h.findings(None, len(data))
    _ = (h.sectors_per_block, h.bitmap_size, h.bat_size)
    h.decode_parent_name()
    h.decode_parent_name(old_tap=True)
    h.pack()


def t_locators(data):
    h = header.DynamicHeader.unpack(data[:1024])
    rest = data[1024:]
    h.locator_findings(len(data))
    for i, loc in enumerate(h.locators):
        loc.decode(rest)
        loc.findings(i, h.locator_raw(i), len(data))
        _ = (loc.space_bytes, loc.ms_size)
        loc.pack()


def t_bat(data):
    if len(data) < 4:
        return
    entries = int.from_bytes(data[:2], "big")
    size = int.from_bytes(data[2:4], "big") * 512 * 8
    body = data[4:]
    # The member reader hands unpack_bat whole entries (it reads bat_size sectors).
    table = bat.unpack_bat(body[:len(body) - len(body) % 4], entries)
    bat.pack_bat(list(table), max(entries, len(table)))
    bh = bat.BatmapHeader.unpack(body)
    map_bytes = body[512:]
    if bh is not None:
        bh.problems(map_bytes, size, entries, len(data))
        bh.pack()
        bat.batmap_checksum(map_bytes, size, bh.batmap_version)
    n = bat.batmap_map_size(size)
    last = min(entries, len(map_bytes) * 8)
    for block in {*range(min(last, 64)), last - 1} - {-1}:    # the edges: a full sweep is 65k calls
        bat.batmap_bit(map_bytes, block)
    nsectors = min(len(body) * 8, 4096)
    mask = bat.bitmap_mask(body, nsectors)
    bat.mask_runs(mask, nsectors)
    bat.mask_bitmap(mask, nsectors, n + (-n % 512) or 512)


def _drain(member):
    for _block in member.blocks():
        pass
    member.finish()


def t_member_file(data):
    with FileSource(_scratch(data), "fuzz.vhd") as src:
        _drain(VhdMember.open(src))
    with FileSource(_SCRATCH, "fuzz.vhd") as src:
        VhdMember.inspect(src)


def t_member_stream(data):
    stream = io.BytesIO(data)
    src = StreamSource(stream.read, len(data), "fuzz.tgz:0.vhd", readinto=stream.readinto)
    _drain(VhdMember.open(src))
    stream.seek(0)
    VhdMember.inspect(StreamSource(stream.read, len(data), "fuzz.tgz:0.vhd", readinto=stream.readinto))


def t_tarheader(data):
    for _name, info, reader in archive.iter_tar(io.BytesIO(data), "fuzz.tar"):
        info.kind()
        reader.read(min(info.size, 1024))


def t_compositor(data):
    # The whole chain operation as convert runs it on a stream (an uncompressed tar: gzip
    # would only hide the bytes from the fuzzer), into a bounded in-memory window.
    path = _scratch(data, ".tar")
    try:
        compose(path, MemorySink(0, 1 << 20))
    finally:
        os.unlink(path)


# --- xen-vhd-util on fuzzed files ------------------------------------------------------------
class _Null(io.TextIOBase):
    def write(self, s):
        return len(s)


_NULL = _Null()
_VALID = {}


def _valid(index):
    """A builder member (0 leaf, 1 grown layer, 2 base) at a fixed scratch path, written once."""
    if index not in _VALID:
        _VALID[index] = members()[index]
    return _VALID[index]


def _vhd_util(*argv):
    """One subcommand as the CLI runs it; its own error (a one-line ``Fail``) is expected.
    Returns the exit code, or None when it failed that way."""
    cmd, rest = argv[0], [str(a) for a in argv[1:]]
    with contextlib.redirect_stdout(_NULL):
        try:
            return vhdutil.HANDLERS[cmd](rest)
        except vhdimage.Fail as exc:
            if "\n" in exc.line or not exc.code:
                raise AssertionError(f"{cmd}: bad failure {exc.code} {exc.line!r}") from None
            return None


def _clean(*paths):
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


SEAL = 0x80     # first byte of a vhdutil input: restamp the checksums the mutations broke


def _file(data):
    """The fuzzed file of a vhdutil input (after its option byte); with SEAL, its footers' and
    header's checksums recomputed, so that mutations reach past xen-vhd-util's open."""
    body = data[1:]
    if not data or not data[0] & SEAL or len(body) < 512:
        return body
    buf = bytearray(body)
    tail = len(buf) - 512
    footer.stamp_checksum(memoryview(buf)[tail:], footer.CHECKSUM_OFFSET)
    if buf[:8] == footer.COOKIE and tail:
        footer.stamp_checksum(memoryview(buf)[:512], footer.CHECKSUM_OFFSET)
    at = int.from_bytes(buf[tail + 16:tail + 24], "big")
    if at + 1024 <= tail:
        footer.stamp_checksum(memoryview(buf)[at:at + 1024], header.CHECKSUM_OFFSET)
    return bytes(buf)


def t_vhdutil_check(data):
    _vhd_util("check", "-n", _scratch(_file(data), ".vhd"), "-b")


def t_vhdutil_modify(data):
    child, parent = _scratch(_file(data), ".vhd"), _scratch(_valid(2), ".parent.vhd")
    if _vhd_util("modify", "-n", child, "-p", parent) == 0:
        _vhd_util("query", "-n", child, "-p", "-d", "-v", "-s")


def t_vhdutil_resize(data):
    """First byte: the size in MiB (its low 4 bits) and SEAL; the rest: the file. A resize that
    succeeds leaves a file that opens at a size of at least that, and no journal."""
    if not data:
        return
    mib = data[0] % 16
    path, journal = _scratch(_file(data), ".vhd"), _SCRATCH + ".journal"
    _clean(journal)
    try:
        if _vhd_util("resize", "-n", path, "-s", mib, "-j", journal) == 0:
            if os.path.exists(journal):
                raise AssertionError("resize succeeded and left its journal")
            img = vhdimage.Image(path)
            try:
                if img.footer.current_size < mib << 20:
                    raise AssertionError(f"resized to {img.footer.current_size}, asked for {mib} MiB")
            finally:
                img.close()
    finally:
        _clean(journal)


def t_vhdutil_coalesce(data):
    """First byte, bit 0: which file is fuzzed (0 the child, 1 the parent), the other a builder
    member, and SEAL; the child is linked to the parent (modify -p) and coalesced."""
    if not data:
        return
    fuzzed = _file(data)
    child_data, parent_data = (fuzzed, _valid(2)) if data[0] & 1 == 0 else (_valid(1), fuzzed)
    child, parent = _scratch(child_data, ".vhd"), _scratch(parent_data, ".parent.vhd")
    if _vhd_util("modify", "-n", child, "-p", parent) == 0:
        _vhd_util("coalesce", "-n", child)


def _seed_vhdutil():
    return [bytes([flag]) + m for m in members() for flag in (0, SEAL)]


def _seed_vhdutil_coalesce():
    ms = members()
    pairs = ((0, ms[1]), (0, ms[0]), (1, ms[2]), (1, ms[1]))
    return [bytes([flag | role]) + m for flag in (0, SEAL) for role, m in pairs]


def _seed_vhdutil_resize():
    return [bytes([flag | mib]) + m for m in members() for mib in (0, 1, 9) for flag in (0, SEAL)]


def _seed_vhds():
    return members()


def _seed_headers():
    return [m[512:512 + 1024 + 4096] for m in members()]


def _seed_footers():
    return [m[-512:] for m in members()]


def _seed_bat():
    out = []
    for m in members():
        h = header.DynamicHeader.unpack(m[512:1536])
        n = h.max_table_entries
        table = m[h.table_offset:h.table_offset + h.bat_size * 512 + 1024]
        out.append(n.to_bytes(2, "big") + (1).to_bytes(2, "big") + table)
    return out


def _seed_tar():
    ms = members()
    return [tar_of(ms), tar_of(ms[-1:])]


TARGETS = {
    "footer": (t_footer, _seed_footers),
    "header": (t_header, _seed_headers),
    "locators": (t_locators, _seed_headers),
    "bat": (t_bat, _seed_bat),
    "member-file": (t_member_file, _seed_vhds),
    "member-stream": (t_member_stream, _seed_vhds),
    "tarheader": (t_tarheader, _seed_tar),
    "compositor": (t_compositor, _seed_tar),
    "vhdutil-check": (t_vhdutil_check, _seed_vhdutil),
    "vhdutil-modify": (t_vhdutil_modify, _seed_vhdutil),
    "vhdutil-resize": (t_vhdutil_resize, _seed_vhdutil_resize),
    "vhdutil-coalesce": (t_vhdutil_coalesce, _seed_vhdutil_coalesce),
}

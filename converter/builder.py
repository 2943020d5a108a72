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

"""XenServer image builder: a raw base plus layers of writes, and the disk they should read as.

The builder records what happens to a disk over its life (resizes, writes of any size at any
offset, writes past the old end, zeros over data, snapshots) and writes each layer as a VHD:
the base as a dynamic disk, every later layer as a differencing disk whose bitmap marks the
sectors written in it. The expected raw disk is computed from the same history WITHOUT
reading any VHD (a flat model: base bytes, growth with zeros, writes in order), so tests
compare the reader against an independent answer.
"""

import hashlib
import os
import random
import tempfile
import uuid as uuidlib

from converter import archive
from converter.errors import UsageError
from converter.header import DEFAULT_BLOCK_SIZE
from converter.record import factory, record
from converter.writer import VhdWriter, vhd_from_raw

SECTOR = 512


@record
class Layer:
    size: int                     # current size of this layer
    original_size: int
    sectors: dict = factory(dict)   # sector -> 512 bytes written here


class ImageBuilder:
    """Build XenServer images from a base and a history of writes.

    >>> b = ImageBuilder(base_bytes)          # base layer (becomes the last member)
    >>> b.snapshot(size=1 << 30)              # new layer on top, grown to 1 GiB
    >>> b.write(4096 + 100, b"hello")         # partial-sector write: rest of the sector kept
    >>> b.build("image.tgz")                  # 0.vhd newest .. n.vhd base
    >>> b.expected()                          # the raw disk the image must read as
    """

    def __init__(self, base, *, block_size=DEFAULT_BLOCK_SIZE, base_size=None):
        """``base``: bytes, or the path of a raw file (large bases are never loaded whole)."""
        if isinstance(base, (bytes, bytearray)):
            self.base_bytes = bytes(base)
            self.base_path = None
            size = len(base)
        else:
            self.base_bytes = None
            self.base_path = os.fspath(base)
            size = os.path.getsize(self.base_path)
        size = base_size if base_size is not None else size
        if size <= 0 or size % SECTOR:
            raise UsageError("base", f"size {size} is not a positive multiple of 512")
        self.block_size = block_size
        self.layers = [Layer(size=size, original_size=size)]   # oldest first

    # -- history ---------------------------------------------------------------------------
    @property
    def size(self):
        return self.layers[-1].size

    def snapshot(self, size=None):
        """Start a new (newer) layer, optionally grown to ``size`` (XenServer never shrinks)."""
        size = self.size if size is None else size
        if size < self.size or size % SECTOR:
            raise UsageError("size", f"{size} must be a multiple of 512 and at least {self.size}")
        self.layers.append(Layer(size=size, original_size=self.size))
        return self

    def write(self, offset, data):
        """Write ``data`` at ``offset`` into the newest layer (any alignment)."""
        if not 0 <= offset <= offset + len(data) <= self.size:
            raise UsageError("write", f"{len(data)} bytes at {offset} do not fit in {self.size} bytes")
        if len(self.layers) == 1:
            raise UsageError("write", "the base is fixed: call snapshot() before writing")
        top = self.layers[-1].sectors
        first, last = offset // SECTOR, (offset + len(data) - 1) // SECTOR
        for sector in range(first, last + 1):
            start = sector * SECTOR
            lo, hi = max(offset, start), min(offset + len(data), start + SECTOR)
            if lo == start and hi == start + SECTOR:
                top[sector] = bytes(data[lo - offset:hi - offset])
            else:
                buf = bytearray(self.read_sector(sector))
                buf[lo - start:hi - start] = data[lo - offset:hi - offset]
                top[sector] = bytes(buf)
        return self

    # -- the model (independent of any VHD reader) -------------------------------------------
    def _base_read(self, offset, length):
        base_size = self.layers[0].size
        end = min(offset + length, base_size)
        if offset >= end:
            return bytes(length)
        if self.base_bytes is not None:
            data = self.base_bytes[offset:end]
        else:
            with open(self.base_path, "rb") as f:
                f.seek(offset)
                data = f.read(end - offset)
        return data.ljust(length, b"\0")

    def read_sector(self, sector):
        for layer in reversed(self.layers[1:]):
            if sector in layer.sectors:
                return layer.sectors[sector]
        return self._base_read(sector * SECTOR, SECTOR)

    def expected_pieces(self, piece=1 << 20):
        """The expected raw disk, piece by piece (bounded memory for large bases)."""
        overrides = {}
        for layer in self.layers[1:]:
            overrides.update(layer.sectors)
        by_piece = {}
        for sector in overrides:
            by_piece.setdefault(sector * SECTOR // piece, []).append(sector)
        for start in range(0, self.size, piece):
            n = min(piece, self.size - start)
            buf = self._base_read(start, n)
            touched = by_piece.get(start // piece)
            if touched:
                buf = bytearray(buf)
                for sector in touched:
                    off = sector * SECTOR - start
                    buf[off:off + SECTOR] = overrides[sector]
            yield bytes(buf)

    def expected(self):
        return b"".join(self.expected_pieces())

    def expected_md5(self):
        h = hashlib.md5()
        for piece in self.expected_pieces():
            h.update(piece)
        return h.hexdigest()

    # -- writing the image -------------------------------------------------------------------
    def write_members(self, directory, *, names=None, hidden_parents=True, batmap=None, fill=None,
                      footer_511=False, max_table_entries=None, creator_app=b"tap\0", base_type="dynamic"):
        """Write the layers as VHD files in ``directory``; returns their paths, newest first.

        ``fill``: bytes (512) written into every allocated block before data, so bitmap-clear
        sectors hold garbage that a correct reader must not show.
        """
        n = len(self.layers)
        names = names or [f"{i}.vhd" for i in range(n)]
        paths = [os.path.join(directory, names[n - 1 - i]) for i in range(n)]   # oldest first
        uuids = [uuidlib.uuid4() for _ in range(n)]
        common = dict(block_size=self.block_size, batmap=batmap, footer_511=footer_511,
                      max_table_entries=max_table_entries, creator_app=creator_app)
        base = self.layers[0]
        if base_type == "fixed":
            with VhdWriter(paths[0], disk_type="fixed", size=base.size, uuid=uuids[0],
                           hidden=hidden_parents and n > 1, footer_511=footer_511) as w:
                for start in range(0, base.size, 1 << 20):
                    w.write(start, self._base_read(start, min(1 << 20, base.size - start)))
        else:
            with _base_raw(self) as raw:
                vhd_from_raw(raw, paths[0], uuid=uuids[0], hidden=hidden_parents and n > 1, **common)
        for i in range(1, n):
            layer = self.layers[i]
            with VhdWriter(paths[i], disk_type="differencing", size=layer.size, original_size=layer.original_size,
                           parent_uuid=uuids[i - 1], parent_name=f"{uuidlib.uuid4()}.vhd",
                           uuid=uuids[i], hidden=hidden_parents and i < n - 1, fill=fill, **common) as w:
                for start, data in _runs(layer.sectors):
                    w.write(start * SECTOR, data)
        return list(reversed(paths))

    def build(self, tgz_path, *, order=None, old_names=False, dotslash=True, **member_options):
        """Write a XenServer image. ``order``: member order in the tar (list of positions) or
        "shuffle"; ``old_names``: snap/image/base.vhd (at most 3 layers)."""
        n = len(self.layers)
        if old_names and n > 3:
            raise UsageError("old names", "snap/image/base.vhd name at most 3 members")
        names = ["snap.vhd", "image.vhd", "base.vhd"][3 - n:] if old_names else None
        with tempfile.TemporaryDirectory(prefix="xen-vhd-build-", dir=os.path.dirname(os.path.abspath(tgz_path))) as d:
            paths = self.write_members(d, names=names, **member_options)
            positions = list(range(n))
            if order == "shuffle":
                random.shuffle(positions)
            elif order is not None:
                positions = list(order)
            arcnames = [("./" if dotslash else "") + os.path.basename(paths[p]) for p in positions]
            archive.write_tar(tgz_path, [paths[p] for p in positions], arcnames)
        return tgz_path


def _runs(sectors):
    """(first sector, bytes) for each run of consecutive written sectors."""
    run_start, buf = None, []
    for s in sorted(sectors):
        if run_start is not None and s == run_start + len(buf):
            buf.append(sectors[s])
            continue
        if buf:
            yield run_start, b"".join(buf)
        run_start, buf = s, [sectors[s]]
    if buf:
        yield run_start, b"".join(buf)


class _base_raw:
    """The base as a raw file path (a temporary copy when it was given as bytes)."""

    def __init__(self, builder):
        self.builder = builder
        self.tmp = None

    def __enter__(self):
        b = self.builder
        if b.base_path is not None and os.path.getsize(b.base_path) == b.layers[0].size:
            return b.base_path
        fd, self.tmp = tempfile.mkstemp(prefix="xen-vhd-base-", suffix=".raw")
        with os.fdopen(fd, "wb") as f:
            size = b.layers[0].size
            for start in range(0, size, 1 << 20):
                piece = b._base_read(start, min(1 << 20, size - start))
                if piece.count(0) == len(piece):
                    f.seek(len(piece), os.SEEK_CUR)
                else:
                    f.write(piece)
            f.truncate(size)
        return self.tmp

    def __exit__(self, *exc):
        if self.tmp:
            os.unlink(self.tmp)


def image_from_raw(raw_path, tgz_path, *, block_size=DEFAULT_BLOCK_SIZE):
    """A single-member XenServer image (./0.vhd, dynamic, creator 'tap') of a raw disk."""
    with tempfile.TemporaryDirectory(prefix="xen-vhd-", dir=os.path.dirname(os.path.abspath(tgz_path))) as d:
        member = os.path.join(d, "0.vhd")
        vhd_from_raw(raw_path, member, block_size=block_size)
        archive.pack_image(tgz_path, [member])
    return tgz_path



def build_pattern(offset, length):
    """A recognisable, position-dependent pattern: each 16-byte row names its own offset."""
    first = offset // 16 * 16
    rows = b"".join(b"xv@%012x\n" % pos for pos in range(first, offset + length, 16))
    return rows[offset - first:offset - first + length]

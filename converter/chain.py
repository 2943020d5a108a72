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

"""The blktap read rule, written once, and the chain it applies to.

Rule (blktap ``__vhd_io_dynamic_read``, ocaml-vhd ``get_sector_location``): for sector s of
the leaf's disk, walk from the leaf: if s >= this link's current size -> zero, stop; if the
block is allocated and the sector's bitmap bit is 1 -> this link's data, stop; otherwise a
differencing link defers to its parent, a dynamic link reads zero, a fixed disk its data.

``Compositor`` applies that rule to layer data arriving in ANY order (members of a tgz come in
directory order): layer k's sector is kept unless a newer layer (lower index) already owns it
or lies beyond the reach of a newer layer's size; when a newer layer arrives it takes over.
It keeps, per 2 MiB chunk of the virtual disk, one byte (no owner / one owner / mixed) and,
for mixed chunks only, one bitmask per layer - never a per-sector structure for the whole
disk. ``ChainReader`` (random access) and ``convert`` (streaming) both drive it.
"""

import os
import re

from converter.bat import mask_runs
from converter.errors import ChainError
from converter.footer import DiskType
from converter.record import record

CHUNK_SECTORS = 4096                     # 2 MiB
CHUNK_BYTES = CHUNK_SECTORS * 512
FULL = (1 << CHUNK_SECTORS) - 1
NOBODY = 255                             # uniform[] value: no layer owns anything here
MIXED = 254                              # uniform[] value: see mixed[chunk]
MAX_LAYERS = 250
ZERO_GRAIN = 4096                        # zero detection granularity (file system block)
_ZEROS = bytes(CHUNK_BYTES)
_ZERO_BYTES = re.compile(b"\0+")


def runs(mask, width=CHUNK_SECTORS):
    """(start, end) sector runs of set bits of an MSB-first mask ``width`` bits wide."""
    return mask_runs(mask, width)


def zero_grains(data, head):
    """(start, end) byte runs of ``data`` made of whole all-zero grains, grains starting at
    ``head`` (so that they line up with file system blocks of the output).

    Testing every grain costs a Python step per 4 KiB; instead the first and last byte of every
    grain are sampled with two strided copies, and only grains whose samples are both zero are
    compared in full (one memcmp per run of candidates when the run is all zero).
    """
    count = (len(data) - head) // ZERO_GRAIN
    if count <= 0:
        return []
    grains = memoryview(data)[head:head + count * ZERO_GRAIN]
    samples = int.from_bytes(grains[::ZERO_GRAIN], "big") | int.from_bytes(grains[ZERO_GRAIN - 1::ZERO_GRAIN], "big")
    found = []
    for m in _ZERO_BYTES.finditer(samples.to_bytes(count, "big")):
        a, b = m.span()
        if _ZEROS.startswith(grains[a * ZERO_GRAIN:b * ZERO_GRAIN]):
            found.append((head + a * ZERO_GRAIN, head + b * ZERO_GRAIN))
            continue
        for i in range(a, b):                 # mixed candidates: grain by grain, coalesced
            if _ZEROS.startswith(grains[i * ZERO_GRAIN:(i + 1) * ZERO_GRAIN]):
                lo, hi = head + i * ZERO_GRAIN, head + (i + 1) * ZERO_GRAIN
                if found and found[-1][1] == lo:
                    lo = found.pop()[0]
                found.append((lo, hi))
    return found


def span_mask(start, end, width=CHUNK_SECTORS):
    """Mask with sectors [start, end) set."""
    if end <= start:
        return 0
    return ((1 << (end - start)) - 1) << (width - end)


class Compositor:
    """Blktap's read rule over layers that arrive in any order; writes the result to a sink."""

    def __init__(self, sink):
        self.sink = sink
        self.sizes = {}              # layer -> current size in sectors
        self.uniform = bytearray()   # per chunk: NOBODY, MIXED or the owning layer
        self.mixed = {}              # chunk -> {layer: mask}; masks are disjoint

    # -- sizes -------------------------------------------------------------------------------
    def declare(self, layer, size_bytes):
        """Layer ``layer`` has this current size; older data beyond it reads zero from now on."""
        if not 0 <= layer < MAX_LAYERS:
            raise ChainError("chain", f"{layer + 1} members: at most {MAX_LAYERS} are supported")
        limit = size_bytes // 512
        self.sizes[layer] = limit
        self.sink.reserve(size_bytes)
        first = limit // CHUNK_SECTORS
        for chunk in range(first, len(self.uniform)):
            owner = self.uniform[chunk]
            if owner == NOBODY or owner == MIXED and not self.mixed[chunk]:
                continue
            start = max(limit - chunk * CHUNK_SECTORS, 0)
            clip = span_mask(start, CHUNK_SECTORS)
            older = self._owned_by_older(chunk, layer) & clip
            for a, b in runs(older):
                self.sink.zero((chunk * CHUNK_SECTORS + a) * 512, (b - a) * 512, True)
            if older:
                self._take(chunk, layer, older)

    def reach(self, layer):
        """Sectors of layer ``layer`` that the rule can reach: below every newer layer's size."""
        known = [s for k, s in self.sizes.items() if k <= layer]
        return min(known) if known else None

    # -- ownership -----------------------------------------------------------------------------
    def _grow(self, chunk):
        if chunk >= len(self.uniform):
            self.uniform.extend(b"\xff" * (chunk + 1 - len(self.uniform)))

    def _owned_by_older(self, chunk, layer):
        owner = self.uniform[chunk] if chunk < len(self.uniform) else NOBODY
        if owner == NOBODY:
            return 0
        if owner != MIXED:
            return FULL if owner > layer else 0
        return _or(m for k, m in self.mixed[chunk].items() if k > layer)

    def hidden(self, layer, first_sector, nsectors):
        """True when ``apply`` of these sectors of ``layer`` would write nothing: newer layers
        own every one of them, or a newer layer's size cuts them off. Random-access sources
        then need not read the block (members come newest first)."""
        return not self.wanted(layer, first_sector, nsectors, None)

    def wanted(self, layer, first_sector, nsectors, mask):
        """Of the sectors ``mask`` marks present (MSB-first over ``nsectors``; None = all), those
        ``apply`` would write: within every newer layer's size and owned by no newer layer.
        Random-access sources then read just those (members come newest first)."""
        if mask is None:
            mask = (1 << nsectors) - 1
        reach = self.reach(layer)
        if reach is not None and first_sector + nsectors > reach:
            beyond = nsectors - max(reach - first_sector, 0)
            mask &= ~((1 << beyond) - 1)
        pos = 0
        while pos < nsectors and mask:
            chunk, offset = divmod(first_sector + pos, CHUNK_SECTORS)
            count = min(CHUNK_SECTORS - offset, nsectors - pos)
            newer = self._owned_by_newer(chunk, layer)
            if newer:
                part = (newer >> (CHUNK_SECTORS - offset - count)) & ((1 << count) - 1)
                mask &= ~(part << (nsectors - pos - count))
            pos += count
        return mask

    def _owned_by_newer(self, chunk, layer):
        owner = self.uniform[chunk] if chunk < len(self.uniform) else NOBODY
        if owner == NOBODY:
            return 0
        if owner != MIXED:
            return FULL if owner < layer else 0
        return _or(m for k, m in self.mixed[chunk].items() if k < layer)

    def _take(self, chunk, layer, mask):
        """``layer`` now supplies the sectors of ``mask`` in ``chunk``."""
        owner = self.uniform[chunk]
        if mask == FULL:
            self.uniform[chunk] = layer
            self.mixed.pop(chunk, None)
            return
        if owner == NOBODY:
            masks = {}
        elif owner == MIXED:
            masks = self.mixed[chunk]
        else:
            masks = {owner: FULL}
        for k in list(masks):
            rest = masks[k] & ~mask
            if rest:
                masks[k] = rest
            else:
                del masks[k]
        masks[layer] = masks.get(layer, 0) | mask
        if len(masks) == 1 and masks[layer] == FULL:
            self.uniform[chunk] = layer
            self.mixed.pop(chunk, None)
        else:
            self.uniform[chunk] = MIXED
            self.mixed[chunk] = masks

    # -- data --------------------------------------------------------------------------------
    def apply(self, layer, first_sector, nsectors, mask, data):
        """Layer ``layer`` holds ``nsectors`` from ``first_sector``: present where ``mask`` (MSB-first,
        None = all) is set, bytes in ``data``."""
        reach = self.reach(layer)
        if reach is not None and first_sector + nsectors > reach:
            cut = max(reach - first_sector, 0)
            if mask is None:
                mask = (1 << nsectors) - 1
            mask >>= nsectors - cut
            data = data[:cut * 512]
            nsectors = cut
        pos = 0
        while pos < nsectors:
            sector = first_sector + pos
            chunk, offset = divmod(sector, CHUNK_SECTORS)
            count = min(CHUNK_SECTORS - offset, nsectors - pos)
            if mask is None:
                piece = span_mask(offset, offset + count)
            else:
                piece = ((mask >> (nsectors - pos - count)) & ((1 << count) - 1)) << (CHUNK_SECTORS - offset - count)
            if piece:
                self._apply_chunk(layer, chunk, piece, data[pos * 512:(pos + count) * 512], offset)
            pos += count

    def _apply_chunk(self, layer, chunk, piece, data, data_first):
        """``data`` covers chunk sectors [data_first, data_first + len/512)."""
        self._grow(chunk)
        owner = self.uniform[chunk]
        if owner == NOBODY:
            writable, older = piece, 0
        elif owner == MIXED:
            masks = self.mixed[chunk]
            newer = _or(m for k, m in masks.items() if k < layer)
            writable = piece & ~newer
            older = writable & _or(m for k, m in masks.items() if k > layer)
        elif owner < layer:
            return
        else:
            writable = piece
            older = piece if owner > layer else 0
        if not writable:
            return
        base = chunk * CHUNK_BYTES
        if writable == older or not older:
            for a, b in runs(writable):
                self._emit(base + a * 512, data[(a - data_first) * 512:(b - data_first) * 512], bool(older))
        else:
            for part, prev in ((writable & older, True), (writable & ~older, False)):
                for a, b in runs(part):
                    self._emit(base + a * 512, data[(a - data_first) * 512:(b - data_first) * 512], prev)
        self._take(chunk, layer, writable)

    def _emit(self, offset, data, prev):
        """Write ``data`` at ``offset``; zero stretches become holes (or explicit zeroing when
        ``prev``: an older layer's bytes are there)."""
        n = len(data)
        # bytes.startswith compares any buffer with memcmp; memoryview == is element-wise.
        if _ZEROS.startswith(data):
            self.sink.zero(offset, n, prev)
            return
        if n <= ZERO_GRAIN:
            self.sink.write(offset, data)
            return
        sink = self.sink
        start = 0        # start of the pending non-zero stretch
        for a, b in zero_grains(data, -offset % ZERO_GRAIN):
            if a > start:
                sink.write(offset + start, data[start:a])
            sink.zero(offset + a, b - a, prev)
            start = b
        if n > start:
            sink.write(offset + start, data[start:n])

    # -- the end -------------------------------------------------------------------------------
    def unowned_runs(self, size_bytes):
        """Byte ranges below ``size_bytes`` that no layer supplied (they read as zero)."""
        total = size_bytes // 512
        nchunks = -(-total // CHUNK_SECTORS)
        for chunk in range(nchunks):
            owner = self.uniform[chunk] if chunk < len(self.uniform) else NOBODY
            if owner == NOBODY:
                free = FULL
            elif owner == MIXED:
                free = FULL & ~_or(self.mixed[chunk].values())
            else:
                continue
            limit = min(CHUNK_SECTORS, total - chunk * CHUNK_SECTORS)
            for a, b in runs(free & span_mask(0, limit)):
                yield (chunk * CHUNK_SECTORS + a) * 512, (b - a) * 512

    def finish(self, size_bytes):
        if self.sink.needs_zeroing:
            for offset, length in self.unowned_runs(size_bytes):
                self.sink.zero(offset, length, False)
        self.sink.finish(size_bytes)


def _or(masks):
    out = 0
    for m in masks:
        out |= m
    return out


# --- linking members by position ------------------------------------------------------------
@record
class LinkInfo:
    """What chain validation needs of a member."""
    position: int
    where: str
    disk_type: DiskType
    uuid: object
    parent_uuid: object
    current_size: int
    hidden: int


def link_problems(links, *, allow_uuid_mismatch=False):
    """Problems that stop ``links`` (any order) from forming a chain 0 (leaf) .. n (base)."""
    found = []
    ordered = sorted(links, key=lambda m: m.position)
    positions = [m.position for m in ordered]
    if not ordered:
        return ["no VHD members"]
    expected = list(range(len(ordered)))
    if positions != expected:
        missing = sorted(set(range(max(positions) + 1)) - set(positions))
        found.append(f"members are not numbered 0..{len(ordered) - 1} without gaps (missing: "
                     + ", ".join(f"{p}.vhd" for p in missing) + ")")
        return found
    # Types first: a misplaced base explains the UUID mismatches it causes.
    for child, parent in zip(ordered, ordered[1:]):
        if child.disk_type != DiskType.DIFFERENCING:
            found.append(f"{child.where} is a {child.disk_type.label} disk but {parent.where} follows it: "
                         "only the last member may have no parent")
    for child, parent in zip(ordered, ordered[1:]):
        if child.disk_type == DiskType.DIFFERENCING and child.parent_uuid != parent.uuid \
                and not allow_uuid_mismatch:
            found.append(f"{child.where}: parent UUID {child.parent_uuid} is not the UUID {parent.uuid} of "
                         f"{parent.where} (pass --ignore-parent-uuid to link by position anyway)")
    base = ordered[-1]
    if base.disk_type == DiskType.DIFFERENCING:
        found.append(f"{base.where} is the last member but is a differencing disk: its parent is missing")
    seen = {}
    for m in ordered:
        if m.uuid in seen and m.uuid.int:
            found.append(f"{m.where} has the same UUID as {seen[m.uuid]}: a chain cannot contain a disk twice")
        seen.setdefault(m.uuid, m.where)
    return found


def require_chain(links, **kw):
    problems = link_problems(links, **kw)
    if problems:
        raise ChainError(problems[0])


# --- random access --------------------------------------------------------------------------
class ChainReader:
    """Random-access reads through a chain: ``read(offset, n)`` applies the same rule.

    ``source``: a list of VHD paths (newest first), a directory of N.vhd files, a single VHD
    or a tgz (whose members are copied to a temporary directory first: this is for
    inspection and tests; conversions stream).
    """

    def __init__(self, source, *, allow_uuid_mismatch=False):
        from converter import archive
        from converter.member import VhdMember
        from converter.source import FileSource

        self._tmp = None
        if isinstance(source, (list, tuple)):
            files = [(os.fspath(p), os.fspath(p)) for p in source]
        elif archive.source_kind(os.fspath(source)) in ("tgz", "tar"):
            files = self._spool(source)
        else:
            with archive.open_source(source) as opened:
                files = [(r.where, r.where) for r in opened.members]
        self.members = [VhdMember.open(FileSource(path, where), strict=True) for path, where in files]
        links = [LinkInfo(i, m.where, m.footer.disk_type, m.footer.uuid,
                          m.header.parent_uuid if m.header else None, m.current_size, m.footer.hidden)
                 for i, m in enumerate(self.members)]
        require_chain(links, allow_uuid_mismatch=allow_uuid_mismatch)
        self.size = self.members[0].current_size

    def _spool(self, source):
        """Copy the members of an archive to a temporary directory: [(path, where)] newest first."""
        import tempfile

        from converter import archive

        self._tmp = tempfile.mkdtemp(prefix="xen-vhd-chain-")
        return archive.extract_members(source, self._tmp)

    def read(self, offset, n):
        from converter.sink import MemorySink

        n = max(0, min(n, self.size - offset))
        sink = MemorySink(offset, n)
        if not n:
            return b""
        comp = Compositor(sink)
        for rank, m in enumerate(self.members):
            comp.declare(rank, m.current_size)
        for rank, m in enumerate(self.members):
            unit = m.header.block_size if m.header else 2 * 1024 * 1024
            wanted = set(range(offset // unit, (offset + n - 1) // unit + 1))
            for block in m.blocks(only=wanted, reuse=True):
                comp.apply(rank, block.first_sector, block.nsectors, block.mask, block.data)
        comp.finish(self.size)
        return bytes(sink.buf)

    def close(self):
        for m in self.members:
            m.source.close()
        if self._tmp:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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

"""Single-pass conversion of a XenServer image to a raw disk or a coalesced VHD.

A tgz is read once, as a stream: each member's metadata, then its blocks in file order, go
straight into the ``Compositor`` (the read rule) which writes the sparse result. Members may
come in any order; nothing is extracted to disk and memory stays bounded by the block size
and the number of partially owned 2 MiB chunks. The chain is validated at the end (numbering,
types, parent UUIDs); any failure removes the partial output.
"""

import functools
import os

from converter import archive
from converter.chain import MAX_LAYERS, Compositor, LinkInfo, require_chain
from converter.errors import ArchiveError, FormatError, UsageError
from converter.footer import DiskType
from converter.member import VhdMember
from converter.record import record
from converter.sink import FileSink, Output, write_behind

OUTPUT_FORMATS = ("raw", "vhd")
# A dynamic member may hold this much beyond what its header and BAT account for (locators,
# alignment) before we call it hostile: skipping a huge gap would mean decompressing it.
SLACK_BYTES = 64 << 20


@record
class MemberInfo:
    position: int
    name: str
    disk_type: str
    current_size: int
    original_size: int
    hidden: bool
    uuid: object
    parent_uuid: object
    parent_name: str
    file_size: int
    allocated_blocks: int | None


@record
class ConvertResult:
    output: str
    output_format: str
    virtual_size: int
    members: list
    warnings: list
    data_bytes: int = 0


class Progress:
    """Adapts member progress to one callback ``progress(done, total)`` over the input bytes."""

    def __init__(self, callback, total):
        self.callback = callback
        self.total = total

    def __call__(self, done):
        if self.callback:
            self.callback(min(done, self.total), self.total)


@record(frozen=True)
class Rule:
    """How the layers combine. ``BLKTAP`` is the truth; other rules reproduce known conversion
    bugs (see ``converter.variants``) so harnesses can prove they notice them."""

    bitmaps: bool = True        # False: every allocated block whole, as qemu-img's vpc driver reads
    reverse: bool = False       # True: the chain read backwards (the base taken as the newest layer)
    leaf_only: bool = False     # True: parents ignored (qemu-img converts 0.vhd alone)
    base_size: bool = False     # True: the result has the base's size (parents not grown first)
    drop_tail: int = 0          # bytes at the end that read as zero (a truncated copy)
    validate: bool = True       # check how the members link (numbering, types, parent UUIDs)


BLKTAP = Rule()


def compose(source, sink, *, allow_uuid_mismatch=False, progress=None, rule=BLKTAP):
    """Run every member of ``source`` through the read rule into ``sink``; returns (size, members, warnings)."""
    with archive.open_source(source) as opened, write_behind(sink) as sink:
        total = _input_size(source, opened)
        report = Progress(progress, total)
        compositor = Compositor(sink)
        buffer = getattr(sink, "buffer", True)     # blocks are read into reused buffers
        refs, links, infos = [], [], {}
        seen = {}
        done_before = 0
        for ref in opened.members:
            if ref.rank in seen:
                raise ArchiveError(ref.where, f"is chain position {ref.rank} again (already {seen[ref.rank]})")
            seen[ref.rank] = ref.name
            member = VhdMember.open(ref.source, strict=True)
            _check_bounds(member)
            refs.append(ref)
            if rule.leaf_only and ref.rank != 0:
                continue
            layer = MAX_LAYERS - 1 - ref.rank if rule.reverse else ref.rank
            compositor.declare(layer, member.current_size)
            # Files need not read what newer layers (already applied) hide: whole blocks, and
            # within a block all but the present sectors the rule still wants. (Not for the
            # ignore-bitmaps rule: it uses whole blocks, unwritten sectors too.)
            skip = select = None
            if not opened.streaming:
                skip = functools.partial(compositor.hidden, layer)
                if rule.bitmaps:
                    select = functools.partial(compositor.wanted, layer)
            for block in member.blocks(reuse=buffer, skip=skip, select=select):
                compositor.apply(layer, block.first_sector, block.nsectors, block.mask if rule.bitmaps else None,
                                 block.data)
                if progress is not None:
                    report(opened.position() if opened.streaming else done_before + block.first_sector * 512)
            member.finish()
            if member.footer.disk_type == DiskType.FIXED:
                compositor.declare(layer, member.current_size)
            done_before += ref.source.size
            links.append(_link(ref, member))
            infos[ref.rank] = _info(ref, member)
        refs = archive.finalize_ranks(refs, opened.where)   # renumbers old-style names
        if rule.validate:
            for ref, link in zip(sorted(refs, key=lambda r: r.rank), sorted(links, key=lambda k: k.position)):
                link.position = ref.rank
            require_chain(links, allow_uuid_mismatch=allow_uuid_mismatch)
        ordered = [infos[k] for k in sorted(infos)]
        for i, info in enumerate(ordered):
            info.position = i
        size = ordered[-1].current_size if rule.base_size else ordered[0].current_size
        warnings = list(opened.warnings)
        if ordered[0].hidden:
            warnings.append(f"{ordered[0].name}: the leaf is hidden (XenServer would refuse to import it)")
        compositor.finish(size)
        if rule.drop_tail:
            tail = min(rule.drop_tail, size)
            sink.zero(size - tail, tail, True)
        report(total)
        return size, ordered, warnings


def _input_size(source, opened):
    if isinstance(source, (list, tuple)):
        return sum(os.path.getsize(p) for p in source)
    if opened.kind == "dir":
        return sum(os.path.getsize(os.path.join(source, n)) for n in os.listdir(source)
                   if os.path.isfile(os.path.join(source, n)))
    return os.path.getsize(source)


def _check_bounds(member):
    """Refuse a dynamic member whose file is far larger than its metadata accounts for."""
    h = member.header
    if h is None:
        return
    used_blocks = member.allocated_blocks or 0
    bound = (member.first_data or 0) + used_blocks * (h.bitmap_size + h.block_size) + 512 + SLACK_BYTES
    if member.source.size > bound:
        raise FormatError(member.where, f"is {member.source.size} bytes but its BAT accounts for at most "
                          f"{bound - SLACK_BYTES} (a gzip bomb or a corrupt BAT): refused")


def _link(ref, member):
    f, h = member.footer, member.header
    return LinkInfo(position=ref.rank, where=ref.where, disk_type=f.disk_type, uuid=f.uuid,
                    parent_uuid=h.parent_uuid if h else None, current_size=f.current_size, hidden=f.hidden)


def _info(ref, member):
    f, h = member.footer, member.header
    return MemberInfo(position=ref.rank, name=archive.canonical_name(ref.name) or ref.name,
                      disk_type=f.type_label, current_size=f.current_size, original_size=f.original_size,
                      hidden=bool(f.hidden), uuid=f.uuid, parent_uuid=h.parent_uuid if h else None,
                      parent_name=h.parent_name if h else "", file_size=ref.source.size,
                      allocated_blocks=member.allocated_blocks)


def convert_image(source, output, *, output_format="raw", progress=None, allow_uuid_mismatch=False,
                  tmpdir=None, rule=BLKTAP):
    """Convert a XenServer image (tgz, directory, VHD or list of VHDs) to ``output``.

    ``output``: a path (replaced only on success), an existing block device, or "-" for stdout.
    ``output_format``: "raw" (sparse raw disk of exactly the virtual size) or "vhd" (one
    coalesced dynamic VHD, what Cinder hands to qemu-img).
    """
    if output_format not in OUTPUT_FORMATS:
        raise UsageError("format", f"{output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    if output_format == "raw":
        with Output(output, tmpdir=tmpdir) as out:
            size, members, warnings = compose(source, out.sink, allow_uuid_mismatch=allow_uuid_mismatch,
                                              progress=progress, rule=rule)
            written = out.sink.bytes_written
        return ConvertResult(str(output), "raw", size, members, warnings, written)
    # Coalesced VHD: composed straight into the VHD (converter.writer.VhdSink), one pass.
    from converter.writer import VhdSink  # here: raw conversions need not pay for it

    with Output(output, tmpdir=tmpdir) as out:
        if type(out.sink) is not FileSink or out.pipe_fd is not None:
            raise UsageError("output", "a VHD is written to a regular file; give a file name")
        sink = VhdSink(out.fd, out.path)
        size, members, warnings = compose(source, sink, allow_uuid_mismatch=allow_uuid_mismatch,
                                          progress=progress, rule=rule)
        written = sink.bytes_written
    return ConvertResult(str(output), "vhd", size, members, warnings, written)

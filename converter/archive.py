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

"""XenServer images as containers: a tgz stream, an extracted directory, or a list of VHDs.

Members are ``0.vhd`` (newest) .. ``n.vhd`` (base), with or without ``./``, in any order in the
tar (``tar -zc --directory=STAGING .`` stores directory order). Old names ``snap.vhd``,
``image.vhd``, ``base.vhd`` are numbered in that order, skipping absent ones (as XenServer's
import did); ``swap.vhd`` is not part of the chain. Only regular files and directories are
accepted: links, devices, fifos, absolute and ``..`` paths are refused outright, even though
nothing is ever extracted to disk.
"""

import contextlib
import os
import re
import stat

from converter.errors import ArchiveError, UsageError
from converter.fsutil import atomic_path
from converter.record import record
from converter.source import FileSource, StreamSource

NUMBERED = re.compile(r"^(0|[1-9][0-9]{0,5})\.vhd$")
OLD_NAMES = {"snap.vhd": 0, "image.vhd": 1, "base.vhd": 2}
IGNORED = {"swap.vhd"}
TAR_BLOCK = 512


@record
class MemberRef:
    """A chain member found in a container; ``rank`` orders it (lower = newer)."""
    rank: int
    name: str           # as stored (e.g. './0.vhd')
    where: str          # for messages: 'image.tgz:./0.vhd'
    source: object      # FileSource or StreamSource
    old_style: bool = False


def canonical_name(name):
    """The member's name without leading './' (repeated); None for the archive's root entry."""
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    return None if name in ("", ".") else name


def rank_of(name, where):
    """Chain rank of a member name, None when the member is not part of the chain."""
    base = canonical_name(name)
    if base is None or base in IGNORED:
        return None, False
    if "/" in base:
        if base.endswith(".vhd"):
            raise ArchiveError(where, "is inside a directory: a XenServer image keeps its VHDs at the top level")
        return None, False
    m = NUMBERED.match(base)
    if m:
        return int(m.group(1)), False
    if base in OLD_NAMES:
        return OLD_NAMES[base], True
    if base.lower().endswith(".vhd"):
        raise ArchiveError(where, "is not named N.vhd (0.vhd = newest .. n.vhd = base) nor snap/image/base.vhd")
    return None, False


def check_safe_path(name, where):
    if name.startswith("/"):
        raise ArchiveError(where, "has an absolute path: refused")
    if ".." in name.split("/"):
        raise ArchiveError(where, "has a '..' path component: refused")


def finalize_ranks(refs, where):
    """Check names for duplicates and style, renumber old-style names 0..k; sorted newest first."""
    if not refs:
        raise ArchiveError(where, "holds no VHD members (expected 0.vhd .. n.vhd)")
    styles = {r.old_style for r in refs}
    if len(styles) > 1:
        raise ArchiveError(where, "mixes numbered members (0.vhd ..) with old names (snap/image/base.vhd)")
    seen = {}
    for r in refs:
        if r.rank in seen:
            raise ArchiveError(where, f"holds the chain member at position {r.rank} twice: "
                               f"{seen[r.rank]} and {r.name}")
        seen[r.rank] = r.name
    refs = sorted(refs, key=lambda r: r.rank)
    if refs[0].old_style:
        for i, r in enumerate(refs):
            r.rank = i
    return refs


# --- sniffing -------------------------------------------------------------------------------
def source_kind(path):
    """'tgz', 'tar', 'vhd' or 'dir' for a user-given path; ArchiveError otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(path, "no such file or directory") from None
    except OSError as exc:
        raise UsageError(path, f"cannot access: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise ArchiveError(path, "is not a regular file or directory")
    with open(path, "rb") as f:
        head = f.read(TAR_BLOCK)
        size = f.seek(0, os.SEEK_END)
        tail = b""
        if size >= 511:
            f.seek(size - (511 if size % 512 == 511 else 512))
            tail = f.read(8)
    if not head:
        raise ArchiveError(path, "is empty: not a XenServer image")
    if head[:2] == b"\x1f\x8b":                 # gzip magic
        return "tgz"
    if head[:8] == b"conectix" or tail == b"conectix":
        return "vhd"
    if len(head) == TAR_BLOCK and head[257:262] == b"ustar":
        return "tar"
    raise ArchiveError(path, "is neither a gzip-compressed tar of VHDs (a XenServer image), a tar, nor a VHD "
                       "(a raw disk image?)")


# --- tar stream -----------------------------------------------------------------------------
class _Exact:
    """Reads exactly the bytes of the current tar member from the decompressed stream."""

    def __init__(self, stream, size):
        self.stream = stream
        self.left = size

    def read(self, n):
        if self.left <= 0:
            return b""
        piece = self.stream.read(min(n, self.left))
        self.left -= len(piece)
        return piece

    def readinto(self, view):
        if self.left <= 0:
            return 0
        if len(view) > self.left:
            view = view[:self.left]
        n = self.stream.readinto(view)
        self.left -= n
        return n


def _read_block(stream, where, n=TAR_BLOCK, *, allow_eof=False):
    parts, want = [], n
    while want:
        piece = stream.read(want)
        if not piece:
            if allow_eof and want == n:
                return None
            raise ArchiveError(where, "the tar stream ends in the middle of a header or member (truncated?)")
        parts.append(bytes(piece))
        want -= len(piece)
    return b"".join(parts)


def _skip(stream, n, where):
    while n > 0:
        piece = stream.read(min(n, 1 << 20))
        if not piece:
            raise ArchiveError(where, "the tar stream ends in the middle of a member (truncated?)")
        n -= len(piece)


def _pax_records(data, where):
    records, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ArchiveError(where, "malformed pax extended header") from None
        if length <= 0 or pos + length > len(data):
            raise ArchiveError(where, "malformed pax extended header")
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def iter_tar(stream, where):
    """(name, TarHeader, reader) for each member of a tar stream; long names and pax honoured.

    The caller may read any part of the member; the rest is skipped when it asks for the next.
    """
    from converter import tarheader  # here: extracted images never read a tar header
    long_name = None
    pax = {}
    while True:
        block = _read_block(stream, where, allow_eof=True)
        if block is None or block == bytes(TAR_BLOCK):
            return                          # end of archive; anything after it is ignored, as tar does
        try:
            info = tarheader.parse(block)
        except tarheader.HeaderError as exc:
            raise ArchiveError(where, f"not a valid tar header ({exc})") from None
        size = info.size
        padded = size + (-size % TAR_BLOCK)
        if info.type in tarheader.EXTENSION_TYPES:
            if size > 1 << 20:
                raise ArchiveError(where, f"tar extended header of {size} bytes: refused")
            data = _read_block(stream, where, padded)[:size] if padded else b""
            if info.type == tarheader.PAX_HEADER:
                pax = _pax_records(data, where)
            elif info.type == tarheader.GNU_LONGNAME:
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        if long_name is not None:
            info.name = long_name
        if "path" in pax:
            info.name = pax["path"]
        if "size" in pax:
            try:
                info.size = size = int(pax["size"])
            except ValueError:
                raise ArchiveError(where, "malformed pax size") from None
            padded = size + (-size % TAR_BLOCK)
        long_name, pax = None, {}
        if info.type == tarheader.GNU_SPARSE:
            raise ArchiveError(f"{where}:{info.name}", "is a GNU sparse tar member: not supported "
                               "(XenServer images are made without tar -S)")
        reader = _Exact(stream, size)
        yield info.name, info, reader
        _skip(stream, reader.left + (padded - size), where)


def stream_tar_members(stream, where, warnings):
    """MemberRef for each chain member of a tar stream, in stream order (one pass)."""
    for name, info, reader in iter_tar(stream, where):
        mwhere = f"{where}:{name}"
        check_safe_path(name, mwhere)
        kind = info.kind()
        if kind == "directory":
            if canonical_name(name) is not None:
                warnings.append(f"{mwhere}: directory ignored")
            continue
        if kind is not None:
            raise ArchiveError(mwhere, f"is a {kind}: a XenServer image holds regular files only")
        rank, old = rank_of(name, mwhere)
        if rank is None:
            if canonical_name(name) not in IGNORED:
                warnings.append(f"{mwhere}: not a chain member, ignored")
            continue
        yield MemberRef(rank, name, mwhere, StreamSource(reader.read, info.size, mwhere, readinto=reader.readinto), old)


# --- opening any source ---------------------------------------------------------------------
@record
class Opened:
    kind: str                 # 'tgz' | 'tar' | 'dir' | 'files'
    where: str
    members: object           # iterator of MemberRef (streams: in archive order)
    warnings: list
    streaming: bool
    position: object = None   # () -> input bytes consumed so far (streams)


@contextlib.contextmanager
def open_source(source):
    """Open a XenServer image for reading its members.

    ``source``: a .tgz / .tar path, a directory of N.vhd files, a single VHD path, or a list
    of VHD paths (newest first). Streams yield members in archive order; the caller must
    finish with one member before asking for the next.
    """
    warnings = []
    if isinstance(source, (list, tuple)):
        if not source:
            raise UsageError("input", "no VHD files given")
        refs = [MemberRef(i, os.fspath(p), os.fspath(p), None) for i, p in enumerate(source)]
        yield from _files(refs, "files", warnings)
        return
    path = os.fspath(source)
    kind = source_kind(path)
    if kind == "vhd":
        yield from _files([MemberRef(0, path, path, None)], "files", warnings)
    elif kind == "dir":
        yield from _files(_directory_refs(path), "dir", warnings)
    else:
        with open(path, "rb") as raw:
            if kind == "tgz":
                from converter.gzstream import open_reader  # here: isal's import costs ~5 ms

                stream = open_reader(raw, path)
            else:
                stream = raw
            try:
                yield Opened(kind, path, stream_tar_members(stream, path, warnings), warnings, True, raw.tell)
            finally:
                if kind == "tgz":
                    stream.close()


def _directory_refs(path):
    refs = []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        rank, old = rank_of(entry, full)
        if rank is None:
            continue
        st = os.lstat(full)
        if not stat.S_ISREG(st.st_mode):
            raise ArchiveError(full, "is not a regular file (links and devices are refused)")
        refs.append(MemberRef(rank, entry, full, None, old))
    return finalize_ranks(refs, path)


def _files(refs, kind, warnings):
    opened = []
    try:
        for r in refs:
            r.source = FileSource(r.where)
            opened.append(r.source)
        where = refs[0].where if len(refs) == 1 else os.path.dirname(refs[0].where) or "."
        yield Opened(kind, where, iter(refs), warnings, False)
    finally:
        for s in opened:
            s.close()


# --- extracting ----------------------------------------------------------------------------
def extract_members(source, directory):
    """Copy the chain members of ``source`` into ``directory`` as ``N.vhd``, one at a time.

    Only names made here are written (never a name from the archive). Returns
    ``[(path, where)]`` newest first; ArchiveError when a chain position appears twice.
    """
    found = {}
    with open_source(source) as opened:
        for ref in opened.members:
            if ref.rank in found:
                raise ArchiveError(ref.where, f"is chain position {ref.rank} again")
            dest = os.path.join(os.fspath(directory), f"{ref.rank}.vhd")
            src = ref.source
            with open(dest, "wb") as out:
                while src.pos < src.size:
                    out.write(src.read_at(src.pos, min(1 << 20, src.size - src.pos)))
            found[ref.rank] = (dest, ref.where)
    if not found:
        raise ArchiveError(os.fspath(source), "holds no VHD members (expected 0.vhd .. n.vhd)")
    return [found[k] for k in sorted(found)]


# --- writing --------------------------------------------------------------------------------
def pack_image(tgz_path, vhd_paths):
    """Write a XenServer image: './' then './0.vhd' .. as ``tar -zc --directory=STAGING .`` does.

    ``vhd_paths`` newest first. The tgz appears only when complete.
    """
    return write_tar(tgz_path, vhd_paths, [f"./{i}.vhd" for i in range(len(vhd_paths))])


def write_tar(tgz_path, paths, arcnames, *, root="./"):
    """A gzip-compressed GNU tar of ``paths`` stored as ``arcnames``, after a ``root`` entry."""
    import tarfile  # here: reading images never needs it (see converter.tarheader)

    with atomic_path(tgz_path) as tmp, tarfile.open(tmp, mode="w:gz", format=tarfile.GNU_FORMAT,
                                                     compresslevel=6) as tar:
        if root:
            entry = tarfile.TarInfo(root)
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o755
            entry.mtime = int(os.stat(paths[0]).st_mtime) if paths else 0
            entry.uname = entry.gname = "root"
            tar.addfile(entry)
        for p, name in zip(paths, arcnames):
            info = tar.gettarinfo(os.fspath(p), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o644
            with open(p, "rb") as f:
                tar.addfile(info, f)
    return os.path.abspath(os.fspath(tgz_path))

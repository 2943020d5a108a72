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

"""``vhd-util scan -p`` style trees (blktap vhd/lib/vhd-util-scan.c).

Two inputs:

* a XenServer image (tgz, numbered directory, list of VHDs): members link by *position*, so
  the tree is the chain, base at the root; the parent names inside the files (``<uuid>.vhd``,
  not in the image) are kept on each node as dangling, and each line says so:
  ``parent=1.vhd (header parent <uuid>.vhd not in image; linked by position)``;
* a directory of ``<uuid>.vhd`` files, as in a file-based storage repository: parents are
  found the way blktap does (parent locators, relative to the child's directory), then by the
  header's parent name, then by parent UUID among the scanned files. The result is a forest.

Lines are blktap's (exactly so for directories):
``vhd=NAME capacity=BYTES size=FILEBYTES hidden=0|1 parent=NAME|none``, children indented
three spaces per level; failures ``vhd=PATH scan-error=N error-message='..'``.
"""

import fnmatch
import os
import posixpath

from converter import archive
from converter.errors import ArchiveError, VhdError
from converter.footer import DiskType
from converter.header import PLAT_MACX, PLAT_W2KU, PLAT_W2RU
from converter.member import VhdMember
from converter.record import factory, record
from converter.source import FileSource

EINVAL = 22
INDENT = 3


@record
class ScanNode:
    name: str                       # printed name (basename)
    path: str                       # full path, or the member's place in its archive
    capacity: int = 0               # current (virtual) size in bytes
    size: int = 0                   # physical file size in bytes
    hidden: int = 0
    parent: str | None = None       # printed parent name; None = no parent
    parent_path: str | None = None
    parent_found: bool = True       # False: the parent is not among the scanned images
    link: str | None = None         # how the parent was found: position|locator|name|uuid
    header_parent: str | None = None          # parent name stored in the header
    header_parent_dangling: bool = False      # that name is not among the scanned images
    uuid: str | None = None
    parent_uuid: str | None = None
    parent_uuid_matches: bool | None = None
    disk_type: str | None = None
    raw: bool = False               # a raw parent (scan_parents), not a VHD
    error: int | None = None        # negative errno, as blktap prints it
    error_message: str | None = None
    detail: str | None = None       # why it failed, in our words
    children: list = factory(list)
    order: int = 0                  # target order (non-pretty output)
    rank: int | None = None         # chain position in a XenServer image (0 = leaf)

    def line(self, depth=0, verbose=False):
        if self.error is not None:
            return f"vhd={self.path} scan-error={self.error} error-message='{self.error_message}'"
        name = self.path if verbose else self.name
        parent = "none" if self.parent is None else (self.parent_path if verbose and self.parent_path
                                                       else self.parent)
        return (f"{' ' * (INDENT * depth)}vhd={name} capacity={self.capacity} size={self.size} "
                f"hidden={self.hidden} parent={parent}{self.note}")

    @property
    def note(self):
        """blktap's ' (not found in scan)'; for a XenServer image's positional link, the parent
        name the header holds, whether the image has it, and that the link is by position."""
        if self.parent is None:
            return ""
        if not self.parent_found:
            return " (not found in scan)"
        if self.link != "position":
            return ""
        named = self.header_parent or "none"
        if self.header_parent_dangling:
            return f" (header parent {named} not in image; linked by position)"
        if named != self.parent:
            return f" (header parent {named} is another member; linked by position)"
        return " (linked by position)"

    def to_json(self):
        out = {k: getattr(self, k) for k in (
            "name", "path", "capacity", "size", "hidden", "parent", "parent_path", "parent_found", "link",
            "header_parent", "header_parent_dangling", "uuid", "parent_uuid", "parent_uuid_matches",
            "disk_type", "raw", "rank", "error", "error_message", "detail")}
        out["children"] = [c.to_json() for c in self.children]
        return out


def _vhd_hidden(ins):
    """vhd_hidden: tap 0.1/1.1 dynamic disks keep the flag in the backup footer."""
    f = ins.footer
    if f.is_dynamic and f.creator_app[:3] == b"tap" and f.creator_version in (0x00000001, 0x00010001) \
            and ins.head_footer is not None:
        return ins.head_footer.hidden
    return f.hidden


def _node_from(ins, name, path, size):
    f = ins.footer
    node = ScanNode(name=name, path=path, capacity=f.current_size, size=size, hidden=int(_vhd_hidden(ins)),
                    uuid=str(f.uuid), disk_type=f.type_label)
    if f.disk_type == DiskType.DIFFERENCING and ins.header is not None:
        node.header_parent = ins.header.parent_name
        node.parent_uuid = str(ins.header.parent_uuid)
    return node


def _open_failure(ins):
    """Why libvhd's vhd_open would refuse this member, or None."""
    if ins.footer is None:
        return ins.fatal or "no valid footer"
    if ins.footer.is_dynamic and ins.header is None:
        return ins.fatal or "no dynamic header"
    return None


def _error_node(path, message, detail, order=0):
    return ScanNode(name=posixpath.basename(path), path=path, error=-EINVAL, error_message=message,
                    detail=detail, order=order)


# --- XenServer images: positional chain -------------------------------------------------------
def scan_image(source):
    """The chain of a XenServer image as a tree (base at the root); error nodes come first."""
    nodes, errors = [], []
    with archive.open_source(source) as opened:
        for order, ref in enumerate(opened.members):
            name = archive.canonical_name(ref.name) or ref.name
            try:
                ins = VhdMember.inspect(ref.source)
                failure = _open_failure(ins)
            except ArchiveError:
                raise
            except VhdError as exc:
                failure = str(exc)
            if failure:
                errors.append(_error_node(ref.where, "opening file", failure, order))
                continue
            node = _node_from(ins, name, ref.where, ref.source.size)
            node.order, node.rank = order, ref.rank
            nodes.append(node)
    nodes.sort(key=lambda n: n.rank)
    names = {n.name for n in nodes}
    by_rank = {n.rank: n for n in nodes}
    for node in nodes:
        if node.disk_type != "differencing":
            continue
        node.header_parent_dangling = node.header_parent not in names
        parent = by_rank.get(node.rank + 1)
        if parent is not None:
            node.parent, node.parent_path, node.link = parent.name, parent.path, "position"
            node.parent_uuid_matches = node.parent_uuid == parent.uuid
            parent.children.append(node)
        else:
            node.parent = posixpath.basename(node.header_parent or "") or "unknown"
            node.parent_found = False
    return errors + _roots(nodes)


# --- file-based SR directories ------------------------------------------------------------------
def _is_vhd_file(path):
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if f.read(8) == b"conectix":
                return True
            if size >= 511:
                f.seek(size - (511 if size % 512 == 511 else 512))
                return f.read(8) == b"conectix"
    except OSError:
        return False
    return False


def _locator_candidates(ins):
    """Decoded locator paths in blktap's preference: MacX, then the last W2ru, then others."""
    h = ins.header
    paths = []
    for i, loc in enumerate(h.locators):
        if loc.code in (PLAT_MACX, PLAT_W2KU, PLAT_W2RU) and i in ins.locator_data:
            path = loc.decode(ins.locator_data[i])
            if path:
                paths.append((loc.code, path))
    preferred = [p for c, p in paths if c == PLAT_MACX] + [p for c, p in reversed(paths) if c == PLAT_W2RU] \
        + [p for c, p in paths if c == PLAT_W2KU]
    return preferred


def _resolve(child_path, ppath):
    """vhd_find_parent: an absolute readable path as is, else relative to the child's directory."""
    if os.path.isabs(ppath) and os.access(ppath, os.R_OK):
        return os.path.abspath(ppath)
    candidate = os.path.join(os.path.dirname(child_path), ppath)
    if os.access(candidate, os.R_OK):
        return os.path.abspath(candidate)
    return None


def _scan_file(path, order):
    try:
        with FileSource(path) as src:
            ins = VhdMember.inspect(src)
            size = src.size
    except VhdError as exc:
        return None, _error_node(path, "opening file", str(exc), order)
    failure = _open_failure(ins)
    if failure:
        return None, _error_node(path, "opening file", failure, order)
    node = _node_from(ins, os.path.basename(path), path, size)
    node.order = order
    if node.disk_type == "differencing":
        locators = _locator_candidates(ins)
        for ppath in locators:
            found = _resolve(path, ppath)
            if found:
                node.parent_path, node.link = found, "locator"
                break
        if node.parent_path is None and node.header_parent:
            found = _resolve(path, node.header_parent)
            if found:
                node.parent_path, node.link = found, "name"
        if node.parent_path is None:
            node.parent_path = locators[0] if locators else node.header_parent
        node.parent = posixpath.basename(node.parent_path or "") or "unknown"
    return node, None


def scan_directory(path, *, pattern=None, continue_on_failure=False, scan_parents=False):
    """``vhd-util scan -m PATTERN [-c] [-a] -p`` over a directory: a forest, error nodes first."""
    path = os.path.abspath(path)
    pattern = pattern or "*.vhd"
    targets = sorted(os.path.join(path, e) for e in os.listdir(path)
                     if fnmatch.fnmatchcase(e, pattern) and os.path.isfile(os.path.join(path, e)))
    return scan_files(targets, continue_on_failure=continue_on_failure, scan_parents=scan_parents)


def scan_files(targets, *, continue_on_failure=False, scan_parents=False):
    """``vhd-util scan [-c] [-a] -p FILES``: the given VHD files as a forest, error nodes first."""
    targets = [os.path.abspath(t) for t in targets]
    nodes, errors = {}, []
    queue = list(targets)
    basenames = {os.path.basename(t) for t in targets}
    i = 0
    while i < len(queue):
        target = queue[i]
        if _is_vhd_file(target) or target in targets:
            node, error = _scan_file(target, i)
        else:                              # a raw parent found through -a
            size = os.path.getsize(target)
            node, error = ScanNode(name=os.path.basename(target), path=target, capacity=size, size=size,
                                   hidden=1, raw=True, order=i), None
        i += 1
        if error is not None:
            errors.append(error)
            if not continue_on_failure:
                break
            continue
        nodes[node.path] = node
        if scan_parents and node.parent_path and node.link in ("locator", "name") \
                and os.path.basename(node.parent_path) not in basenames:
            basenames.add(os.path.basename(node.parent_path))
            queue.append(node.parent_path)
    _link_forest(nodes)
    return errors + _roots(list(nodes.values()))


def _link_forest(nodes):
    by_uuid = {}
    for n in sorted(nodes.values(), key=lambda n: n.path):
        if n.uuid is not None:
            by_uuid.setdefault(n.uuid, n)
    for node in sorted(nodes.values(), key=lambda n: n.path):
        if node.parent is None:
            continue
        parent = nodes.get(node.parent_path)
        if parent is None and node.parent_uuid in by_uuid and by_uuid[node.parent_uuid] is not node:
            parent = by_uuid[node.parent_uuid]          # names lost, identity kept: link by UUID
            node.parent, node.parent_path, node.link = parent.name, parent.path, "uuid"
        if parent is None:
            node.parent_found = False
            node.header_parent_dangling = True
            continue
        node.header_parent_dangling = node.header_parent is not None and node.header_parent != parent.name
        node.parent_uuid_matches = parent.raw or node.parent_uuid == parent.uuid
        parent.children.append(node)


def _roots(nodes):
    """blktap's pretty order: hidden roots, then the other roots, each by name; children
    non-hidden first, then hidden; nodes caught in a cycle last."""
    for n in nodes:
        n.children.sort(key=lambda c: (c.hidden != 0, c.path))
    reachable = set()

    def mark(n):
        if id(n) in reachable:
            return
        reachable.add(id(n))
        for c in n.children:
            mark(c)

    roots = [n for n in nodes if n.parent is None or not n.parent_found]
    roots.sort(key=lambda n: (n.hidden == 0, n.path))
    for r in roots:
        mark(r)
    rest = sorted((n for n in nodes if id(n) not in reachable), key=lambda n: n.path)
    for n in rest:
        if id(n) not in reachable:
            mark(n)
            roots.append(n)
    return roots


def walk(nodes):
    """(depth, node) in print order; a node seen twice (a cycle) is not repeated."""
    seen = set()

    def visit(n, depth):
        if id(n) in seen:
            return
        seen.add(id(n))
        yield depth, n
        for c in n.children:
            yield from visit(c, depth + 1)

    for n in nodes:
        yield from visit(n, 0)


def format_tree(nodes, pretty=True, verbose=False):
    """The scan output: a tree with ``pretty``, else one line per image in scan order."""
    if pretty:
        return "\n".join(n.line(d, verbose) for d, n in walk(nodes))
    flat = sorted((n for _, n in walk(nodes)), key=lambda n: n.order)
    return "\n".join(n.line(0, verbose) for n in flat)

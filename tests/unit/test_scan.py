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

"""converter.scan: ``vhd-util scan -p`` trees for XenServer images and SR directories."""

import json
import os
import uuid as uuidlib

from converter.scan import format_tree, scan_directory, scan_image
from tests.unit.test_check import MIB, make_chain, make_vhd, pack_shuffled

BASE = "79d0aca7-eda7-4d73-9238-c3b5c9378aa7"
CHILD_A = "691d986e-e84a-4ab4-9672-b6f9b3148cab"
CHILD_B = "838154db-db5c-42b7-8ec3-2ebb31f73683"
LONE = "1b10a183-ef8d-4c53-a031-b9aeeb38e0be"
BASE2 = "80c4d84c-8aea-4391-9d31-fcc2be388ce6"
CHILD_C = "0eaa0588-3668-4697-956d-bd6e98478585"


def size(path):
    return os.path.getsize(path)


def test_chain_tree_from_shuffled_tgz(tmp_path):
    paths = make_chain(tmp_path, 3, sizes=[16 * MIB, 16 * MIB, 8 * MIB])
    tgz = pack_shuffled(tmp_path / "image.tgz", paths, [1, 2, 0])
    nodes = scan_image(tgz)
    middle, leaf = nodes[0].children[0], nodes[0].children[0].children[0]
    assert format_tree(nodes) == "\n".join([
        f"vhd=2.vhd capacity={8 * MIB} size={size(paths[2])} hidden=1 parent=none",
        f"   vhd=1.vhd capacity={16 * MIB} size={size(paths[1])} hidden=1 parent=2.vhd "
        f"(header parent {middle.header_parent} not in image; linked by position)",
        f"      vhd=0.vhd capacity={16 * MIB} size={size(paths[0])} hidden=0 parent=1.vhd "
        f"(header parent {leaf.header_parent} not in image; linked by position)",
    ])
    assert leaf.link == "position" and leaf.header_parent_dangling and leaf.header_parent.endswith(".vhd")
    assert leaf.parent_uuid_matches is True and leaf.rank == 0
    assert format_tree(nodes, pretty=False).splitlines()[0].startswith("vhd=1.vhd ")   # archive order
    doc = [n.to_json() for n in nodes]
    json.dumps(doc)
    leaf_doc = doc[0]["children"][0]["children"][0]
    assert leaf_doc["name"] == "0.vhd"
    assert (leaf_doc["parent"], leaf_doc["link"], leaf_doc["header_parent"], leaf_doc["header_parent_dangling"]) \
        == ("1.vhd", "position", leaf.header_parent, True)


def test_chain_whose_header_names_its_member(tmp_path):
    """A header parent name that is the positional parent itself: only the link is noted."""
    paths = make_chain(tmp_path, 2)
    from tests.unit.test_check import rewrite_header
    rewrite_header(paths[0], lambda h: setattr(h, "parent_name", "1.vhd"))
    lines = format_tree(scan_image(tmp_path)).splitlines()
    assert lines[1].endswith(" parent=1.vhd (linked by position)")


def test_chain_with_missing_base_is_not_found(tmp_path):
    paths = make_chain(tmp_path, 2)
    os.unlink(paths[1])
    (line,) = format_tree(scan_image(tmp_path)).splitlines()
    assert line.startswith("vhd=0.vhd ") and line.endswith(".vhd (not found in scan)")


def _sr(tmp_path, with_junk=False):
    """A file SR like the seed listing: a hidden base with two children, another base with
    one child, and a lone VHD."""
    sr = tmp_path / "sr"
    sr.mkdir()
    for base in (BASE, BASE2):
        make_vhd(sr / f"{base}.vhd", uuid=uuidlib.UUID(base), hidden=True, size=(8 if base == BASE else 4) * MIB)
    for child, base in ((CHILD_B, BASE), (CHILD_A, BASE), (CHILD_C, BASE2)):
        make_vhd(sr / f"{child}.vhd", uuid=uuidlib.UUID(child), disk_type="differencing",
                 parent_uuid=uuidlib.UUID(base), parent_name=f"{base}.vhd",
                 size=(8 if base == BASE else 4) * MIB, writes=((4096, 512),))
    make_vhd(sr / f"{LONE}.vhd", size=2 * MIB)
    if with_junk:
        (sr / "0000-broken.vhd").write_bytes(b"\x01" * 3000)
    return sr


def _line(sr, name, capacity, hidden, parent, depth=0):
    return (f"{' ' * 3 * depth}vhd={name}.vhd capacity={capacity} size={size(sr / f'{name}.vhd')} "
            f"hidden={hidden} parent={parent + '.vhd' if parent else 'none'}")


def test_directory_forest_like_the_seed(tmp_path):
    sr = _sr(tmp_path)
    nodes = scan_directory(sr)
    assert format_tree(nodes) == "\n".join([
        _line(sr, BASE, 8 * MIB, 1, None),
        _line(sr, CHILD_A, 8 * MIB, 0, BASE, 1),
        _line(sr, CHILD_B, 8 * MIB, 0, BASE, 1),
        _line(sr, BASE2, 4 * MIB, 1, None),
        _line(sr, CHILD_C, 4 * MIB, 0, BASE2, 1),
        _line(sr, LONE, 2 * MIB, 0, None),
    ])
    assert all(c.link == "locator" and c.parent_uuid_matches for c in nodes[0].children)
    flat = format_tree(nodes, pretty=False).splitlines()
    assert [ln.split()[0] for ln in flat] == sorted(ln.split()[0] for ln in flat)   # scan (name) order
    json.dumps([n.to_json() for n in nodes])


def test_hidden_children_after_visible_ones(tmp_path):
    sr = _sr(tmp_path)
    from converter.writer import set_hidden
    set_hidden(sr / f"{CHILD_A}.vhd", True)
    children = [c.name for c in scan_directory(sr)[0].children]
    assert children == [f"{CHILD_B}.vhd", f"{CHILD_A}.vhd"]


def test_failures_with_and_without_continue(tmp_path):
    sr = _sr(tmp_path, with_junk=True)
    broken = sr / "0000-broken.vhd"
    lines = format_tree(scan_directory(sr, continue_on_failure=True)).splitlines()
    assert lines[0] == f"vhd={broken} scan-error=-22 error-message='opening file'"
    assert len(lines) == 7
    stopped = scan_directory(sr)
    assert format_tree(stopped) == f"vhd={broken} scan-error=-22 error-message='opening file'"
    assert stopped[0].detail


def test_pattern_and_missing_parent(tmp_path):
    sr = _sr(tmp_path)
    lines = format_tree(scan_directory(sr, pattern=f"{CHILD_A}*")).splitlines()
    assert lines == [_line(sr, CHILD_A, 8 * MIB, 0, BASE) + " (not found in scan)"]
    with_parents = format_tree(scan_directory(sr, pattern=f"{CHILD_A}*", scan_parents=True)).splitlines()
    assert with_parents == [_line(sr, BASE, 8 * MIB, 1, None), _line(sr, CHILD_A, 8 * MIB, 0, BASE, 1)]


def test_parent_found_by_name_then_uuid(tmp_path):
    sr = tmp_path / "sr"
    sr.mkdir()
    base = make_vhd(sr / "base.vhd", hidden=True)
    make_vhd(sr / "by-name.vhd", disk_type="differencing", parent_uuid=base, parent_name="base.vhd",
             locators=False)
    make_vhd(sr / "by-uuid.vhd", disk_type="differencing", parent_uuid=base, parent_name="renamed.vhd",
             locators=False)
    (root,) = scan_directory(sr)
    assert root.name == "base.vhd"
    assert {c.name: c.link for c in root.children} == {"by-name.vhd": "name", "by-uuid.vhd": "uuid"}
    assert [c.parent for c in root.children] == ["base.vhd", "base.vhd"]


def test_raw_parent_with_scan_parents(tmp_path):
    sr = tmp_path / "sr"
    sr.mkdir()
    (sr / "base.raw").write_bytes(b"\0" * MIB)
    make_vhd(sr / "child.vhd", disk_type="differencing", parent_uuid=uuidlib.UUID(int=0),
             parent_name="base.raw")
    lines = format_tree(scan_directory(sr, scan_parents=True)).splitlines()
    assert lines[0] == f"vhd=base.raw capacity={MIB} size={MIB} hidden=1 parent=none"
    assert lines[1].startswith("   vhd=child.vhd ") and lines[1].endswith(" parent=base.raw")

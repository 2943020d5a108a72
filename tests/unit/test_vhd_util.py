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

"""xen-vhd-util as blktap's vhd-util: the seed's manual pipeline, resize journals, bad inputs."""

import os
import subprocess
import sys
import tarfile

import pytest

from converter.builder import ImageBuilder, build_pattern
from converter.convert import convert_image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20


def env(**extra):
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(extra)
    return e


def run(*args, tool=None, **extra):
    cmd = [tool] if tool else [sys.executable, "-m", "converter.vhdutil"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, env=env(**extra))


@pytest.fixture
def vhd_util(tmp_path):
    """A ``vhd-util`` wrapper for xen-vhd-util, first on PATH (what Cinder finds)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "vhd-util"
    tool.write_text(f"#!/bin/sh\nexec {sys.executable} -m converter.vhdutil \"$@\"\n")
    tool.chmod(0o755)
    return str(tool)


def chain(depth, *, grow=(), partial=True, **opts):
    b = ImageBuilder(build_pattern(0, 4 * MiB + 512 * 3))
    for i in range(depth - 1):
        b.snapshot(size=b.size + grow[i] if i < len(grow) else None)
        b.write(i * 700_000 + 1000, build_pattern(i, 5000 if partial else 2 * MiB))
        b.write(b.size - 4096, b"\xab" * 4096)
    return b


CASES = {
    "two": (chain(2), {}),
    "three-grown": (chain(3, grow=(6 * MiB + 1024, 3 * MiB)), {}),
    "four-full-blocks": (chain(4, grow=(0, 2 * MiB), partial=False), {}),
    "preallocated-bat": (chain(3, grow=(40 * MiB,)), {"max_table_entries": 1 << 20}),
    "no-batmap-garbage": (chain(3, grow=(5 * MiB,)), {"batmap": False, "fill": b"\xee" * 512}),
}


def pipeline(directory, n, tool=None):
    """The seed's manual conversion, link by link."""
    paths = [os.path.join(directory, f"{i}.vhd") for i in range(n)]
    for i, (child, parent) in enumerate(zip(paths, paths[1:])):
        assert run("modify", "-n", child, "-p", parent, tool=tool).returncode == 0
        q = run("query", "-n", child, "-v", tool=tool)
        assert q.returncode == 0 and q.stdout.strip().isdigit(), q.stdout
        r = run("resize", "-n", parent, "-s", q.stdout.strip(), "-j", os.path.join(directory, f"j{i}"), tool=tool)
        assert r.returncode == 0, r.stdout
        c = run("coalesce", "-n", child, tool=tool)
        assert c.returncode == 0 and c.stdout.startswith("Coalesced "), c.stdout
    return paths[-1]


@pytest.mark.parametrize("case", sorted(CASES))
def test_pipeline_equals_convert(tmp_path, case, vhd_util):
    builder, opts = CASES[case]
    tgz = builder.build(str(tmp_path / "image.tgz"), **opts)
    convert_image(tgz, str(tmp_path / "expected.raw"))
    work = tmp_path / "x"
    work.mkdir()
    with tarfile.open(tgz) as t:
        t.extractall(work, filter="data")
    base = pipeline(str(work), len(builder.layers), tool=vhd_util if case == "two" else None)
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", base, str(tmp_path / "got.raw")], check=True)
    got = (tmp_path / "got.raw").read_bytes()
    assert got == (tmp_path / "expected.raw").read_bytes() == builder.expected()
    # the project's own check calls the coalesced base valid, and libvhdi reads the same disk
    check = subprocess.run([sys.executable, "-c", "import sys; from converter.cli import main; sys.exit(main())",
                            "check", base], capture_output=True, text=True, env=env())
    # (batmap-less inputs are tap 1.1, which carries no batmap; bitmap-clear garbage is a warning)
    assert check.returncode == 0, check.stdout + check.stderr
    import pyvhdi
    f = pyvhdi.file()
    f.open(base)
    try:
        n = f.get_media_size()      # libvhdi takes the original size (see test_crosscheck)
        assert n <= len(got) and f.read_buffer(n) == got[:n]
    finally:
        f.close()


def _members(tmp_path, builder, **opts):
    return builder.write_members(str(tmp_path), **opts)


def test_resize_same_size_is_noop_and_journal_removed(tmp_path):
    paths = _members(tmp_path, chain(2))
    before = open(paths[1], "rb").read()
    # 4 MiB + 1536 bytes: query -v says 4, and resizing to 4 MiB leaves the file alone
    r = run("resize", "-n", paths[1], "-s", (4 * MiB + 1536) >> 20, "-j", tmp_path / "j")
    assert r.returncode == 0
    assert open(paths[1], "rb").read() == before and not (tmp_path / "j").exists()


@pytest.mark.parametrize("opts", [{}, {"max_table_entries": 1 << 20}])
def test_killed_resize_reverts_byte_for_byte(tmp_path, opts):
    paths = _members(tmp_path, chain(2), **opts)
    base = paths[1]
    before = open(base, "rb").read()
    j = tmp_path / "journal"
    r = run("resize", "-n", base, "-s", 4000, "-j", j, XEN_VHD_UTIL_FAULT="resize")
    assert r.returncode == -9 and j.exists()
    if not opts:
        assert open(base, "rb").read() != before      # killed half-way: the file was changed
    r = run("revert", "-n", base, "-j", j)
    assert r.returncode == 0, r.stdout
    assert open(base, "rb").read() == before and not j.exists()


def test_existing_journal_refused(tmp_path):
    paths = _members(tmp_path, chain(2))
    (tmp_path / "j").write_bytes(b"x")
    before = open(paths[1], "rb").read()
    r = run("resize", "-n", paths[1], "-s", 100, "-j", tmp_path / "j")
    assert (r.returncode, r.stdout) == (17, "creating journal failed: -17\n")
    assert open(paths[1], "rb").read() == before


def test_query_outputs(tmp_path):
    paths = _members(tmp_path, chain(3, grow=(3 * MiB,)))
    assert run("modify", "-n", paths[0], "-p", paths[1]).returncode == 0
    assert run("modify", "-n", paths[1], "-p", paths[2]).returncode == 0
    r = run("query", "-n", paths[0], "-v", "-p", "-f", "-d")
    assert r.returncode == 0
    assert r.stdout == f"7\n{paths[1]}\nhidden: 0\nchain depth: 3\n"
    assert run("query", "-n", paths[2], "-p").stdout == f"{paths[2]} has no parent\n"


@pytest.mark.parametrize("args, code, first", [
    (["query", "-v"], 22, "options: <-n name>"),
    (["query", "-n", "/nonexistent/x.vhd", "-v"], 2, "error opening /nonexistent/x.vhd: -2"),
    (["resize", "-n", "F", "-s", "abc", "-j", "J"], 22, "options: <-n name> <-s size (in MB)>"),
    (["resize", "-n", "F", "-s", "10"], 22, "options: <-n name> <-s size (in MB)>"),
    (["coalesce"], 22, "options: <-n name>"),
    (["modify", "-p", "x"], 22, "options: <-n name>"),
    (["revert", "-n", "F"], 22, "options: <-n name> <-j journal>"),
])
def test_bad_inputs(args, code, first):
    r = run(*args)
    assert r.returncode == code and r.stdout.startswith(first) and r.stdout.count("\n") == 1, r.stdout
    assert "Traceback" not in r.stderr


def test_not_a_vhd(tmp_path):
    f = tmp_path / "junk.vhd"
    f.write_bytes(b"\0" * 4096)
    r = run("query", "-n", f, "-v")
    assert r.returncode == 22 and r.stdout.startswith(f"error opening {f}: -22") and r.stdout.count("\n") == 1


def test_create_snapshot_set(tmp_path):
    base, snap = tmp_path / "b.vhd", tmp_path / "s.vhd"
    assert run("create", "-n", base, "-s", 8).returncode == 0
    assert run("snapshot", "-n", snap, "-p", base).returncode == 0
    assert run("set", "-n", base, "-f", "hidden", "-v", 1).returncode == 0
    assert run("query", "-n", base, "-f").stdout == "hidden: 1\n"
    assert run("query", "-n", snap, "-v", "-p").stdout == f"8\n{base}\n"
    out = subprocess.run(["qemu-img", "info", "-f", "vpc", str(snap)], capture_output=True, text=True)
    assert out.returncode == 0 and "8 MiB" in out.stdout
    assert run("create", "-n", base, "-s", 8).returncode == 17


def test_invoked_as_vhd_util_symlink(tmp_path):
    """The console script under the name vhd-util (a symlink) behaves the same."""
    script = tmp_path / "xen-vhd-util"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom converter.vhdutil.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    link = tmp_path / "vhd-util"
    os.symlink(script, link)
    r = subprocess.run([str(link)], capture_output=True, text=True, env=env())
    assert r.returncode == 0 and r.stdout.startswith("usage: vhd-util COMMAND")
    r = subprocess.run([str(link), "query", "-n", str(tmp_path / "none"), "-v"], capture_output=True, text=True,
                       env=env())
    assert (r.returncode, r.stdout) == (2, f"error opening {tmp_path / 'none'}: -2\n")


def test_coalesce_refusals(tmp_path):
    paths = _members(tmp_path, chain(2))
    r = run("coalesce", "-n", paths[1])
    assert (r.returncode, r.stdout) == (22, "coalescing of non-differencing disks is not supported\n")
    before = [open(p, "rb").read() for p in paths]
    r = run("coalesce", "-n", paths[0])          # the builder's locators name a missing file
    assert (r.returncode, r.stdout) == (2, f"error finding {paths[0]} parent: -2\n")
    assert [open(p, "rb").read() for p in paths] == before


def test_revert_refuses_a_torn_journal(tmp_path):
    paths = _members(tmp_path, chain(2))
    j = tmp_path / "j"
    j.write_bytes(b"XVHDJRN1" + b"\0" * 60)
    before = open(paths[1], "rb").read()
    r = run("revert", "-n", paths[1], "-j", j)
    assert r.returncode == 22 and r.stdout.startswith("opening journal failed: -22") and r.stdout.count("\n") == 1
    assert open(paths[1], "rb").read() == before


def test_modify_parent_rewrites_header_and_locators(tmp_path):
    from converter.header import HEADER_SIZE, PLAT_MACX, PLAT_W2KU, DynamicHeader
    from converter.writer import read_footer
    paths = _members(tmp_path, chain(2))
    assert run("modify", "-n", paths[0], "-p", paths[1]).returncode == 0
    with open(paths[0], "rb") as f:
        raw = f.read()
    h = DynamicHeader.unpack(raw[512:512 + HEADER_SIZE])
    assert h.computed_checksum == h.checksum
    assert h.parent_uuid == read_footer(paths[1]).uuid and h.parent_name == "1.vhd"
    assert h.parent_timestamp == (int(os.stat(paths[1]).st_mtime) - 946684800)
    locs = {loc.code: raw[loc.data_offset:loc.data_offset + loc.data_length] for loc in h.locators if loc.used}
    assert locs == {PLAT_MACX: b"file://./1.vhd", PLAT_W2KU: ".\\1.vhd".encode("utf-16-le")}


def test_coalesce_into_a_smaller_parent(tmp_path):
    """blktap fails with -ERANGE when the child has data past the parent's end (after writing
    the blocks before it); here the parent is left as it was. A parent short only by the
    sub-MiB tail that ``query -v`` rounds away is grown, so the pipeline keeps that tail."""
    b = ImageBuilder(build_pattern(0, 3 * MiB))
    b.snapshot(size=8 * MiB + 1024)
    b.write(0, b"\x01" * 4096)
    b.write(8 * MiB, b"\x02" * 1024)              # in the tail past the whole MiB
    paths = _members(tmp_path, b)
    assert run("modify", "-n", paths[0], "-p", paths[1]).returncode == 0
    before = open(paths[1], "rb").read()
    r = run("coalesce", "-n", paths[0])
    assert (r.returncode, r.stdout) == (34, "error coalescing: -34\n")
    assert open(paths[1], "rb").read() == before
    assert run("resize", "-n", paths[1], "-s", "8", "-j", tmp_path / "j").returncode == 0
    r = run("coalesce", "-n", paths[0])
    assert (r.returncode, r.stdout) == (0, "Coalesced 10 sectors")
    out = tmp_path / "out.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", paths[1], str(out)], check=True)
    assert out.read_bytes() == b.expected()

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

"""xen-vhd-util resize and coalesce killed at random points: nothing is lost, nothing half-done
passes for valid.

The fault hook (XEN_VHD_UTIL_FAULT=write:N) kills the process just before its Nth write to an
image or a journal, N drawn at random per trial. In-process trials raise instead of dying at
the same point (the files hold exactly what a SIGKILL there would leave: every write is a
syscall, nothing is buffered); a few trials per operation are real SIGKILLs of a subprocess.
After each kill:
- resize: the file is unchanged, fully resized, or ``revert -j`` restores it byte for byte;
- coalesce: the parent is unchanged, fully coalesced, or ``check`` calls it invalid saying
  "interrupted coalesce"; coalescing again then gives the complete disk.

    XEN_VHD_KILL_TRIALS=500 pytest tests/unit/test_vhd_util_kill.py    # tox -e kill
"""

import collections
import contextlib
import io
import os
import random
import subprocess
import sys

import pytest

from converter.builder import ImageBuilder, build_pattern
from converter.chain import ChainReader
from converter.vhdutil import cli
from converter.vhdutil import image as im

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20
TRIALS = int(os.environ.get("XEN_VHD_KILL_TRIALS", "50"))


class Killed(BaseException):
    """Raised where SIGKILL would land; no handler of the CLI catches it."""


def _die():
    raise Killed


def vhd_util(argv, kill_at=None):
    """(exit code or -9, stdout, writes made) of one in-process xen-vhd-util run."""
    im.arm(kill_at, _die)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            rc = cli.main([str(a) for a in argv])
    except Killed:
        rc = -9
    finally:
        writes = im.writes_done()
        im.arm(None)
    return rc, out.getvalue(), writes


def vhd_util_killed(argv, kill_at):
    """The same run in a subprocess that the hook really SIGKILLs."""
    env = dict(os.environ, PYTHONPATH=ROOT, XEN_VHD_UTIL_FAULT=f"write:{kill_at}")
    p = subprocess.run([sys.executable, "-m", "converter.vhdutil", *map(str, argv)],
                       capture_output=True, text=True, env=env)
    return p.returncode, p.stdout


def _chain(grow=0, base=4 * MiB + 512 * 3, **opts):
    b = ImageBuilder(build_pattern(0, base))
    b.snapshot(size=b.size + grow if grow else None)
    b.write(700_000 + 1000, build_pattern(1, 5000))
    b.write(2 * MiB - 1024, build_pattern(2, 2 * MiB + 1024))     # a full block and partial ones
    b.write(b.size - 4096, b"\xab" * 4096)
    return b, opts


SCENARIOS = {
    "table-grows": (_chain(), 40),
    "preallocated-bat": (_chain(max_table_entries=1 << 20), 40),
    "no-batmap": (_chain(batmap=False, fill=b"\xee" * 512), 12),
}
COALESCE = {
    "same-size": _chain(),
    # a parent short by a sub-MiB tail (query -v rounds down) that ends on a block boundary:
    # coalesce grows its BAT
    "parent-grows": _chain(grow=100 * 1024, base=4 * MiB),
    "no-batmap": _chain(batmap=False),
}


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _raw(path):
    with ChainReader([str(path)]) as r:
        return r.read(0, r.size)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Per scenario: the files before, and after one uninterrupted run, and its write count."""
    out = {}
    for name, ((builder, opts), mib) in SCENARIOS.items():
        d = tmp_path_factory.mktemp(f"resize-{name}")
        base = builder.write_members(str(d), **opts)[-1]
        before = _read(base)
        rc, text, writes = vhd_util(["resize", "-n", base, "-s", mib, "-j", d / "j"])
        assert rc == 0, text
        out[("resize", name)] = dict(dir=d, files={"base": before}, done={"base": _read(base)},
                                     writes=writes, argv=["resize", "-n", base, "-s", mib, "-j", d / "j"])
    for name, (builder, opts) in COALESCE.items():
        d = tmp_path_factory.mktemp(f"coalesce-{name}")
        leaf, base = builder.write_members(str(d), **opts)
        assert vhd_util(["modify", "-n", leaf, "-p", base])[0] == 0
        files = {"leaf": _read(leaf), "base": _read(base)}
        rc, text, writes = vhd_util(["coalesce", "-n", leaf])
        assert rc == 0 and text.startswith("Coalesced "), text
        out[("coalesce", name)] = dict(dir=d, files=files, done={"base": _read(base)}, writes=writes,
                                       raw=_raw(base), argv=["coalesce", "-n", leaf])
    return out


def _reset(case):
    d = case["dir"]
    for f in os.listdir(d):
        os.unlink(d / f)
    names = {"base": "1.vhd", "leaf": "0.vhd"}
    for role, data in case["files"].items():
        _write(d / names[role], data)
    return d / "1.vhd"


def verify_resize(case, outcomes):
    base, j = case["dir"] / "1.vhd", case["dir"] / "j"
    now, before = _read(base), case["files"]["base"]
    if not j.exists():
        assert now in (before, case["done"]["base"]), "changed without a journal"
        outcomes["unchanged" if now == before else "done"] += 1
        return
    rc, text, _ = vhd_util(["revert", "-n", base, "-j", j])
    if rc == 0:
        assert _read(base) == before and not j.exists(), "revert -j did not restore the file"
        outcomes["unchanged" if now == before else "done" if now == case["done"]["base"] else "reverted"] += 1
    else:
        # killed while the journal was being written: refused in one line, file untouched
        assert now == before and text.count("\n") == 1 and "not a complete" in text, text
        outcomes["unchanged, journal refused"] += 1


def verify_coalesce(case, outcomes):
    d = case["dir"]
    base = d / "1.vhd"
    assert _read(d / "0.vhd") == case["files"]["leaf"], "coalesce changed the child"
    now = _read(base)
    if now in (case["files"]["base"], case["done"]["base"]):
        outcomes["unchanged" if now == case["files"]["base"] else "done"] += 1
        return
    rc, text, _ = vhd_util(["check", "-n", base])
    assert rc == 22 and "interrupted coalesce" in text, f"a half-coalesced parent passes check:\n{text}"
    rc, text, _ = vhd_util(case["argv"])
    if rc == 0:
        rc, text, _ = vhd_util(["check", "-n", base])
        assert rc == 0, text
        assert _raw(base) == case["raw"], "coalescing again did not give the complete disk"
        outcomes["marked, completed by coalescing again"] += 1
    else:
        # killed while coalesce grew the parent's BAT (Cinder resizes first): the file no longer opens
        assert text.count("\n") <= 1 and "error opening" in text, text
        outcomes["marked, not resumable (grown by coalesce)"] += 1


VERIFY = {"resize": verify_resize, "coalesce": verify_coalesce}


def _trials(prepared, op, n, seed, run):
    rnd = random.Random(seed)
    cases = sorted(k for k in prepared if k[0] == op)
    outcomes = collections.Counter()
    for _ in range(n):
        key = rnd.choice(cases)
        case = prepared[key]
        _reset(case)
        kill_at = rnd.randint(1, case["writes"])
        rc = run(case["argv"], kill_at)[0]
        assert rc == -9, f"{key} survived its kill at write {kill_at}"
        VERIFY[op](case, outcomes)
        outcomes[key[1]] += 1
    return outcomes


@pytest.mark.parametrize("op", ["resize", "coalesce"])
def test_killed_at_random_writes_loses_nothing(prepared, op, record_property):
    outcomes = _trials(prepared, op, TRIALS, seed=15, run=vhd_util)
    record_property("outcomes", dict(outcomes))
    print(op, dict(outcomes))
    assert sum(outcomes[k[1]] for k in prepared if k[0] == op) == TRIALS


@pytest.mark.parametrize("op", ["resize", "coalesce"])
def test_real_sigkill_leaves_the_same_guarantee(prepared, op):
    n = max(5, TRIALS // 10)
    outcomes = _trials(prepared, op, n, seed=16, run=vhd_util_killed)
    print(op, "SIGKILL", dict(outcomes))


def test_every_write_point_of_each_operation(prepared):
    """Not only random ones: each write of every scenario, once."""
    for key, case in sorted(prepared.items()):
        outcomes = collections.Counter()
        for kill_at in range(1, case["writes"] + 1):
            _reset(case)
            assert vhd_util(case["argv"], kill_at)[0] == -9
            VERIFY[key[0]](case, outcomes)
        assert outcomes, key


def test_coalesce_refuses_a_parent_marked_by_another_child(prepared, tmp_path):
    case = prepared[("coalesce", "same-size")]
    _reset(case)
    assert vhd_util(case["argv"], kill_at=4)[0] == -9      # marked, part-way
    other = ImageBuilder(build_pattern(5, 4 * MiB + 512 * 3))
    other.snapshot()
    other.write(0, b"\x01" * 4096)
    leaf = other.write_members(str(tmp_path))[0]
    assert vhd_util(["modify", "-n", leaf, "-p", case["dir"] / "1.vhd"])[0] == 0
    rc, text, _ = vhd_util(["coalesce", "-n", leaf])
    assert rc == 16 and "unfinished coalesce" in text and text.count("\n") == 1, text


def test_fixed_disk_grown_reads_zeros_past_its_old_end_and_reverts(tmp_path):
    """The old footer of a grown fixed disk is data space now: zeroed, not left as disk content."""
    f, j = tmp_path / "f.vhd", tmp_path / "j"
    assert vhd_util(["create", "-n", f, "-s", 1, "-r"])[0] == 0
    before = _read(f)
    rc, text, writes = vhd_util(["resize", "-n", f, "-s", 2, "-j", j])
    assert rc == 0, text
    assert _raw(f) == bytes(2 * MiB)
    for kill_at in range(1, writes + 1):
        _write(f, before)
        j.unlink(missing_ok=True)
        assert vhd_util(["resize", "-n", f, "-s", 2, "-j", j], kill_at)[0] == -9
        if j.exists():      # complete: restores; cut short (file untouched): refused
            vhd_util(["revert", "-n", f, "-j", j])
        assert _read(f) == before, f"killed at write {kill_at}"

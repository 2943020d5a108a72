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

"""xen-vhd-util check / read / scan through the command line, on images from the builder."""

import subprocess
import sys
import tarfile

import pytest

from converter.builder import ImageBuilder, build_pattern

MiB = 1 << 20


def vhd_util(*args):
    return subprocess.run([sys.executable, "-m", "converter.vhdutil", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    d = tmp_path_factory.mktemp("inspect")
    b = ImageBuilder(build_pattern(3, 2 * MiB))
    b.snapshot(size=8 * MiB)
    b.write(3 * MiB, b"\x42" * 4096)
    image = b.build(str(d / "image.tgz"))
    with tarfile.open(image) as tar:
        tar.extractall(d / "x", filter="data")
    return d / "x"


def test_check_calls_a_builder_member_valid(chain):
    proc = vhd_util("check", "-n", chain / "1.vhd")
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout == f"{chain / '1.vhd'} is valid\n"


def test_check_of_an_unlinked_child_names_the_missing_parent_until_modify(chain):
    """As the seed, in blktap 4.0.8's words (checked against it): invalid, then relinked, valid."""
    leaf = chain / "0.vhd"
    proc = vhd_util("check", "-n", leaf)
    assert proc.returncode == 2              # -ENOENT from resolving the locator, as blktap exits
    first, verdict, *dump = proc.stdout.splitlines()
    assert first.startswith("error resolving ./") and first.endswith(".vhd: -2")
    assert verdict == f"{leaf} appears invalid; dumping metadata"
    assert dump[:2] == ["VHD Footer Summary:", "-------------------"]     # read -p's dump follows
    assert vhd_util("modify", "-n", leaf, "-p", chain / "1.vhd").returncode == 0
    proc = vhd_util("check", "-n", leaf)
    assert (proc.returncode, proc.stdout) == (0, f"{leaf} is valid\n")


def test_check_refuses_what_is_not_a_vhd(chain, tmp_path):
    bad = tmp_path / "bad.vhd"
    bad.write_bytes(b"not a vhd" * 512)
    proc = vhd_util("check", "-n", bad)
    assert proc.returncode == 22
    # blktap 4.0.8's first three lines on this file (its dump then prints the garbage as fields)
    assert proc.stdout.splitlines()[:3] == ["primary footer invalid: invalid cookie",
                                            f"{bad} appears invalid; dumping metadata",
                                            f"Failed to open {bad}: -22"]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_check_and_read_name_a_missing_file(tmp_path):
    nope = tmp_path / "nope.vhd"
    for cmd, said in ((["check", "-n"], f"cannot stat {nope}: 2\n"),      # blktap 4.0.8's words
                      (["read", "-p", "-n"], f"Failed to open {nope}: -2\n\n{nope} appears invalid; "
                                             "dumping headers\n\n")):
        proc = vhd_util(*cmd, nope)
        assert (proc.returncode, proc.stdout) == (2, said)


def test_usage_without_a_name():
    for cmd in ("check", "read"):
        proc = vhd_util(cmd)
        assert proc.returncode == 22 and proc.stdout.startswith("options: -n")


def test_read_dumps_footer_and_header(chain):
    proc = vhd_util("read", "-p", "-n", chain / "0.vhd")
    assert proc.returncode == 0
    assert "VHD Footer Summary:" in proc.stdout and "Disk type           : Differencing hard disk" in proc.stdout
    assert "Current disk size   : 8 MB (8388608 Bytes)" in proc.stdout


def test_scan_prints_the_forest_as_blktap(chain):
    files = [chain / n for n in ("0.vhd", "1.vhd")]
    proc = vhd_util("scan", "-p", "-m", "*.vhd", *files)
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    # the parent names inside are <uuid>.vhd, not these files: the leaf stands alone, as in an SR
    assert all(line.lstrip().startswith("vhd=") for line in lines)
    assert any("vhd=1.vhd capacity=2097152" in line and "parent=none" in line for line in lines)
    assert any("vhd=0.vhd capacity=8388608" in line for line in lines)
    only = vhd_util("scan", "-p", "-m", "1.*", *files)
    assert only.stdout.count("vhd=") == 1


def test_scan_of_an_lvm_volume_group_says_it_is_unsupported(chain):
    proc = vhd_util("scan", "-l", "VG_XenStorage-x", "-m", "VHD-*", "-p")
    assert proc.returncode == 38 and "LVM" in proc.stdout


def test_check_validates_the_parent_each_locator_names(tmp_path):
    """As blktap 4.0.8 (checked against it): the parent must open as a VHD and carry the
    child's parent UUID (unless -I); -p walks the chain and says which parent failed."""
    import shutil
    b = ImageBuilder(build_pattern(4, 2 * MiB))
    for _ in range(2):
        b.snapshot()
        b.write(MiB, b"\x42" * 4096)
    d = tmp_path / "c"
    with tarfile.open(b.build(str(tmp_path / "image.tgz"))) as tar:
        tar.extractall(d, filter="data")
    for child, parent in (("0.vhd", "1.vhd"), ("1.vhd", "2.vhd")):
        assert vhd_util("modify", "-n", d / child, "-p", d / parent).returncode == 0
    proc = vhd_util("check", "-n", d / "0.vhd", "-p")
    assert (proc.returncode, proc.stdout) == (0, "".join(f"{d / n} is valid\n" for n in ("0.vhd", "1.vhd", "2.vhd")))
    other = tmp_path / "other.vhd"
    assert vhd_util("create", "-n", other, "-s", "8").returncode == 0
    shutil.copy(d / "2.vhd", tmp_path / "2.keep")
    shutil.copy(other, d / "2.vhd")
    proc = vhd_util("check", "-n", d / "1.vhd")
    assert proc.returncode == 22
    assert proc.stdout.splitlines()[:2] == [f"invalid parent {d / '2.vhd'}: invalid parent uuid",
                                            f"{d / '1.vhd'} appears invalid; dumping metadata"]
    assert vhd_util("check", "-n", d / "1.vhd", "-I").returncode == 0
    proc = vhd_util("check", "-n", d / "0.vhd", "-p")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 22 and lines[:2] == [f"{d / '0.vhd'} is valid",
                                                   f"invalid parent {d / '2.vhd'}: invalid parent uuid"]
    assert lines[-1] == "error checking parents: -22"
    with open(d / "2.vhd", "wb") as f:
        f.write(b"\0" * 4096)                     # no VHD at all: libvhd cannot open it
    proc = vhd_util("check", "-n", d / "1.vhd")
    assert proc.stdout.splitlines()[0] == f"invalid parent {d / '2.vhd'}: error opening parent"

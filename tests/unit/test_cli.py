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

"""The xen-vhd command as users run it: every subcommand, --json, stdout, exit codes."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from converter.builder import ImageBuilder
from tests.conftest import MIB, disk_bytes


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "converter.cli", *map(str, args)], capture_output=True, **kw)


@pytest.fixture(scope="module")
def backup(tmp_path_factory):
    """A seed-shaped backup: 40 MiB base, resize layer to 128 MiB, leaf with 'somefile'."""
    d = tmp_path_factory.mktemp("backup")
    b = ImageBuilder(disk_bytes(40 * MIB, 1))
    b.snapshot(size=128 * MIB)
    b.snapshot()
    b.write(45 * MIB + 3 * 512, disk_bytes(10000 * 1024, 2))
    image = d / "snap.tgz"
    b.build(image, order="shuffle")
    return b, image


def test_convert_prints_a_summary_and_writes_the_disk(backup, tmp_path):
    b, image = backup
    r = run("convert", image, tmp_path / "rawdisk", text=True)
    assert r.returncode == 0, r.stderr
    assert "134217728 bytes" in r.stdout and "3 member(s)" in r.stdout
    assert hashlib.md5((tmp_path / "rawdisk").read_bytes()).hexdigest() == b.expected_md5()


def test_convert_to_a_pipe(backup):
    b, image = backup
    p = subprocess.run(f"{sys.executable} -m converter.cli convert {image} - | md5sum", shell=True,
                       capture_output=True, text=True)
    assert p.stdout.split()[0] == b.expected_md5()


def test_convert_to_stdout_redirected_to_a_file(backup, tmp_path):
    b, image = backup
    with open(tmp_path / "o.raw", "wb") as out:
        r = subprocess.run([sys.executable, "-m", "converter.cli", "convert", str(image), "-"], stdout=out)
    assert r.returncode == 0
    assert hashlib.md5((tmp_path / "o.raw").read_bytes()).hexdigest() == b.expected_md5()


def test_convert_progress_and_json(backup, tmp_path):
    _, image = backup
    r = run("convert", "--progress", "--json", image, tmp_path / "p.raw", text=True)
    assert r.returncode == 0
    assert "100.0%" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["virtual_size"] == 128 * MIB and [m["position"] for m in doc["members"]] == [0, 1, 2]


def test_convert_to_vhd(backup, tmp_path):
    b, image = backup
    assert run("convert", "-f", "vhd", image, tmp_path / "c.vhd").returncode == 0
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(tmp_path / "c.vhd"),
                    str(tmp_path / "q.raw")], check=True)
    assert hashlib.md5((tmp_path / "q.raw").read_bytes()).hexdigest() == b.expected_md5()


def test_scan_check_info_json(backup):
    _, image = backup
    scan = run("scan", image, text=True)
    lines = scan.stdout.splitlines()
    assert lines[0].startswith("vhd=2.vhd capacity=41943040 ") and "parent=none" in lines[0]
    assert lines[2].startswith("      vhd=0.vhd capacity=134217728 ")
    check = run("check", "--json", image, text=True)
    assert check.returncode == 0 and json.loads(check.stdout)["ok"] is True
    info = run("info", image, text=True)
    assert info.stdout.count("Differencing hard disk") == 2 and "Dynamic hard disk" in info.stdout
    assert len(json.loads(run("info", "--json", image).stdout)) == 3
    assert len(json.loads(run("scan", "--json", image).stdout)) == 1     # one root


def test_check_fails_with_exit_1(backup, tmp_path):
    _, image = backup
    bad = tmp_path / "bad"
    bad.mkdir()
    subprocess.run(["tar", "-xzf", str(image), "-C", str(bad)], check=True)
    os.remove(bad / "1.vhd")
    r = run("check", bad, text=True)
    assert r.returncode == 1 and "missing: 1.vhd" in r.stdout


def test_read_bytes_through_the_chain(backup):
    b, image = backup
    off = 45 * MIB + 3 * 512 - 8
    r = run("read", "--offset", off, "--length", 64, image)
    assert r.returncode == 0 and r.stdout == b.expected()[off:off + 64]
    hexed = run("read", "-x", "--offset", "1M", "--length", "32", image, text=True)
    assert hexed.stdout.startswith("000000100000  ")


def test_build_for_a_real_cloud(tmp_path):
    base = tmp_path / "disk.raw"
    base.write_bytes(disk_bytes(8 * MIB, 5))
    out = tmp_path / "img.tgz"
    r = run("build", out, "--base", base, "--resize", "64M", "--pattern", "9M:100000", "--json", text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["members"] == 3 and doc["virtual_size"] == 64 * MIB
    conv = run("convert", out, tmp_path / "img.raw")
    assert conv.returncode == 0
    data = (tmp_path / "img.raw").read_bytes()
    assert hashlib.md5(data).hexdigest() == doc["expected_md5"]
    assert data[9 * MIB:9 * MIB + 16] == b"xv@000000900000\n"


def test_usage_errors_exit_2(tmp_path):
    assert run("convert").returncode == 2
    r = run("read", "--offset", "lots", tmp_path, text=True)
    assert r.returncode == 2 and "not a size" in r.stderr
    r = run("build", tmp_path / "o.tgz", "--base", tmp_path / "missing.raw", text=True)
    assert r.returncode == 2 and "no such raw disk" in r.stderr


@pytest.fixture
def loop_device(tmp_path):
    """A 160 MiB loop device full of 0xFF, or a skip where loop devices are not available."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for a loop device")
    backing = tmp_path / "device.img"
    with open(backing, "wb") as f:
        for _ in range(160):
            f.write(b"\xff" * MIB)
    r = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"no loop device: {r.stderr.strip()}")
    dev = r.stdout.strip()
    yield dev
    subprocess.run(["losetup", "-d", dev])


def test_convert_to_a_block_device_really_zeroes(backup, loop_device):
    b, image = backup
    r = run("convert", image, loop_device, text=True)
    assert r.returncode == 0, r.stderr
    with open(loop_device, "rb") as f:
        got = f.read(128 * MIB)
        rest = f.read()
    assert hashlib.md5(got).hexdigest() == b.expected_md5()
    assert rest == b"\xff" * (32 * MIB)         # beyond the disk: left alone


def test_device_too_small(backup, tmp_path, loop_device):
    b = ImageBuilder(bytes(MIB))
    b.snapshot(size=512 * MIB)
    image = tmp_path / "big.tgz"
    b.build(image)
    r = run("convert", image, loop_device, text=True)
    assert r.returncode == 1 and "device holds" in r.stderr


def test_vhd_to_a_pipe_is_refused_before_any_work(backup, tmp_path):
    _, image = backup
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p = subprocess.run(f"{sys.executable} -m converter.cli convert -f vhd {image} - | cat", shell=True,
                       capture_output=True, text=True, env=env)
    assert p.stderr.strip() == "xen-vhd: output: a VHD is written to a regular file; give a file name"
    assert p.stdout == "" and os.listdir(tmp_path) == []           # no temporary file left


def test_vhd_to_stdout_redirected_to_a_file(backup, tmp_path):
    b, image = backup
    with open(tmp_path / "o.vhd", "wb") as out:
        r = subprocess.run([sys.executable, "-m", "converter.cli", "convert", "-f", "vhd", str(image), "-"],
                           stdout=out)
    assert r.returncode == 0
    assert run("check", tmp_path / "o.vhd").returncode == 0
    assert run("convert", tmp_path / "o.vhd", tmp_path / "o.raw").returncode == 0
    assert hashlib.md5((tmp_path / "o.raw").read_bytes()).hexdigest() == b.expected_md5()

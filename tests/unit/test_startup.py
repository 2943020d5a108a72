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

"""Start-up stays lean: a conversion must not import what it does not use (each of these cost
milliseconds of every xen-vhd run; see README, Performance). Checked by module, not by time."""

import json
import subprocess
import sys

import pytest

from converter.builder import ImageBuilder
from tests.conftest import MIB, disk_bytes

HEAVY = {"dataclasses", "inspect", "tarfile", "tempfile", "shutil", "random", "typing"}
LOADED = """
import json, sys
from converter import cli
code = cli.main(sys.argv[1:])
print(json.dumps(sorted(sys.modules)))
sys.exit(code)
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp("lean")
    b = ImageBuilder(disk_bytes(4 * MIB, 3))
    b.snapshot()
    b.write(MIB, disk_bytes(64 * 1024, 4))
    b.build(d / "i.tgz")
    members = d / "members"
    members.mkdir()
    b.write_members(members)
    return d


def loaded(*argv):
    run = subprocess.run([sys.executable, "-c", LOADED, *map(str, argv)], capture_output=True, text=True,
                         check=True)
    return set(json.loads(run.stdout.splitlines()[-1]))


def test_converting_extracted_files_imports_nothing_heavy(image, tmp_path):
    modules = loaded("convert", image / "members", tmp_path / "o.raw")
    assert "converter.convert" in modules
    # argparse imports shutil to size its help; everything else here is ours to keep out
    assert not (modules & HEAVY - {"shutil"}), modules & HEAVY
    assert not any(m == "isal" or m.startswith(("isal.", "converter.tarheader")) for m in modules)


def test_converting_a_tgz_imports_nothing_heavy_but_the_gzip_library(image, tmp_path):
    modules = loaded("convert", image / "i.tgz", tmp_path / "o.raw")
    assert "converter.gzstream" in modules and "converter.tarheader" in modules
    # isal's igzip module imports typing; nothing else heavy
    assert not (modules & HEAVY - {"shutil", "typing"}), modules & HEAVY
    assert "rapidgzip" not in modules          # the parallel decoder only when XEN_VHD_GZIP asks

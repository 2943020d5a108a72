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

"""xen-vhd-util against outputs recorded from blktap's own vhd-util (tests/data/blktap/).

``record.sh`` says how expected.txt was made; every command line of commands.txt runs here in
the same order on the same chain, and what xen-vhd-util prints and exits with must be what
blktap printed and exited with, line for line.
"""

import contextlib
import io
import os
import tarfile

import pytest

from converter.vhdutil.cli import main

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "blktap")


def recorded():
    """[(command line, expected output)] from expected.txt."""
    with open(os.path.join(DATA, "expected.txt")) as f:
        text = f.read()
    records = []
    for chunk in text.split("$ vhd-util ")[1:]:
        line, _, out = chunk.partition("\n")
        records.append((line, out))
    return records


def test_the_record_covers_every_command_line():
    with open(os.path.join(DATA, "commands.txt")) as f:
        lines = [ln.rstrip("\n") for ln in f if ln.strip() and not ln.startswith("#")]
    assert [line for line, _ in recorded()] == lines


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """Each recorded command run by xen-vhd-util in order: {index: (expected, got)}."""
    work = tmp_path_factory.mktemp("blktap-record")
    with tarfile.open(os.path.join(DATA, "chain.tgz")) as tar:
        tar.extractall(work, filter="data")
    results = {}
    old, tz = os.getcwd(), os.environ.get("TZ")
    os.chdir(work)
    os.environ["TZ"] = "UTC"
    try:
        for i, (line, expected) in enumerate(recorded()):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                rc = main(line.split())
            results[i] = (expected, (buf.getvalue() + f"rc={rc}\n").replace(str(work), "@DIR@"))
    finally:
        os.chdir(old)
        if tz is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = tz
    return results


@pytest.mark.parametrize("index,line", list(enumerate(line for line, _ in recorded())))
def test_output_and_exit_code_match_blktap(replayed, index, line):
    expected, got = replayed[index]
    assert got == expected, f"vhd-util {line}"

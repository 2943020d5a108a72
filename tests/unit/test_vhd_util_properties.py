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

"""Property-based: the seed's vhd-util pipeline, run with xen-vhd-util on the property-test
generator's chains, coalesces into a base that reads (qemu-img -f vpc) as the converter's raw."""

import contextlib
import io
import os
import subprocess

from hypothesis import HealthCheck, given, settings

from converter.convert import convert_image
from converter.vhdutil.cli import main
from tests.unit.test_properties import chain, realise


def vhd_util(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, out.getvalue()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=chain)
def test_pipeline_on_generated_chains(tmp_path_factory, spec):
    tmp = tmp_path_factory.mktemp("vu")
    b, options = realise(spec)
    members = tmp / "m"
    members.mkdir()
    paths = b.write_members(members, fill=options["fill"], batmap=options["batmap"])
    convert_image(members, tmp / "expected.raw")
    for i, (child, parent) in enumerate(zip(paths, paths[1:])):
        assert vhd_util("modify", "-n", child, "-p", parent)[0] == 0
        code, size = vhd_util("query", "-n", child, "-v")
        assert code == 0
        code, out = vhd_util("resize", "-n", parent, "-s", size.strip(), "-j", tmp / f"j{i}")
        assert code == 0, out
        code, out = vhd_util("coalesce", "-n", child)
        assert code == 0, out
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", paths[-1], str(tmp / "got.raw")], check=True)
    got = (tmp / "got.raw").read_bytes()
    assert got == (tmp / "expected.raw").read_bytes() == b.expected()
    assert not any(os.path.exists(tmp / f"j{i}") for i in range(len(paths)))

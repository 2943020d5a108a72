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

"""harness.relay: xdist workers' progress lines, followed and prefixed on the controller."""

from xen_vhd_tempest.harness.relay import Follower


def test_follower_prints_complete_lines_per_worker_and_cleans_up():
    got = []
    f = Follower(got.append)
    with open(f.dir / "gw0.log", "a", buffering=1) as a, open(f.dir / "gw1.log", "a", buffering=1) as b:
        a.write("==> one\n    half")
        b.write("==> other\n")
        f.drain()
        assert got == ["[gw0] ==> one", "[gw1] ==> other"]     # a partial line waits for its end
        a.write(" a line\n")
        f.drain()
        assert got[-1] == "[gw0]     half a line"
        a.write("last\n")
    f.stop()
    assert got[-1] == "[gw0] last" and len(got) == 4
    assert not f.dir.exists()
    f.stop()                                                    # a second stop does nothing

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

"""`xen-vhd-tempest run` as users run it: the pytest harness with its plugin, the lab started
and stopped for the session, progress shown, a JUnit report, PASS/FAIL at the end."""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

pytestmark = pytest.mark.lab


def run(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "xen_vhd_tempest.cli", "run", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_an_unknown_cloud_is_one_clear_line(tmp_path):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  other:\n    auth:\n      auth_url: http://127.0.0.1:9/identity\n")
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(clouds))
    r = run("--os-cloud", "nosuchcloud", env=env, timeout=120)
    assert r.returncode != 0
    assert "nosuchcloud" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def _qemu_of(state_dir):
    """QEMU processes whose command line names ``state_dir`` (a lab's guests)."""
    found = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if str(state_dir) in line]


@pytest.mark.parametrize("shared", [True, False], ids=["one-shared-lab", "a-lab-per-worker"])
def test_both_scenarios_under_xdist(tmp_path, shared):
    """``run --scenario all --junitxml F -- -n 2``, the harness starting (and stopping) a lab per
    worker or one shared lab: each worker's progress live, prefixed with its name; both stories'
    step tables in the final summary; both PASS in the JUnit report; nothing left running.
    (A serial run of the harness is test_cloud_cinder's, which ends at its diagnosis.)"""
    from xen_vhd_tempest.lab.hypervisor import qemu_available
    if qemu_available():
        pytest.fail(f"cannot run QEMU guests here: {qemu_available()}", pytrace=False)
    lab_dir = tmp_path / "lab"
    env = {k: v for k, v in os.environ.items() if k not in ("OS_CLOUD", "OS_CLIENT_CONFIG_FILE")}
    env["XEN_VHD_TEMPEST_LAB_DIR"] = str(lab_dir)
    junit = tmp_path / "junit.xml"
    args = ["--scenario", "all", "--junitxml", junit] + (["--lab-dir", lab_dir] if shared else []) + ["--", "-n", "2"]
    r = run(*args, env=env, timeout=1500)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "all 1024 MiB match the reference conversion" in out
    cases = sorted(c.get("name") for c in ET.parse(junit).getroot().iter("testcase"))
    assert cases == ["test_synthetic_xenserver_chain_becomes_a_bootable_volume",
                     "test_xenserver_backup_becomes_a_bootable_volume"]
    workers = {line.split("]", 1)[0] + "]" for line in out.splitlines() if line.startswith("[gw")}
    assert workers == {"[gw0]", "[gw1]"}, out[-3000:]
    for worker in workers:                                   # progress as it happened
        assert f"{worker} ==> create a volume from the image" in out
    summary = out.split("xen-vhd-tempest stories", 1)[1]
    for title in ("XenServer backup -> Cinder volume", "synthetic XenServer chain -> Cinder volume"):
        assert title in summary
    compared = re.findall(r"^compare the volume's bytes with the reference +ok ", summary, flags=re.M)
    assert len(compared) == 2, summary
    assert ("the workers share the lab at" in out) is shared
    assert out.rstrip().splitlines()[-1].startswith("PASS: xen-vhd-tempest run (all)")
    labs = [lab_dir] if shared else [lab_dir / "gw0", lab_dir / "gw1"]
    for state in labs:                                       # every lab the run started is down
        status = subprocess.run([sys.executable, "-m", "xen_vhd_tempest.cli", "lab", "status", "--state-dir",
                                 str(state)], capture_output=True, text=True)
        assert status.returncode == 3, (state, status.stdout)
        assert _qemu_of(state) == []

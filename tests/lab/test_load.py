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

"""The lab under API load: concurrent clients looping create / show / list / delete over
images, volumes and keypairs get no 5xx and leave nothing behind.

The suite runs a short version (4 clients, 15 s, no scenario). The full one - 8 clients for
60 s while the backup scenario runs on the same lab - is marked ``load`` and deselected unless
asked for: ``pytest -m load tests/lab/test_load.py -s`` (``tox -e load``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from cloudfixtures import ROOT, running_lab
from loadgen import leaked, run_load


@pytest.fixture
def lab():
    yield from running_lab()


def _check(lab, stats, errors):
    print("\n" + stats.report())
    assert stats.server_errors == 0, stats.report()
    assert not errors, "\n".join(errors[:10])
    assert stats.iterations > 0
    assert leaked(lab.info, lab.state_dir) == {}


def test_short_load_no_5xx_no_leaks(lab):
    stats, errors = run_load(lab.info, clients=4, seconds=float(os.environ.get("XEN_VHD_LOAD_SECONDS", "15")))
    _check(lab, stats, errors)
    assert set(stats.per_service()) == {"identity", "image", "volume", "compute"}


@pytest.mark.load
@pytest.mark.lab
def test_load_while_the_backup_scenario_runs(lab):
    from xen_vhd_tempest.lab.hypervisor import qemu_available
    reason = qemu_available()
    if reason:
        pytest.fail(f"cannot run QEMU guests here: {reason}", pytrace=False)
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(lab.state_dir / "clouds.yaml"), PYTHONPATH=str(ROOT))
    env.pop("OS_CLOUD", None)
    result = {}

    def scenario():
        result["proc"] = subprocess.run(
            [sys.executable, "-m", "xen_vhd_tempest.cli", "run", "--scenario", "backup", "--os-cloud", "xen-vhd-lab",
             "--image", lab.default_image_id],
            capture_output=True, text=True, env=env, timeout=1800, cwd=ROOT)
    thread = threading.Thread(target=scenario)
    thread.start()
    stats, errors = run_load(lab.info, clients=8, seconds=float(os.environ.get("XEN_VHD_LOAD_SECONDS", "60")))
    thread.join()
    proc = result["proc"]
    out = proc.stdout + proc.stderr
    print("\n".join(out.rstrip().splitlines()[-40:]))
    assert proc.returncode == 0 and out.rstrip().splitlines()[-1].startswith("PASS"), out[-3000:]
    _check(lab, stats, errors)

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

"""The lab with real Cinder (conversion mode ``cinder``): the pinned release fails at volume
creation, through the lab's APIs and through ``xen-vhd-tempest run --cinder``, with a diagnosis
that quotes the command Cinder ran and says what it means.

(A tree with the fix passing the backup scenario, and trees broken in other ways failing it, are
in test_sensitivity.py, which shares one backup among all conversions.)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cloudfixtures import LAB_MODULE, cli, running_lab, wait_volume

from xen_vhd_tempest.harness.clients import ClientsCloud, session_for
from xen_vhd_tempest.scenario.diagnose import cinder_failure

pytestmark = pytest.mark.lab

DIAGNOSIS = "Cinder's qemu_img_info ran `qemu-img info -f vhd --output=json image_fetch_"
MEANING = "qemu's VHD driver is `vpc`"


@pytest.fixture(scope="module")
def lab():
    yield from running_lab()


def test_the_pinned_cinder_puts_a_volume_from_the_default_image_in_error(lab):
    settings = lab.set_setting(conversion_mode="cinder", cinder_src=None)
    try:
        assert (settings["conversion_mode"], settings["cinder_src"]) == ("cinder", None)
        cinder = lab.cinder()
        vol = cinder.volumes.create(1, imageRef=lab.default_image_id, name="from-registry-cinder")
        vol = wait_volume(cinder, vol.id, status="error", timeout=180)
        messages = [m.user_message for m in cinder.messages.list(search_opts={"resource_uuid": vol.id})]
        assert len(messages) == 1
        message = messages[0]
        assert message.startswith("copy image to volume: Failed to copy image to volume: qemu-img: Could not open")
        log = lab.state_dir / "volumes" / f"{vol.id}.cinder.log"
        assert message.endswith(f"[Cinder's log: {log}]")
        assert "tar -xzf" in log.read_text() and "qemu-img info -f vhd" in log.read_text()   # one member: no coalesce
        # what the harness makes of it, as it reads it (python-cinderclient's messages)
        cloud = ClientsCloud(session_for("xen-vhd-lab", str(lab.state_dir / "clouds.yaml")), name="lab")
        reason = cloud.get_volume(vol.id).reason
        diagnosis = cinder_failure(reason)
        assert str(diagnosis).startswith(DIAGNOSIS) and MEANING in str(diagnosis), str(diagnosis)
        status = subprocess.run([sys.executable, "-m", "xen_vhd_tempest.cli", "lab", "status", "--state-dir",
                                 str(lab.state_dir)], capture_output=True, text=True, timeout=60)
        assert "conversion mode cinder" in status.stdout
        assert f"each volume's Cinder log: {lab.state_dir / 'volumes'}/ID.cinder.log" in status.stdout
        cinder.volumes.delete(vol.id)
    finally:
        lab.set_mode("reference")


def test_run_with_the_pinned_cinder_fails_at_volume_creation_with_the_diagnosis(tmp_path):
    from xen_vhd_tempest.lab.hypervisor import qemu_available
    if qemu_available():
        pytest.fail(f"cannot run QEMU guests here: {qemu_available()}", pytrace=False)
    env = {k: v for k, v in os.environ.items() if k not in ("OS_CLOUD", "OS_CLIENT_CONFIG_FILE")}
    lab_dir = tmp_path / "lab"
    # a lab of our own on a free port (the harness would start one on 8780), left as it was found
    cli("lab", "up", "--state-dir", lab_dir, "--port", "0", module=LAB_MODULE)
    try:
        r = subprocess.run([sys.executable, "-m", "xen_vhd_tempest.cli", "run", "--scenario", "synthetic", "--cinder",
                            "--lab-dir", str(lab_dir)], capture_output=True, text=True, timeout=900, env=env)
        settings = json.loads(cli("lab", "settings", "--state-dir", lab_dir, module=LAB_MODULE).stdout)
    finally:
        cli("lab", "down", "--state-dir", lab_dir, module=LAB_MODULE)
    assert settings["conversion_mode"] == "reference", "the run did not restore the lab's settings"
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "against the embedded lab (no --os-cloud / $OS_CLOUD given) with Cinder from the installed cinder " \
           "package" in out
    assert "failed at 'create a volume from the image'" in out, out[-3000:]
    line = next(x for x in out.splitlines() if x.startswith("diagnosis: "))
    assert line.startswith("diagnosis: " + DIAGNOSIS) and MEANING in line, line
    log = Path(line.rsplit("Cinder's log: ", 1)[1].strip())
    assert log.is_file() and log.parent == lab_dir / "volumes"
    assert out.rstrip().splitlines()[-1].startswith("FAIL: xen-vhd-tempest run (synthetic)")

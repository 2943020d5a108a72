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

"""The harness catches the bugs it exists for.

One backup is made (boot, dd + md5sum, createBackup, reference conversion), then the lab's
Cinder converts it with each known-wrong conversion in turn: the scenario must fail at the
byte-exact step with a diagnosis that names the fault. With the reference conversion it must
pass, through boot from volume and md5sum -c.

The same against real Cinder code (conversion mode ``cinder``): the pinned release fails at
volume creation (qemu-img info -f vhd); a copy with the one-line fix passes through boot from
volume and md5sum -c; copies with a step of the XenServer path removed fail naming it.
"""

import sys

import pytest
from cloudfixtures import running_guest_lab

from converter.variants import VARIANTS
from tests.cindertrees import BREAKS, cinder_tree
from xen_vhd_tempest.scenario.cloud import ScenarioError
from xen_vhd_tempest.scenario.options import Options
from xen_vhd_tempest.scenario.report import Reporter
from xen_vhd_tempest.scenario.story import ROOT_DISK, BackupScenario

pytestmark = pytest.mark.lab

FAULTS = list(VARIANTS)
COMPARE = "compare the volume's bytes with the reference"
CREATE = "create a volume from the image"


@pytest.fixture(scope="module")
def lab():
    yield from running_guest_lab()


@pytest.fixture(scope="module")
def backed_up(lab, tmp_path_factory):
    """The scenario up to the reference conversion, shared by every mode."""
    from xen_vhd_tempest.harness.clients import ClientsCloud, session_for
    cloud = ClientsCloud(session_for("xen-vhd-lab", str(lab.state_dir / "clouds.yaml")), name="lab")
    options = Options(image=lab.default_image_id, workdir=str(tmp_path_factory.mktemp("sensitivity")))
    story = BackupScenario(cloud, options, Reporter(sys.__stderr__, prefix="[sensitivity] "))
    try:
        steps = story.steps()
        story.run_steps(steps[:3])                  # resolve, boot, dd + md5sum
        # cirros grows its root filesystem into the resized disk at boot, so real backups hold
        # data past the image's end; the lab guest does not, so put some there (else a
        # conversion that skips the resize reads the same as a correct one).
        ssh = story.attach_server[1]
        disk = ssh.run(ROOT_DISK).split()[0]
        ssh.run(f"sudo dd if=somefile of={disk} bs=1M seek=512 count=4 conv=notrunc 2>/dev/null && "
                f"sudo dd if=somefile of={disk} bs=1M seek={story.flavor.disk_gb * 1024 - 1} count=1 "
                "conv=notrunc 2>/dev/null && sync")         # and the last MiB (a truncated copy loses it)
        story.run_steps(steps[3:5])                 # backup, reference
        yield story
    finally:
        lab.set_setting(conversion_mode="reference", cinder_src=None)
        story.cleanup()


@pytest.fixture(scope="module")
def cinder_trees(tmp_path_factory):
    """Copies of the pinned cinder: with the fix, and with the fix but a step removed."""
    return {variant: str(cinder_tree(tmp_path_factory.mktemp(f"cinder-{variant}"), variant))
            for variant in ("fixed", *BREAKS)}


def volume_steps(story, mode, lab, **settings):
    if settings:
        lab.set_setting(conversion_mode=mode, **settings)
    else:
        lab.set_mode(mode)
    label = f"{mode} {settings['cinder_src']}" if settings.get("cinder_src") else mode
    story.reporter = Reporter(sys.__stderr__, prefix=f"[{label}] ")
    try:
        story.run_steps(story.volume_steps(story.check_somefile))
        return None
    except ScenarioError as exc:
        return exc
    finally:
        story.drop_volume()


@pytest.mark.parametrize("mode", FAULTS)
def test_each_known_bug_fails_at_the_byte_exact_check_naming_the_fault(backed_up, lab, mode):
    error = volume_steps(backed_up, mode, lab)
    assert error is not None, f"the scenario passed although the lab's Cinder used '{mode}'"
    failed = [s for s in backed_up.reporter.steps if s.status == "FAIL"]
    assert [s.name for s in failed] == [COMPARE]
    assert error.diagnosis is not None and error.diagnosis.variant == mode, str(error.diagnosis)
    assert f"matches the '{mode}' conversion" in str(error.diagnosis)


def test_the_reference_conversion_passes_through_boot_from_volume(backed_up, lab):
    error = volume_steps(backed_up, "reference", lab)
    assert error is None, f"{error}: {getattr(error, 'diagnosis', '')}"
    assert [s.status for s in backed_up.reporter.steps] == ["ok", "ok", "ok"]


# -- real Cinder ------------------------------------------------------------------------------------------
def test_the_pinned_cinder_fails_at_volume_creation_naming_qemu_img_info(backed_up, lab):
    error = volume_steps(backed_up, "cinder", lab, cinder_src=None)
    assert error is not None, "the scenario passed with Cinder 29.0.0, which has no driver name for vhd"
    assert [(s.name, s.status) for s in backed_up.reporter.steps] == [(CREATE, "FAIL")]
    assert error.diagnosis.function == "qemu_img_info"
    assert error.diagnosis.command.startswith("qemu-img info -f vhd ")
    assert "qemu's VHD driver is `vpc`" in str(error.diagnosis)


def test_cinder_with_the_fix_passes_through_boot_from_volume(backed_up, lab, cinder_trees):
    error = volume_steps(backed_up, "cinder", lab, cinder_src=cinder_trees["fixed"])
    assert error is None, f"{error}: {getattr(error, 'diagnosis', '')}"
    assert [s.status for s in backed_up.reporter.steps] == ["ok", "ok", "ok"]


@pytest.mark.parametrize("variant, meaning", [("no-relink", "vhd-util modify -p"), ("no-resize", "vhd-util resize")])
def test_cinder_missing_a_step_fails_naming_it(backed_up, lab, cinder_trees, variant, meaning):
    error = volume_steps(backed_up, "cinder", lab, cinder_src=cinder_trees[variant])
    assert error is not None, f"the scenario passed with Cinder's {variant} copy"
    assert [(s.name, s.status) for s in backed_up.reporter.steps] == [(CREATE, "FAIL")]
    assert (error.diagnosis.function, error.diagnosis.command.split()[:2]) == ("coalesce_vhd", ["vhd-util", "coalesce"])
    assert meaning in error.diagnosis.meaning, str(error.diagnosis)

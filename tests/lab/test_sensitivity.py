"""The harness catches the bugs it exists for.

One backup is made (boot, dd + md5sum, createBackup, reference conversion), then the lab's
Cinder converts it with each known-wrong conversion in turn: the scenario must fail at the
byte-exact step with a diagnosis that names the fault. With the reference conversion it must
pass, through boot from volume and md5sum -c.
"""

import sys

import pytest
from cloudfixtures import running_guest_lab

from converter.variants import VARIANTS
from xen_vhd_tempest.scenario.cloud import ScenarioError
from xen_vhd_tempest.scenario.options import Options
from xen_vhd_tempest.scenario.report import Reporter
from xen_vhd_tempest.scenario.story import ROOT_DISK, BackupScenario

pytestmark = pytest.mark.lab

FAULTS = list(VARIANTS)
COMPARE = "compare the volume's bytes with the reference"


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
        lab.set_mode("reference")
        story.cleanup()


def volume_steps(story, mode, lab):
    lab.set_mode(mode)
    story.reporter = Reporter(sys.__stderr__, prefix=f"[{mode}] ")
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

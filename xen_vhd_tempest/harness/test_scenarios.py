"""The seed story and its synthetic twin, each one test; the step table explains a failure."""

import pytest

from xen_vhd_tempest.scenario.story import BackupScenario, SyntheticScenario


def _run(scenario, reporter):
    if not scenario.run():
        failed = next(s for s in reporter.steps if s.status == "FAIL")
        message = f"{scenario.title}: failed at '{failed.name}': {failed.detail}"
        if scenario.diagnosis:
            message += f"\ndiagnosis: {scenario.diagnosis}"
        pytest.fail(message, pytrace=False)


@pytest.mark.xen_backup
def test_xenserver_backup_becomes_a_bootable_volume(xen_cloud, xen_options, xen_reporter):
    _run(BackupScenario(xen_cloud, xen_options, xen_reporter), xen_reporter)


@pytest.mark.xen_synthetic
def test_synthetic_xenserver_chain_becomes_a_bootable_volume(xen_cloud, xen_options, xen_reporter):
    _run(SyntheticScenario(xen_cloud, xen_options, xen_reporter), xen_reporter)

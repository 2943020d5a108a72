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

"""The seed story and its synthetic twin, each one test; the outcome's verdict explains a failure."""

import pytest

from xen_vhd_tempest.scenario.story import BackupScenario, SyntheticScenario


def _run(request, scenario):
    from xen_vhd_tempest.harness.relay import SUMMARY_PROPERTY
    outcome = scenario.run()
    # the step table and diagnosis travel with the report (an xdist controller prints them)
    request.node.user_properties.append((SUMMARY_PROPERTY, outcome.summary))
    problem = outcome.verdict(scenario.options.expected_fault)
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.mark.xen_backup
def test_xenserver_backup_becomes_a_bootable_volume(request, xen_cloud, xen_options, xen_reporter):
    _run(request, BackupScenario(xen_cloud, xen_options, xen_reporter))


@pytest.mark.xen_synthetic
def test_synthetic_xenserver_chain_becomes_a_bootable_volume(request, xen_cloud, xen_options, xen_reporter):
    _run(request, SyntheticScenario(xen_cloud, xen_options, xen_reporter))

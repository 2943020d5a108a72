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

""".zuul.yaml: the gate job is a devstack-tempest job the way tempest plugins write them, and it
points at what this repository really has (devstack plugin, tempest plugin, test ids)."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def zuul():
    items = yaml.safe_load((ROOT / ".zuul.yaml").read_text())
    assert isinstance(items, list)
    jobs = {item["job"]["name"]: item["job"] for item in items if "job" in item}
    projects = [item["project"] for item in items if "project" in item]
    return jobs, projects


def test_every_item_is_a_project_or_a_job(zuul):
    items = yaml.safe_load((ROOT / ".zuul.yaml").read_text())
    assert all(len(item) == 1 and next(iter(item)) in ("project", "job") for item in items)


def test_devstack_tempest_job(zuul):
    jobs, _ = zuul
    job = jobs["xen-vhd-tempest-devstack"]
    assert job["parent"] == "devstack-tempest"
    v = job["vars"]
    assert v["tempest_plugins"] == ["xen-vhd-tempest"]
    assert set(v["devstack_plugins"]) == {"xen-vhd-tempest"}
    assert v["devstack_plugins"]["xen-vhd-tempest"].endswith("/xen-vhd-tempest")
    assert any(p.endswith("xen-vhd-tempest") for p in job["required-projects"])
    test_config = v["devstack_local_conf"]["test-config"]["$TEMPEST_CONFIG"]
    assert test_config["validation"]["run_validation"] is True
    assert "xen_vhd" in test_config


def test_test_config_options_exist_in_the_plugin(zuul):
    from xen_vhd_tempest.tempest_plugin import config
    jobs, _ = zuul
    test_config = jobs["xen-vhd-tempest-devstack"]["vars"]["devstack_local_conf"]["test-config"]["$TEMPEST_CONFIG"]
    names = {opt.name for opt in config.XenVhdGroup}
    assert set(test_config["xen_vhd"]) <= names


def test_regex_selects_the_plugin_tests_and_nothing_of_tempest():

    import xen_vhd_tempest.tempest_plugin.tests.scenario.test_xenserver_image_to_volume as module
    jobs = {i["job"]["name"]: i["job"] for i in yaml.safe_load((ROOT / ".zuul.yaml").read_text()) if "job" in i}
    regex = re.compile(jobs["xen-vhd-tempest-devstack"]["vars"]["tempest_test_regex"])
    ids = [f"{module.__name__}.{name}.{test}" for name, cls in vars(module).items()
           if isinstance(cls, type) for test in dir(cls) if test.startswith("test_")]
    assert ids and all(regex.search(i) for i in ids)
    assert not regex.search("tempest.scenario.test_volume_boot_pattern.TestVolumeBootPattern.test_x")


def test_localrc_variables_are_the_devstack_plugins(zuul):
    jobs, _ = zuul
    settings = (ROOT / "devstack" / "settings").read_text()
    for name in jobs["xen-vhd-tempest-devstack"]["vars"]["devstack_localrc"]:
        assert re.search(rf"^{name}=", settings, re.M), f"{name} is not a variable of devstack/settings"


def test_projects_run_only_defined_jobs_and_gate_only_on_voting_ones(zuul):
    jobs, projects = zuul
    for project in projects:
        for pipeline in ("check", "gate"):
            for entry in project[pipeline]["jobs"]:
                name = entry if isinstance(entry, str) else next(iter(entry))
                assert name in jobs
                if pipeline == "gate":
                    assert isinstance(entry, str) or entry[name].get("voting", True)
        check = [e if isinstance(e, str) else next(iter(e)) for e in project["check"]["jobs"]]
        assert {"xen-vhd-tempest-devstack", "xen-vhd-tempest-lab"} <= set(check)


def test_lab_job_runs_the_lab_tests_with_their_system_packages(zuul):
    jobs, _ = zuul
    job = jobs["xen-vhd-tempest-lab"]
    assert job["parent"] == "tox"
    assert "lab" in job["vars"]["bindep_profile"].split()
    assert "tests/lab" in job["vars"]["tox_extra_args"]


def test_the_non_voting_job_says_why(zuul):
    jobs, _ = zuul
    description = jobs["xen-vhd-tempest-devstack"]["description"]
    assert "Non-voting while upstream" in description and "qemu-img info -f vhd" in description

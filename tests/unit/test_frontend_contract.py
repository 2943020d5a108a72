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

"""The contract between the story and its two front ends, checked without a cloud: every cloud
call the story makes is declared on ``Cloud`` and implemented by both clouds; both front ends'
options come from ``scenario.options.SETTINGS``; the outcome's verdict is the one judgement; the
pytest plugin's options cannot collide with another plugin's; the tempest plugin stays on
tempest's stable interface."""

import argparse
import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from converter.variants import VARIANTS
from xen_vhd_tempest.scenario import story as story_module
from xen_vhd_tempest.scenario.cloud import Cloud
from xen_vhd_tempest.scenario.diagnose import Diagnosis
from xen_vhd_tempest.scenario.options import FAULTS, SETTINGS, Options
from xen_vhd_tempest.scenario.outcome import Outcome
from xen_vhd_tempest.scenario.report import StepResult

ROOT = Path(__file__).resolve().parents[2]
pytest_plugins = ["pytester"]          # the harness's fixtures, run by a pytest of their own


def _cloud_calls():
    """Names the story reads off its cloud: ``self.cloud.X`` and ``c.X`` after ``c = self.cloud``."""
    tree = ast.parse(Path(story_module.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        if isinstance(owner, ast.Attribute) and owner.attr == "cloud" and isinstance(owner.value, ast.Name):
            names.add(node.attr)
        elif isinstance(owner, ast.Name) and owner.id == "c":
            names.add(node.attr)
    return names


def test_every_call_the_story_makes_is_declared_on_cloud():
    calls = _cloud_calls()
    assert {"create_server", "wait_server_status", "wait_volume_gone", "guest_shell", "leftovers"} <= calls
    assert not calls - set(dir(Cloud)), f"used by the story but not declared on Cloud: {calls - set(dir(Cloud))}"
    # waiters are the contract's, not probed for
    assert "getattr(cloud" not in Path(story_module.__file__).read_text()
    assert "_own_waiter" not in (ROOT / "xen_vhd_tempest" / "scenario" / "waiters.py").read_text()


def test_both_clouds_implement_the_whole_contract():
    from xen_vhd_tempest.harness.clients import ClientsCloud
    assert not ClientsCloud.__abstractmethods__
    from xen_vhd_tempest.tempest_plugin.cloud import TempestCloud
    assert not TempestCloud.__abstractmethods__
    for cls in (ClientsCloud, TempestCloud):
        assert cls.leftovers is not Cloud.leftovers


def test_options_are_the_table():
    assert [f.name for f in dataclasses.fields(Options)] == [s.name for s in SETTINGS]
    assert FAULTS == ("none", *VARIANTS)
    with pytest.raises(ValueError, match="not one of"):
        Options(expected_fault="leaf_only")
    assert Options().prefix.startswith("xvt-") and Options().prefix != Options().prefix


def test_tempest_options_are_the_tables_tempest_rows():
    from xen_vhd_tempest.tempest_plugin import config
    names = [opt.name for opt in config.XenVhdGroup]
    assert names == ["compute_is_xenserver"] + [s.tempest for s in SETTINGS if s.tempest]
    assert {"ssh_port", "dd_count", "expected_fault", "work_dir"} <= set(names)
    by_name = {opt.name: opt for opt in config.XenVhdGroup}
    assert by_name["boot_timeout"].default == 600.0 and by_name["ssh_port"].default == 22
    assert by_name["image_ref"].default is None and "[compute] image_ref" in by_name["image_ref"].help


def test_tempest_options_become_the_storys_options_with_tempest_fallbacks():
    from oslo_config import cfg

    from xen_vhd_tempest.tempest_plugin import config
    from xen_vhd_tempest.tempest_plugin.manager import options_from_conf
    conf = cfg.ConfigOpts()
    conf.register_group(config.xen_vhd_group)
    conf.register_opts(config.XenVhdGroup, group="xen_vhd")
    for option in ("compute.image_ref", "compute.flavor_ref", "compute.fixed_network_name",
                   "validation.image_ssh_user", "validation.image_ssh_password"):
        conf.register_opt(cfg.StrOpt(option.split(".")[1]), group=option.split(".")[0])
    conf([], default_config_files=[])
    conf.set_override("image_ref", "tempest-image", "compute")
    conf.set_override("flavor_ref", "42", "compute")
    conf.set_override("image_ssh_user", "ubuntu", "validation")
    conf.set_override("helper_image_ref", "helper", "xen_vhd")
    conf.set_override("dd_count", 5, "xen_vhd")
    o = options_from_conf(conf, prefix="p", workdir="/w")
    assert (o.image, o.helper_image, o.flavor, o.ssh_user, o.dd_count, o.ssh_port) == (
        "tempest-image", "helper", "42", "ubuntu", 5, 22)
    assert (o.prefix, o.workdir, o.boot_timeout, o.expected_fault, o.network) == ("p", "/w", 600.0, "none", None)


def test_run_and_the_pytest_plugin_take_every_flag_of_the_table():
    from xen_vhd_tempest.harness import pytest_plugin, run
    added = []

    class Group:
        def addoption(self, name, **kw):
            added.append(name)

    parser = type("Parser", (), {"getgroup": lambda self, *a: Group()})()
    pytest_plugin.pytest_addoption(parser)
    flags = [s.flag for s in SETTINGS if s.flag]
    assert all(name.startswith("--xvt-") for name in added), added
    assert {f"--xvt-{f}" for f in flags} | {"--xvt-os-cloud", "--xvt-lab-dir"} <= set(added)

    sub = argparse.ArgumentParser().add_subparsers()
    run.add_parser(sub)
    args = sub.choices["run"].parse_args(["--scenario", "synthetic", "--ssh-port", "2222", "--dd-count", "7",
                                          "--expected-fault", "leaf-only", "--keep-on-failure", "--timeout", "30",
                                          "--volume-timeout", "99", "--os-cloud", "c"])
    argv = run.pytest_argv(args)
    pairs = dict(zip(argv, argv[1:]))
    assert (pairs["-m"], pairs["--xvt-os-cloud"], pairs["--xvt-ssh-port"], pairs["--xvt-dd-count"]) == (
        "xen_synthetic", "c", "2222", "7")
    assert (pairs["--xvt-expected-fault"], pairs["--xvt-boot-timeout"], pairs["--xvt-volume-timeout"]) == (
        "leaf-only", "30.0", "99.0")
    assert "--xvt-keep-on-failure" in argv and "--xvt-image" not in argv


def test_the_pytest_plugin_adds_only_prefixed_options_to_every_pytest_run(tmp_path):
    """Installed, the plugin loads in every pytest run of the environment: ``--os-cloud`` and the
    like stay free for other plugins."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env=dict(os.environ)).stdout
    assert "--xvt-os-cloud" in out and "--xvt-raw-image" in out
    assert "--os-cloud" not in out.replace("--xvt-os-cloud", "")


def _steps(*statuses):
    return tuple(StepResult(f"step {i}", status, 1.0, "boom" if status == "FAIL" else "")
                 for i, status in enumerate(statuses))


def test_the_verdict_is_the_one_judgement_of_an_outcome():
    passed = Outcome("story", _steps("ok", "ok"), None, "TABLE")
    named = Outcome("story", _steps("ok", "FAIL", "ok"), Diagnosis(3, "leaf-only", 5, "it is leaf-only"), "TABLE")
    unnamed = Outcome("story", _steps("ok", "FAIL", "ok"), "the volume is wrong somehow", "TABLE")
    assert passed.passed and passed.verdict() is None and passed.failed_step is None
    assert not named.passed and named.failed_step.name == "step 1" and named.fault == "leaf-only"
    assert named.verdict() == "story: failed at 'step 1': boom\ndiagnosis: it is leaf-only\nTABLE"
    assert named.verdict("leaf-only") is None
    assert "diagnosed 'leaf-only'" in named.verdict("no-resize")
    assert "failed without naming a known fault" in unnamed.verdict("leaf-only")
    assert "matched the reference conversion" in passed.verdict("leaf-only")
    assert named.to_json()["fault"] == "leaf-only" and named.to_json()["steps"][1]["status"] == "FAIL"


# tempest's documented stable interface for plugins (doc/source/plugin.rst, "Stable Tempest APIs")
STABLE = ("tempest.lib", "tempest.config", "tempest.test_discover.plugins", "tempest.common.credentials_factory",
          "tempest.common.compute", "tempest.common.identity", "tempest.common.image",
          "tempest.common.object_storage", "tempest.clients", "tempest.test", "tempest.scenario.manager")


def test_the_tempest_plugin_imports_only_tempests_stable_interface():
    imported = []
    for path in (ROOT / "xen_vhd_tempest" / "tempest_plugin").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tempest":
                imported += [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                imported += [a.name for a in node.names if a.name.split(".")[0] == "tempest"]
    assert "tempest.lib.common.utils.linux.remote_client" in imported      # RemoteClient from tempest.lib
    unstable = [m for m in imported if not any(m == s or m.startswith(s + ".") for s in STABLE)]
    assert not unstable, f"outside tempest's stable plugin interface: {sorted(set(unstable))}"


def test_harness_options_are_given_flags_over_the_targets_defaults_over_the_table(pytester):
    """The plugin's ``xen_options`` fixture, with the cloud under test replaced (no lab, no cloud)."""
    pytester.makeconftest('''
import pytest
from xen_vhd_tempest.harness.pytest_plugin import Target

@pytest.fixture(scope="session")
def xen_target():
    return Target(cloud=None, defaults=dict(image="lab-image", helper_image="lab-image", ssh_user="lab-user"))
''')
    pytester.makepyfile('''
def test_options(xen_options, tmp_path):
    o = xen_options
    assert (o.image, o.helper_image, o.ssh_user) == ("given", "given", "lab-user")
    assert (o.ssh_port, o.dd_count, o.boot_timeout, o.volume_timeout) == (2222, 10000, 600.0, 42.0)
    assert o.keep is True and o.expected_fault == "leaf-only" and o.prefix.startswith("xvt-")
    assert o.workdir == str(tmp_path)
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--xvt-image", "given", "--xvt-ssh-port", "2222",
                                "--xvt-volume-timeout", "42", "--xvt-keep-on-failure",
                                "--xvt-expected-fault", "leaf-only")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest("-p", "no:cacheprovider", "--xvt-expected-fault", "leaf_only")
    assert result.ret != 0 and "invalid choice" in "\n".join(result.errlines)

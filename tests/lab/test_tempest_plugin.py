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

"""Real tempest with the xen-vhd-tempest plugin against a running lab.

``tempest init`` makes a workspace, the lab's own tempest.conf (plus ``[xen_vhd]``) configures
it, ``tempest run --regex`` runs the plugin's scenario tests through stestr, and the subunit
stream of the run (``stestr last --subunit``) is read back: both scenarios ran and passed, with
their idempotent ids and the scenario's own summary attached to each test.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cloudfixtures import private_dir, running_lab

BIN = Path(sys.executable).parent
TEMPEST = BIN / "tempest"
STESTR = BIN / "stestr"
PACKAGE = "xen_vhd_tempest.tempest_plugin.tests.scenario.test_xenserver_image_to_volume"
BACKUP = f"{PACKAGE}.XenServerBackupToVolumeTest.test_backup_image_to_volume"
SYNTHETIC = f"{PACKAGE}.SyntheticChainToVolumeTest.test_synthetic_chain_to_volume"
IDS = {BACKUP: "cd7a98a8-5d3c-4605-b30e-efb28c3d704b", SYNTHETIC: "37c756f2-b2bb-4dd8-9c73-7fc3eceff67f"}
REGEX = r"^xen_vhd_tempest\."


def tempest(*args, cwd, timeout=600, check=True):
    if not TEMPEST.exists():
        pytest.fail(f"no tempest command next to {sys.executable}", pytrace=False)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TEMPEST_CONFIG", None)
    env.pop("TEMPEST_CONFIG_DIR", None)
    proc = subprocess.run([str(TEMPEST), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode:
        raise AssertionError(f"tempest {' '.join(map(str, args))} -> {proc.returncode}:\n"
                             f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return proc


def subunit_results(workspace: Path) -> dict:
    """test id (without the [tags] suffix) -> {'status', 'tags', 'details'} of the last run."""
    import subunit
    import testtools
    stream = subprocess.run([str(STESTR), "last", "--subunit"], cwd=workspace, capture_output=True,
                            check=True, timeout=120).stdout
    out = {}

    def on_test(test):
        details = {name: value.as_text() for name, value in test["details"].items()
                   if value.content_type.type == "text"}
        out[test["id"].split("[")[0]] = {"status": test["status"], "tags": test["id"], "details": details}

    import io
    result = testtools.StreamToDict(on_test)
    result.startTestRun()
    subunit.ByteStreamToStreamResult(io.BytesIO(stream), non_subunit_name="stdout").run(result)
    result.stopTestRun()
    return out


def raw_guest_disk() -> str:
    """The lab guest's raw disk (cached by ``lab up``): the synthetic scenario's bootable raw image."""
    from xen_vhd_tempest.lab.guest import build_guest_image
    return str(build_guest_image().raw_path)


def init_workspace(path: Path) -> Path:
    """``tempest init`` PATH/ws, registered in PATH/workspace.yaml (not ~/.tempest)."""
    path.mkdir(parents=True, exist_ok=True)
    tempest("init", "--workspace-path", path / "workspace.yaml", "--name", path.name, path / "ws", cwd=path)
    return path / "ws"


def make_workspace(path: Path, lab, **xen_vhd) -> Path:
    """``tempest init`` a workspace whose tempest.conf is the lab's, completed with what tempest
    needs here (a lock dir of its own, a log file), with exactly the ``[xen_vhd]`` options given."""
    ws = init_workspace(path)
    conf = configparser.RawConfigParser()
    conf.optionxform = str
    conf.read(lab.state_dir / "tempest.conf")
    conf.remove_section("xen_vhd")          # each test states its own [xen_vhd] options in full
    defaults = {"DEFAULT": {"log_dir": ws / "logs", "log_file": "tempest.log"},
                "oslo_concurrency": {"lock_path": ws / "tempest_lock"},
                "xen_vhd": xen_vhd}
    for section, options in defaults.items():
        if section != "DEFAULT" and not conf.has_section(section):
            conf.add_section(section)
        for key, value in options.items():
            if section == "xen_vhd" or not conf.has_option(section, key):
                conf.set(section, key, str(value))
    with open(ws / "etc" / "tempest.conf", "w") as f:
        conf.write(f)
    return ws


@pytest.fixture(scope="module")
def lab():
    yield from running_lab()


@pytest.fixture(scope="module")
def scratch():
    with private_dir("xvt-tempest-") as path:
        yield path


def test_tempest_list_plugins_shows_the_plugin(tmp_path):
    out = tempest("list-plugins", cwd=tmp_path).stdout
    assert "xen-vhd-tempest" in out
    assert "xen_vhd_tempest.tempest_plugin.plugin:XenVhdTempestPlugin" in out


def test_plugin_hooks(tmp_path):
    from xen_vhd_tempest.tempest_plugin import config as project_config
    from xen_vhd_tempest.tempest_plugin.plugin import XenVhdTempestPlugin

    plugin = XenVhdTempestPlugin()
    test_dir, top = plugin.load_tests()
    assert Path(test_dir) == Path(top) / "xen_vhd_tempest" / "tempest_plugin" / "tests"
    assert (Path(test_dir) / "scenario" / "test_xenserver_image_to_volume.py").is_file()
    (group, options), = plugin.get_opt_lists()
    assert group == "xen_vhd" and options is project_config.XenVhdGroup

    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    plugin.register_opts(conf)
    conf([], default_config_files=[])
    assert conf.xen_vhd.compute_is_xenserver is False
    assert conf.xen_vhd.expected_fault == "none"
    assert conf.xen_vhd.image_ref is None and conf.xen_vhd.raw_image is None


def test_tempest_lists_the_scenarios_with_their_ids(tmp_path):
    ws = init_workspace(tmp_path)
    out = tempest("run", "--list-tests", "--regex", REGEX, cwd=ws).stdout
    for test_id, uuid in IDS.items():
        assert any(line.startswith(test_id + "[") and f"id-{uuid}" in line for line in out.splitlines()), out


def test_every_test_has_a_unique_idempotent_id(tmp_path):
    """tempest's own check (``check-uuid``, run by plugins' pep8 jobs)."""
    check_uuid = BIN / "check-uuid"
    if not check_uuid.exists():
        pytest.fail(f"no check-uuid command next to {sys.executable}", pytrace=False)
    proc = subprocess.run([str(check_uuid), "--package", "xen_vhd_tempest.tempest_plugin.tests"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.lab
def test_without_xen_vhd_options_both_scenarios_skip_naming_the_option(lab, scratch):
    ws = make_workspace(scratch / "skips", lab, compute_is_xenserver=False)
    proc = tempest("run", "--regex", REGEX, "--concurrency", "1", cwd=ws, timeout=300, check=False)
    assert "Skipped: 2" in proc.stdout, proc.stdout[-3000:]      # (tempest exits 1: nothing succeeded)
    results = subunit_results(ws)
    # skip_checks skips whole classes: subunit reports them as "setUpClass (module.Class)"
    backup, synthetic = (f"setUpClass ({test_id.rsplit('.', 1)[0]})" for test_id in (BACKUP, SYNTHETIC))
    assert {k: v["status"] for k, v in results.items()} == {backup: "skip", synthetic: "skip"}
    assert "[xen_vhd] compute_is_xenserver = True" in results[backup]["details"]["reason"]
    assert "[xen_vhd] raw_image" in results[synthetic]["details"]["reason"]


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_tempest_run_passes_both_scenarios_against_the_lab(lab, scratch):
    ws = make_workspace(scratch / "run", lab, compute_is_xenserver=True, raw_image=raw_guest_disk())
    t0 = time.monotonic()
    proc = tempest("run", "--regex", REGEX, "--concurrency", "1", cwd=ws, timeout=1700)
    seconds = time.monotonic() - t0
    print(f"tempest run against the lab: {seconds:.0f}s\n{proc.stdout[-1500:]}")
    assert "Passed: 2" in proc.stdout and "Failed: 0" in proc.stdout, proc.stdout[-3000:]

    results = subunit_results(ws)
    assert set(results) == {BACKUP, SYNTHETIC}
    for test_id, uuid in IDS.items():
        result = results[test_id]
        assert result["status"] == "success", result["details"]
        assert f"id-{uuid}" in result["tags"]
        summary = result["details"]["xen-vhd-scenario"]
        assert summary.rstrip().endswith("PASS"), summary[-2000:]
    assert "nova backup (createBackup)" in results[BACKUP]["details"]["xen-vhd-scenario"]
    assert "build a XenServer chain" in results[SYNTHETIC]["details"]["xen-vhd-scenario"]

    # everything the scenarios created is gone; the default image stays
    status = lab.status()
    assert (status["servers"], status["volumes"], status["images"]) == (0, 0, 1)
    assert not status["guests"]


@pytest.mark.lab
@pytest.mark.timeout(900)
def test_expected_fault_passes_when_the_scenario_names_the_labs_wrong_conversion(lab, scratch):
    ws = make_workspace(scratch / "fault", lab, raw_image=raw_guest_disk(), expected_fault="leaf-only")
    lab.set_mode("leaf-only")
    try:
        tempest("run", "--regex", r"SyntheticChainToVolumeTest", "--concurrency", "1", cwd=ws, timeout=800)
    finally:
        lab.set_mode("reference")
    result = subunit_results(ws)[SYNTHETIC]
    assert result["status"] == "success"
    assert "'leaf-only'" in result["details"]["xen-vhd-scenario"]
    assert "FAIL" in result["details"]["xen-vhd-scenario"]          # the story failed, as expected

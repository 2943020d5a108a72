"""`xen-vhd-tempest run` as users run it: the pytest harness with its plugin, the lab started
and stopped for the session, progress shown, a JUnit report, PASS/FAIL at the end."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

pytestmark = pytest.mark.lab


def run(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "xen_vhd_tempest.cli", "run", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_synthetic_scenario_on_a_lab_the_harness_starts_and_stops(tmp_path):
    from xen_vhd_tempest.lab.hypervisor import qemu_available
    if qemu_available():
        pytest.skip(f"cannot run QEMU guests here: {qemu_available()}")
    lab_dir, junit = tmp_path / "lab", tmp_path / "junit.xml"
    env = {k: v for k, v in os.environ.items() if k not in ("OS_CLOUD", "OS_CLIENT_CONFIG_FILE")}
    r = run("--scenario", "synthetic", "--lab-dir", lab_dir, "--junitxml", junit, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "==> compare the volume's bytes with the reference" in out          # progress as it happens
    assert "all 1024 MiB match the reference conversion" in out
    assert out.rstrip().splitlines()[-1].startswith("PASS: xen-vhd-tempest run (synthetic)")
    cases = ET.parse(junit).getroot().iter("testcase")
    assert [c.get("name") for c in cases] == ["test_synthetic_xenserver_chain_becomes_a_bootable_volume"]
    # The session started this lab, so it stopped it: no lab.json, no guest left.
    status = subprocess.run([sys.executable, "-m", "xen_vhd_tempest.cli", "lab", "status", "--state-dir",
                             str(lab_dir)], capture_output=True, text=True)
    assert status.returncode == 3, status.stdout


def test_an_unknown_cloud_is_one_clear_line(tmp_path):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  other:\n    auth:\n      auth_url: http://127.0.0.1:9/identity\n")
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(clouds))
    r = run("--os-cloud", "nosuchcloud", env=env, timeout=120)
    assert r.returncode != 0
    assert "nosuchcloud" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr

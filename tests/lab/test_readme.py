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

"""The README's lab command blocks, run as written by bash (``set -e``): the block under "The lab"
and the tempest recipe under "Tempest, devstack, Zuul" (issue #17 item 4: its ``cp`` once failed).

Each runs in a home of its own, so ``~/src/cinder``, ``~/.tempest`` and the lab's default state
directory are private, with ``$XEN_VHD_TEMPEST_LAB_PORT=0`` so a lab of another session on 8780
does not collide. What a user has before the block is put in place, not changed in it: a Cinder
source tree at ``~/src/cinder`` (the installed package's), the guest image cache. One line is
replaced, and the test says so: ``pip install '.[tempest]'`` would change the shared venv, so
it becomes a check that what it installs is installed. The tempest recipe boots the plugin's
scenarios (minutes; ``test_tempest_plugin`` runs them in the suite): it runs when ``-m readme``
names it (``tox -e readme``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cloudfixtures import private_dir

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# the README's line -> what runs instead, because running it here would change the shared venv
REPLACED = {"pip install '.[tempest]'":
            f"{sys.executable} -c 'import importlib.metadata as m; m.version(\"tempest\"); m.version(\"xen-vhd-tempest\")'"}


def readme_block(heading: str) -> str:
    """The first ```sh block after ``heading`` in README.md."""
    text = (ROOT / "README.md").read_text()
    m = re.search(re.escape(heading) + r"\n.*?```sh\n(.*?)```", text, re.S)
    assert m, f"README.md has no sh block under {heading!r}"
    return m.group(1)


def run_block(block: str, home: Path, cwd: Path, timeout: int):
    import cinder

    from xen_vhd_tempest.paths import cache_dir
    script = block
    for line, instead in REPLACED.items():
        script = script.replace(line, instead)
    src = home / "src" / "cinder"              # a Cinder source tree: the package under cinder/
    src.mkdir(parents=True, exist_ok=True)
    if not (src / "cinder").exists():
        (src / "cinder").symlink_to(Path(cinder.__file__).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OS_", "TEMPEST_", "XEN_VHD_TEMPEST_")) and k != "XDG_STATE_HOME"}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT),
               XEN_VHD_TEMPEST_LAB_PORT="0", XEN_VHD_TEMPEST_CACHE=str(cache_dir()))
    down = [str(BIN / "xen-vhd-tempest"), "lab", "down"]
    try:
        proc = subprocess.run(["bash", "-e", "-x", "-c", script], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
    finally:
        subprocess.run(down, env=env, cwd=home, capture_output=True, timeout=120)
    assert proc.returncode == 0, f"README block failed ({proc.returncode}):\n{proc.stderr[-6000:]}\n{proc.stdout[-3000:]}"
    return proc


@pytest.mark.timeout(600)
def test_the_readme_lab_block_runs_as_written():
    block = readme_block("## The lab")
    assert "xen-vhd-tempest lab up" in block and "openstack server list" in block
    with private_dir("xvt-readme-") as home:
        proc = run_block(block, home, home, timeout=540)
        # the settings lines took, in the lab's default state directory under this home
        state = home / ".local" / "state" / "xen-vhd-tempest" / "lab"
        settings = json.loads((state / "settings.json").read_text())
        assert settings["conversion_mode"] == "cinder"          # --cinder after --conversion-mode leaf-only
        assert settings["cinder_src"] == str((home / "src" / "cinder").resolve())
        assert [(f["service"], f["method"], f["status"]) for f in settings["faults"]] == [("compute", "POST", 500)]
        assert not (state / "lab.json").exists()                # lab down ran
    assert "+ openstack server list" in proc.stderr


@pytest.mark.readme
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_readme_tempest_recipe_runs_as_written():
    block = readme_block("## Tempest, devstack, Zuul")
    assert 'cp "$TEMPEST_CONFIG_DIR/$TEMPEST_CONFIG" ws/etc/tempest.conf' in block
    with private_dir("xvt-readme-tempest-") as home:
        work = home / "work"
        work.mkdir()
        proc = run_block(block, home, work, timeout=2300)
    assert "xen-vhd-tempest" in proc.stdout          # tempest list-plugins
    assert re.search(r"- Passed: [1-9]", proc.stdout) and re.search(r"- Failed: 0", proc.stdout), proc.stdout[-3000:]

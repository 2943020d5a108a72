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

"""The lab's conversion mode ``cinder``: upstream Cinder's create-from-image in the worker.

Real Cinder code (the pinned package, and copies of it the tests patch: ``tests/cindertrees``),
real qemu-img, xen-vhd-util as vhd-util, privsep-helper as root; only glance (the lab's image
record and file) and the database (kept in memory) are the lab's. The worker runs in its own
process, so Cinder's options never meet tempest's parsed CONF in this one.
"""

import json
import os
import subprocess
import sys

import pytest

from converter.builder import ImageBuilder, build_pattern
from tests.cindertrees import cinder_tree
from xen_vhd_tempest.lab.volume import conversion
from xen_vhd_tempest.lab.volume.cinder import CinderFailed, CinderUnavailable, CinderWorker, validate_cinder_src
from xen_vhd_tempest.scenario.diagnose import cinder_failure

MIB = 1 << 20
GIB = 1 << 30
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



def image_record(image_id, path, disk_format="vhd", container_format="ovf"):
    """A lab image record, as lab/image/models.py keeps it."""
    return {"id": image_id, "name": "chain", "status": "active", "disk_format": disk_format,
            "container_format": container_format, "visibility": "public", "protected": False, "min_disk": 0,
            "min_ram": 0, "owner": "project", "size": os.path.getsize(path), "virtual_size": None,
            "checksum": None, "os_hash_algo": None, "os_hash_value": None, "os_hidden": False, "tags": [],
            "created_at": 1.7e9, "updated_at": 1.7e9, "properties": {"os_distro": "cirros"}}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A backup-shaped chain: base, resize layer, leaf with writes past the base's end."""
    d = tmp_path_factory.mktemp("chain")
    b = ImageBuilder(build_pattern(0, 3 * MIB))
    b.snapshot(size=8 * MIB)
    b.write(5000, build_pattern(1, 70_000))
    b.snapshot()
    b.write(7 * MIB, b"\x5a" * 4096)
    path = b.build(str(d / "chain.tgz"))
    return {"path": path, "expected": b.expected(), "image": image_record("6f1e2d3c-0000-4000-8000-00000000c0de", path)}


def make_volume(tmp_path, name="v"):
    vid = f"{name:0<8}-0000-4000-8000-000000000001"[:36]
    return {"id": vid, "size": 1, "project_id": "project", "user_id": "user"}, tmp_path / f"{vid}.raw"


def convert(worker, image, image_path, tmp_path, name="v"):
    volume, dest = make_volume(tmp_path, name)
    with open(dest, "wb") as f:
        f.truncate(GIB)
    log = tmp_path / f"{volume['id']}.cinder.log"
    reply = conversion.image_to_volume(image, image_path, dest, GIB, mode="cinder", cinder=worker, volume=volume,
                                       log_path=log)
    return reply, dest, log


def worker_for(tmp_path_factory, variant):
    src = None if variant == "installed" else str(cinder_tree(tmp_path_factory.mktemp(f"cinder-{variant}"), variant))
    worker = CinderWorker(tmp_path_factory.mktemp(f"state-{variant}"), cinder_src=src, log=lambda m: None)
    worker.start()
    return worker


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    worker = worker_for(tmp_path_factory, "installed")
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    worker = worker_for(tmp_path_factory, "fixed")
    yield worker
    worker.stop()


# -- the pinned release -------------------------------------------------------------------------------
def test_the_pinned_cinder_fails_every_vhd_image_at_qemu_img_info(installed, chain, tmp_path):
    assert installed.ready["cinder"] == "29.0.0"
    assert installed.ready["path"].endswith("site-packages/cinder")
    with pytest.raises(CinderFailed) as caught:
        convert(installed, chain["image"], chain["path"], tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Failed to copy image to volume: qemu-img: Could not open")
    assert "Unknown driver 'vhd'" in message
    assert "(Cinder's qemu_img_info ran `env LC_ALL=C qemu-img info -f vhd --output=json /" in message
    log = caught.value.log_path
    assert message.endswith(f"[Cinder's log: {log}]")
    text = log.read_text()
    # Cinder's own path got there: fetched, checked, extracted, relinked, resized, coalesced
    for step in ("tar -xzf", "vhd-util modify -n", "vhd-util resize -n", "vhd-util coalesce -n",
                 "qemu-img info -f vhd", "ImageCopyFailure"):
        assert step in text, step
    diagnosis = cinder_failure("copy image to volume: " + message)
    assert diagnosis.function == "qemu_img_info"
    assert diagnosis.command.startswith("qemu-img info -f vhd --output=json image_fetch_")
    assert str(diagnosis).startswith("Cinder's qemu_img_info ran `qemu-img info -f vhd --output=json image_fetch_")
    assert "Unknown driver 'vhd'" in str(diagnosis) and "qemu's VHD driver is `vpc`" in str(diagnosis)


def test_the_pinned_cinder_converts_a_qcow2_image(installed, tmp_path):
    raw = tmp_path / "disk.raw"
    raw.write_bytes(build_pattern(0, 5 * MIB))
    qcow2 = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    image = image_record("6f1e2d3c-0000-4000-8000-0000000000c2", qcow2, "qcow2", "bare")
    reply, dest, _ = convert(installed, image, qcow2, tmp_path, "q")
    assert os.path.getsize(dest) == GIB
    with open(dest, "rb") as f:
        assert f.read(5 * MIB) == raw.read_bytes()
    assert reply["glance_metadata"]["disk_format"] == "qcow2"


# -- a tree with the fix, and trees broken in other ways ----------------------------------------------
def test_the_fixed_tree_converts_the_chain_exactly(fixed, chain, tmp_path):
    assert fixed.ready["path"] == os.path.join(fixed.cinder_src, "cinder")      # the tree, not the package
    reply, dest, log = convert(fixed, chain["image"], chain["path"], tmp_path)
    assert os.path.getsize(dest) == GIB                 # the volume keeps its size
    with open(dest, "rb") as f:
        assert f.read(len(chain["expected"])) == chain["expected"]
        assert f.read(MIB) == bytes(MIB)
    meta = reply["glance_metadata"]
    assert (meta["image_id"], meta["disk_format"], meta["container_format"]) == (chain["image"]["id"], "vhd", "ovf")
    assert meta["os_distro"] == "cirros"                 # Cinder's own glance translation of the record
    assert reply["seconds"] > 0
    assert "qemu-img convert" in log.read_text() and "-f vpc" in log.read_text()


@pytest.mark.parametrize("variant, function, meaning", [
    ("no-relink", "coalesce_vhd", "not relinked (vhd-util modify -p)"),
    ("no-resize", "coalesce_vhd", "not grown to the child's size (vhd-util resize)"),
])
def test_a_tree_missing_a_step_fails_naming_it(tmp_path_factory, chain, tmp_path, variant, function, meaning):
    worker = worker_for(tmp_path_factory, variant)
    try:
        with pytest.raises(CinderFailed) as caught:
            convert(worker, chain["image"], chain["path"], tmp_path)
    finally:
        worker.stop()
    diagnosis = cinder_failure(str(caught.value))
    assert diagnosis.function == function
    assert diagnosis.command.startswith("vhd-util coalesce -n ")
    assert meaning in diagnosis.meaning, str(diagnosis)


# -- the worker and its inputs ---------------------------------------------------------------------------
def test_the_worker_answers_bad_requests_and_comes_back_after_dying(installed, chain, tmp_path):
    assert installed.request({"op": "nonsense"}) == {"ok": False, "error": "unknown op 'nonsense'",
                                                     "exception": "ProtocolError"}
    installed.proc.stdin.write("{not json\n")
    installed.proc.stdin.flush()
    from xen_vhd_tempest.lab.volume.cinder import _read_line
    assert json.loads(_read_line(installed.proc, 30))["exception"] == "ProtocolError"
    pid = installed.ready["pid"]
    installed.proc.kill()
    installed.proc.wait()
    assert installed.request({"op": "nonsense"})["ok"] is False       # restarted on demand
    assert installed.ready["pid"] != pid


def test_a_tree_that_is_not_cinder_is_one_line(tmp_path):
    with pytest.raises(ValueError,
                       match=r"^cinder_src .*: not a Cinder source tree \(no cinder/image/image_utils.py\)$"):
        validate_cinder_src(tmp_path)
    with pytest.raises(ValueError, match="no such directory"):
        validate_cinder_src(tmp_path / "nope")
    env = {k: v for k, v in os.environ.items() if k != "OS_CLOUD"}
    env["PYTHONPATH"] = ROOT
    for argv in (["run", "--cinder", str(tmp_path)], ["lab", "up", "--state-dir", str(tmp_path / "s"),
                                                       "--cinder", str(tmp_path)]):
        r = subprocess.run([sys.executable, "-m", "xen_vhd_tempest.cli", *argv], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().endswith(f"--cinder {tmp_path}: not a Cinder source tree "
                                         "(no cinder/image/image_utils.py)"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "xen_vhd_tempest.cli", "run", "--os-cloud", "mycloud", "--cinder"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == ("xen-vhd-tempest run: --cinder/--vhd-util set the embedded "
                                                      "lab's Cinder; cloud mycloud runs its own"), r.stderr


def test_a_tree_that_does_not_import_is_one_line(tmp_path):
    tree = tmp_path / "tree"
    (tree / "cinder" / "image").mkdir(parents=True)
    (tree / "cinder" / "image" / "image_utils.py").write_text("")
    (tree / "cinder" / "__init__.py").write_text("raise ImportError('half a patch')\n")
    worker = CinderWorker(tmp_path / "state", cinder_src=validate_cinder_src(tree), log=lambda m: None)
    with pytest.raises(CinderUnavailable) as caught:
        worker.start()
    assert str(caught.value) == f"Cinder from {tree} cannot run: ImportError: half a patch"
    assert not worker.alive()


def test_a_message_without_a_command_is_quoted_as_it_is():
    d = cinder_failure("copy image to volume: An unknown error occurred.")
    assert (d.function, d.command, d.meaning) == (None, None, None)
    assert str(d) == "Cinder could not make the volume: copy image to volume: An unknown error occurred."

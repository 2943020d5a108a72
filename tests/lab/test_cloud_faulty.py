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

"""Each faulty volume-from-image conversion really produces its fault — without guests.

A XenServer chain shaped like a nova backup (base 8 MiB, resize layer to 1 GiB, leaf with a
partial block-0 write, a write past the base and one in the last MiB) is built locally with the
reference converter's builder, uploaded as vhd/ovf, and turned into a volume in every mode.
"""

from __future__ import annotations

import os

import pytest
from cloudfixtures import private_dir, running_lab, same_content, wait_volume

from converter.variants import VARIANTS

pytestmark = pytest.mark.lab

MIB = 1024 * 1024
GIB = 1024 * MIB
BASE = 8 * MIB
SECTOR_MARK = 40 * 512
BEYOND_BASE = 100 * MIB
LAST_MIB = GIB - MIB
MODES = list(VARIANTS)      # every known-wrong conversion the converter defines


@pytest.fixture(scope="module")
def lab():
    yield from running_lab()


@pytest.fixture(scope="module")
def chain(lab):
    from converter.builder import ImageBuilder, build_pattern
    from converter.convert import convert_image
    with private_dir("xvt-faulty-test-") as d:
        b = ImageBuilder(build_pattern(0, BASE))
        b.snapshot(size=GIB)                       # the instance's resize layer (empty)
        b.snapshot()                               # the leaf: what the guest wrote
        b.write(SECTOR_MARK, b"\xa5" * 512)
        b.write(BEYOND_BASE, b"\x5a" * MIB)
        b.write(LAST_MIB, b"\x3c" * MIB)
        tgz = d / "chain.tgz"
        b.build(str(tgz))
        ref = d / "ref.raw"
        convert_image(str(tgz), str(ref), output_format="raw")
        glance = lab.glance()
        image = glance.images.create(name="faulty-chain", disk_format="vhd", container_format="ovf")
        with open(tgz, "rb") as f:
            glance.images.upload(image.id, f)
        yield {"image": image, "ref": ref, "tgz": tgz}
        glance.images.delete(image.id)


def _read(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _volume(lab, image_id, mode):
    cinder = lab.cinder()
    lab.set_mode(mode)
    try:
        vol = cinder.volumes.create(1, imageRef=image_id, name=f"faulty-{mode}")
        return cinder, wait_volume(cinder, vol.id, timeout=120)
    finally:
        lab.set_mode("reference")


def test_reference_mode_is_the_reference_conversion(lab, chain):
    cinder, vol = _volume(lab, chain["image"].id, "reference")
    try:
        assert same_content(lab.volume_path(vol.id), chain["ref"])
        assert _read(chain["ref"], SECTOR_MARK, 512) == b"\xa5" * 512
        assert _read(chain["ref"], BEYOND_BASE, 4) == b"\x5a" * 4
    finally:
        cinder.volumes.delete(vol.id)


@pytest.mark.parametrize("mode", MODES)
def test_faulty_mode_produces_its_fault(lab, chain, mode):
    cinder, vol = _volume(lab, chain["image"].id, mode)
    path, ref = lab.volume_path(vol.id), chain["ref"]
    try:
        assert os.path.getsize(path) == GIB
        first = _read(ref, 0, 512)
        if mode == "raw-copy":
            assert _read(path, 0, 2) == b"\x1f\x8b"
        elif mode == "leaf-only":
            assert _read(path, 0, 512) != first                      # the base's data is gone
            assert _read(path, SECTOR_MARK, 512) == b"\xa5" * 512
        elif mode == "no-resize":
            assert _read(path, 0, BASE) == _read(ref, 0, BASE)
            assert _read(path, BEYOND_BASE, MIB) == bytes(MIB)
        elif mode == "ignore-bitmaps":
            assert _read(path, 0, 512) == bytes(512)                  # block 0 taken whole from the leaf
            assert _read(path, SECTOR_MARK, 512) == b"\xa5" * 512
        elif mode == "wrong-order":
            assert _read(path, BEYOND_BASE, MIB) != b"\x5a" * MIB
        elif mode == "truncate":
            assert _read(path, LAST_MIB, MIB) == bytes(MIB)
            assert _read(path, 0, BASE) == _read(ref, 0, BASE)
        else:
            pytest.fail(f"no expectation written for the known-wrong conversion {mode!r}")
        assert not same_content(path, ref)
    finally:
        cinder.volumes.delete(vol.id)

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

"""The diagnosis names each known conversion bug from a volume's bytes (no cloud needed:
the 'volume' is the bug's own output, read MiB by MiB as the guest would)."""

import hashlib

import pytest

from converter.builder import ImageBuilder
from converter.variants import VARIANTS, convert_variant
from tests.conftest import MIB, disk_bytes
from xen_vhd_tempest.scenario.diagnose import diagnose
from xen_vhd_tempest.scenario.reference import build_reference


@pytest.fixture(scope="module")
def backup(tmp_path_factory):
    """A backup-shaped image: base, resize layer, leaf with writes over and past the base."""
    d = tmp_path_factory.mktemp("diag")
    b = ImageBuilder(disk_bytes(8 * MIB, 3))
    b.snapshot(size=24 * MIB)
    b.snapshot()
    b.write(5000, disk_bytes(70_000, 4))               # over base data, partial blocks
    b.write(12 * MIB + 77, disk_bytes(3 * MIB, 5))     # past the base's end
    b.write(24 * MIB - 3000, b"end" * 900)             # in the last MiB
    image = d / "backup.tgz"
    b.build(image, order="shuffle")
    ref = build_reference(image, d / "ref.raw", disk_format="vhd", container_format="ovf")
    return ref, d


def volume_reader(path, size):
    """A volume made by writing ``path`` to a fresh ``size``-byte disk, read per MiB like the guest."""
    with open(path, "rb") as f:
        data = f.read()
    data = data[:size].ljust(size, b"\0")
    return [hashlib.md5(data[i:i + MIB]).hexdigest() for i in range(0, size, MIB)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_bug_is_named(backup, variant):
    ref, d = backup
    out = d / f"{variant}.raw"
    convert_variant(ref.image_path, out, variant)
    volume = volume_reader(out, ref.size)
    first = next(i for i, (a, b) in enumerate(zip(ref.mib_md5s, volume)) if a != b)
    asked = []

    def probe(mibs):
        asked.extend(mibs)
        return {i: volume[i] for i in mibs}

    found = diagnose(ref, first, volume[first], probe, str(d))
    assert found.variant == variant, found.text
    assert f"matches the '{variant}' conversion" in found.text
    assert len(asked) < 40                 # a few targeted MiBs, not the whole disk


def test_an_unknown_difference_still_says_where(backup):
    ref, d = backup
    volume = list(ref.mib_md5s)
    volume[9] = hashlib.md5(b"x" * MIB).hexdigest()
    found = diagnose(ref, 9, volume[9], lambda mibs: {i: volume[i] for i in mibs}, str(d))
    assert found.variant is None
    assert "from MiB 9 on" in found.text and "past the base's end" in found.text

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

"""The lab's shared pieces, without a running lab: the one tgz extractor, the guest disk's
partition table, the address allocator, the error bodies and the files written for clients."""

import configparser
import io
import os
import tarfile
from pathlib import Path

import pytest
import yaml

from converter import archive
from converter.builder import ImageBuilder
from converter.errors import ArchiveError
from tests.conftest import MIB, disk_bytes
from xen_vhd_tempest.lab import addresses, client_files
from xen_vhd_tempest.lab.errors import BODIES, LabError, Unauthorized, bad_request
from xen_vhd_tempest.lab.guest import disk


def test_extract_members_writes_only_its_own_names_newest_first(tmp_path):
    b = ImageBuilder(disk_bytes(4 * MIB, 5))
    b.snapshot()
    b.write(MIB, b"\x42" * 4096)
    image = b.build(str(tmp_path / "i.tgz"))
    out = tmp_path / "out"
    out.mkdir()
    found = archive.extract_members(image, out)
    assert [Path(p).name for p, _ in found] == ["0.vhd", "1.vhd"]
    assert [w.endswith(("0.vhd", "1.vhd")) for _, w in found] == [True, True]
    assert sorted(os.listdir(out)) == ["0.vhd", "1.vhd"]
    with tarfile.open(image) as tar:
        for made, name in zip(found, ("./0.vhd", "./1.vhd")):
            assert Path(made[0]).read_bytes() == tar.extractfile(name).read()


def test_extract_members_refuses_a_chain_position_twice(tmp_path):
    src = tmp_path / "x.vhd"
    src.write_bytes(b"\0" * 512)
    tgz = tmp_path / "dup.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(src, "./0.vhd")
        tar.add(src, "0.vhd")
    with pytest.raises(ArchiveError, match="chain position 0 again"):
        archive.extract_members(tgz, tmp_path)


def test_partition_table_reads_back_what_it_writes(tmp_path):
    image = tmp_path / "d.raw"
    with open(image, "wb") as f:
        f.truncate(8 * MIB)
        f.write(disk.mbr_bytes(b"\xfa" * 440, [(2048, 4096, 0x0E, True), (6144, 8192, disk.LINUX, False)], 7))
    assert disk.partitions(image) == [disk.Partition(0, 0x0E, MIB, 4096, True),
                                      disk.Partition(1, disk.LINUX, 3 * MIB, 8192, False)]
    assert disk.host_keys(image) == []                 # no ext4 there: nothing, not an error
    assert not disk.extract_kernel(image, tmp_path / "k")


def test_partitions_of_a_disk_without_mbr(tmp_path):
    blank = tmp_path / "blank"
    blank.write_bytes(bytes(4096))
    assert disk.partitions(blank) == [] and disk.partitions(tmp_path / "missing") == []


def test_addresses_are_held_until_released():
    first = addresses.allocate()
    second = addresses.allocate(exclude=[first])
    assert first != second and first[0].startswith("127.")
    addresses.release(first)
    addresses.release(second)
    assert addresses.mac_for("127.0.0.12", 22) == "fa:16:3e:0c:00:16"


def test_each_service_words_a_lab_error_its_way():
    error = bad_request("no such flavor")
    assert BODIES["compute"](error) == {"badRequest": {"code": 400, "message": "no such flavor"}}
    assert BODIES["volume"](error) == {"badRequest": {"code": 400, "message": "no such flavor"}}
    assert BODIES["image"](error) == "400 Bad Request\n\nno such flavor\n\n   "
    assert BODIES["identity"](LabError(404, "gone")) == {"error": {"code": 404, "title": "Not Found",
                                                                   "message": "gone"}}
    assert BODIES["compute"](LabError(503, "down", kind="badRequest")) == {
        "computeFault": {"code": 503, "message": "down"}}              # nova keys by status
    assert Unauthorized().style == "identity" and Unauthorized().status == 401


def test_client_files_parse_back():
    creds = {"auth_url": "http://127.0.0.1:1/identity",
             "admin": {"username": "admin", "password": "a: b #c", "project_name": "admin"},
             "demo": {"username": "demo", "password": "%(x)s", "project_name": "demo"}}
    clouds = yaml.safe_load(client_files.clouds_yaml(creds))["clouds"]
    assert clouds["xen-vhd-lab-admin"]["auth"]["password"] == "a: b #c"
    assert clouds["xen-vhd-lab"]["auth"]["username"] == "demo"
    accounts = yaml.safe_load(client_files.accounts_yaml(creds))
    assert [a["roles"] for a in accounts] == [["member"], ["admin"]]
    text = client_files.tempest_conf("http://127.0.0.1:1", state_dir=Path("/s"), creds=creds, image_id="img",
                                     raw_image=None)
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_file(io.StringIO(text))
    assert conf["auth"]["admin_password"] == "a: b #c"
    assert conf["compute"]["image_ref"] == "img" and conf["compute-feature-enabled"]["resize"] == "False"
    assert conf["xen_vhd"]["raw_image"] == "" and conf["network"]["public_network_id"] == ""

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

"""Tempest's own service clients against the lab: every response is validated against
tempest's JSON schemas of real Nova/Cinder/Glance responses (the lab's cheapest fidelity check).
"""

from __future__ import annotations

import io
import os
import time

import pytest
from cloudfixtures import running_lab, set_tempest_microversion, tempest_microversion

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    yield from running_lab()

COMPUTE_VERSIONS = [None, "2.3", "2.26", "2.47", "2.60", "2.73", "2.89", "2.96"]


def _provider(lab, who="demo"):
    from tempest.lib import auth
    c = lab.info["credentials"][who]
    creds = auth.KeystoneV3Credentials(username=c["username"], password=c["password"],
                                       project_name=c["project_name"], user_domain_name="Default",
                                       project_domain_name="Default")
    return auth.KeystoneV3AuthProvider(creds, f"{lab.auth_url}/v3", disable_ssl_certificate_validation=True)


@pytest.fixture(scope="module")
def clients(lab):
    from tempest.lib.services.compute import flavors_client, keypairs_client, servers_client
    from tempest.lib.services.image.v2 import images_client
    from tempest.lib.services.volume.v3 import volumes_client

    def make(who):
        p = _provider(lab, who)
        return {
            "servers": servers_client.ServersClient(p, "compute", "RegionOne"),
            "flavors": flavors_client.FlavorsClient(p, "compute", "RegionOne"),
            "keypairs": keypairs_client.KeyPairsClient(p, "compute", "RegionOne"),
            "images": images_client.ImagesClient(p, "image", "RegionOne"),
            "volumes": volumes_client.VolumesClient(p, "volumev3", "RegionOne"),
        }
    return {"demo": make("demo"), "admin": make("admin")}


@pytest.mark.parametrize("version", [None, "2.55", "2.61", "2.75"])
def test_flavors_match_tempest_schemas(clients, version):
    flavors = clients["demo"]["flavors"]
    with tempest_microversion(compute=version):
        listed = flavors.list_flavors()["flavors"]
        detailed = flavors.list_flavors(detail=True)["flavors"]
        assert {f["id"] for f in listed} == {f["id"] for f in detailed}
        shown = flavors.show_flavor("1")
        assert shown["flavor"]["disk"] == 1
        assert shown.response["x-openstack-nova-api-version"] == (version or "2.1")


@pytest.mark.parametrize("version", [None, "2.2", "2.10"])
def test_keypairs_match_tempest_schemas(clients, version):
    kp = clients["demo"]["keypairs"]
    name = f"tempest-kp-{version or 'base'}".replace(".", "-")
    with tempest_microversion(compute=version):
        created = kp.create_keypair(name=name)["keypair"]
        assert created["private_key"]
        assert kp.show_keypair(name)["keypair"]["name"] == name
        assert name in {k["keypair"]["name"] for k in kp.list_keypairs()["keypairs"]}
        kp.delete_keypair(name)


def test_servers_match_tempest_schemas(lab, clients):
    """Create (with an image that fails XenServer's import checks, so no guest boots), show at
    several microversions as demo and admin, list, list detail, delete."""
    import tarfile
    import tempfile
    images = clients["demo"]["images"]
    with tempfile.TemporaryDirectory() as d:
        junk = os.path.join(d, "0.vhd")
        with open(junk, "wb") as f:
            f.write(os.urandom(2048))
        tgz = os.path.join(d, "bad.tgz")
        with tarfile.open(tgz, "w:gz") as tar:
            tar.add(junk, arcname="./0.vhd")
        image = images.create_image(name="tempest-broken", disk_format="vhd", container_format="ovf")
        with open(tgz, "rb") as f:
            images.store_image_file(image["id"], f)
    servers = clients["demo"]["servers"]
    try:
        server = servers.create_server(name="tempest-srv", imageRef=image["id"], flavorRef="1")["server"]
        deadline = time.monotonic() + 60
        while servers.show_server(server["id"])["server"]["status"] == "BUILD":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        for who in ("demo", "admin"):
            client = clients[who]["servers"]
            for version in COMPUTE_VERSIONS:
                with tempest_microversion(compute=version):
                    shown = client.show_server(server["id"])["server"]
                    assert shown["status"] == "ERROR" and shown["fault"]["message"]
                    listed = client.list_servers(detail=True, all_tenants=(who == "admin"))["servers"]
                    assert server["id"] in {s["id"] for s in listed}
                    client.list_servers()
        servers.delete_server(server["id"])
        from tempest.lib import exceptions
        deadline = time.monotonic() + 60
        while True:
            try:
                servers.show_server(server["id"])
            except exceptions.NotFound:
                break
            assert time.monotonic() < deadline
            time.sleep(0.3)
    finally:
        images.delete_image(image["id"])


def test_images_match_tempest_schemas(clients):
    images = clients["demo"]["images"]
    image = images.create_image(name="tempest-img", disk_format="raw", container_format="bare",
                                visibility="private")
    assert image["status"] == "queued"
    data = os.urandom(100000)
    images.store_image_file(image["id"], io.BytesIO(data))
    shown = images.show_image(image["id"])
    assert shown["status"] == "active" and shown["size"] == len(data)
    body = images.show_image_file(image["id"])
    assert body.data == data
    assert image["id"] in {i["id"] for i in images.list_images()["images"]}
    images.delete_image(image["id"])
    images.wait_for_resource_deletion(image["id"])


@pytest.mark.parametrize("version", [None, "3.48", "3.61", "3.63", "3.65"])
@pytest.mark.parametrize("who", ["demo", "admin"])
def test_volumes_match_tempest_schemas(clients, version, who):
    volumes = clients[who]["volumes"]
    set_tempest_microversion(volume=version)
    vol = volumes.create_volume(size=1, name=f"tempest-vol-{who}")["volume"]
    try:
        deadline = time.monotonic() + 60
        while volumes.show_volume(vol["id"])["volume"]["status"] != "available":
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert vol["id"] in {v["id"] for v in volumes.list_volumes()["volumes"]}
        assert vol["id"] in {v["id"] for v in volumes.list_volumes(detail=True)["volumes"]}
        volumes.delete_volume(vol["id"])
        volumes.wait_for_resource_deletion(vol["id"])
    finally:
        set_tempest_microversion()

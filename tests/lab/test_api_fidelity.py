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

"""What stock tempest and the openstack CLI need of the lab, call by call: keystone's admin API for
dynamic credentials, the generated tempest.conf, the services' default roles (reader, member,
admin), trailing-slash collections, keypair paging, createImage.
"""

from __future__ import annotations

import configparser
import json

import pytest
from cloudfixtures import running_guest_lab, wait_for

pytestmark = pytest.mark.lab

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def lab():
    yield from running_guest_lab()


def call(lab, method, path, body=None, *, who="admin", token=None, headers=None):
    import requests
    h = dict(JSON, **(headers or {}))
    h["X-Auth-Token"] = token or lab.token(who)
    return requests.request(method, lab.url + path, headers=h, data=json.dumps(body) if body is not None else None,
                            timeout=60)


def password_token(lab, user, password, project_id):
    import requests
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"id": project_id}}}}
    return requests.post(f"{lab.auth_url}/v3/auth/tokens", json=body, timeout=60)


def test_admin_makes_a_project_user_and_role_as_tempest_dynamic_credentials_do(lab):
    project = call(lab, "POST", "/identity/v3/projects",
                   {"project": {"name": "dyn-p", "description": "d", "domain_id": "default"}})
    assert project.status_code == 201, project.text
    pid = project.json()["project"]["id"]
    assert call(lab, "POST", "/identity/v3/projects", {"project": {"name": "dyn-p"}}).status_code == 409
    user = call(lab, "POST", "/identity/v3/users",
                {"user": {"name": "dyn-u", "password": "pw", "domain_id": "default"}})
    assert user.status_code == 201, user.text
    uid = user.json()["user"]["id"]
    roles = {r["name"]: r["id"] for r in call(lab, "GET", "/identity/v3/roles").json()["roles"]}
    assert password_token(lab, "dyn-u", "pw", pid).status_code == 401        # no role on the project yet

    assert call(lab, "PUT", f"/identity/v3/projects/{pid}/users/{uid}/roles/{roles['member']}").status_code == 204
    token = password_token(lab, "dyn-u", "pw", pid)
    assert token.status_code == 201, token.text
    body = token.json()["token"]
    assert body["project"]["id"] == pid
    assert sorted(r["name"] for r in body["roles"]) == ["member", "reader"]      # member implies reader
    subject = token.headers["X-Subject-Token"]
    volumes = call(lab, "GET", f"/volume/v3/{pid}/volumes", token=subject)
    assert volumes.status_code == 200 and volumes.json()["volumes"] == []

    # only an admin manages identities; the bootstrap ones stay
    assert call(lab, "POST", "/identity/v3/users", {"user": {"name": "x"}}, who="demo").status_code == 403
    demo = lab.info["credentials"]["demo"]["username"]
    demo_id = call(lab, "GET", f"/identity/v3/users?name={demo}").json()["users"][0]["id"]
    assert call(lab, "DELETE", f"/identity/v3/users/{demo_id}").status_code == 403

    assert call(lab, "DELETE", f"/identity/v3/users/{uid}").status_code == 204
    assert call(lab, "GET", "/identity/v3/auth/catalog", token=subject).status_code == 401
    assert call(lab, "DELETE", f"/identity/v3/projects/{pid}").status_code == 204
    assert call(lab, "GET", f"/identity/v3/projects/{pid}").status_code == 404
    assert call(lab, "GET", "/identity/v3/domains?name=Default").json()["domains"][0]["id"] == "default"


def test_generated_tempest_conf_uses_dynamic_credentials_and_no_network_api(lab):
    conf = configparser.RawConfigParser()
    conf.read(lab.state_dir / "tempest.conf")
    assert conf.getboolean("auth", "use_dynamic_credentials")
    assert not conf.has_option("compute", "fixed_network_name")
    assert conf.get("service_available", "neutron") == "False"
    assert conf.get("compute-feature-enabled", "snapshot") == "True"
    assert conf.get("volume-feature-enabled", "snapshot") == "True"      # volume snapshots are served


def test_collections_with_a_trailing_slash_are_not_found_in_nova_glance_and_cinder(lab):
    pid = lab.session().get_project_id()
    # nova routes with ``routes.Mapper``: ``/servers/`` matches no route
    for path in ("/servers/", "/servers/detail/", "/flavors/", "/os-keypairs/", "/limits/"):
        r = call(lab, "GET", "/compute/v2.1" + path, who="demo")
        assert r.status_code == 404, (path, r.status_code)
        assert r.json()["itemNotFound"]["code"] == 404
    assert call(lab, "POST", "/compute/v2.1/servers/", {"server": {}}, who="demo").status_code == 404
    assert call(lab, "GET", "/compute/v2.1/servers", who="demo").status_code == 200
    assert call(lab, "GET", "/compute/v2.1/", who="demo").status_code == 200
    assert call(lab, "GET", "/image/v2/images/", who="demo").status_code == 404
    assert call(lab, "GET", "/image/v2/images", who="demo").status_code == 200
    assert call(lab, "GET", f"/volume/v3/{pid}/volumes/", who="demo").status_code == 404
    assert call(lab, "DELETE", f"/volume/v3/{pid}/volumes/", who="demo").status_code == 404
    assert call(lab, "GET", f"/volume/v3/{pid}/volumes", who="demo").status_code == 200
    assert call(lab, "GET", "/identity/v3/", who="demo").status_code == 200          # version roots take either


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_create_image_of_a_server_is_a_xenserver_chain_named_a_snapshot(lab):
    nova = lab.nova("2.60")
    glance = lab.glance()
    server = nova.servers.create("snap-me", lab.default_image_id, "1", nics="auto")
    try:
        wait_for(lambda: nova.servers.get(server.id), lambda s: s.status == "ACTIVE", failed=("ERROR",),
                 what="snap-me")
        image_id = nova.servers.create_image(server.id, "snap-me-image", {"purpose": "test"})
        image = wait_for(lambda: glance.images.get(image_id), lambda i: i.status == "active",
                         failed=("killed", "deleted"), what="snapshot image")
        assert (image.disk_format, image.container_format) == ("vhd", "ovf")
        assert (image.image_type, image.instance_uuid, image.purpose) == ("snapshot", server.id, "test")
        assert image.min_disk == 1
        with pytest.raises(Exception, match="is not valid"):
            nova.servers.create_image(server.id, "x" * 256)
        glance.images.delete(image_id)
    finally:
        nova.servers.delete(server.id)


def reader_token(lab, name):
    """A user with only ``reader`` on a new project, as tempest's ``project_reader`` persona."""
    pid = call(lab, "POST", "/identity/v3/projects", {"project": {"name": f"{name}-p"}}).json()["project"]["id"]
    uid = call(lab, "POST", "/identity/v3/users", {"user": {"name": f"{name}-u", "password": "pw"}}).json()["user"]["id"]
    roles = {r["name"]: r["id"] for r in call(lab, "GET", "/identity/v3/roles").json()["roles"]}
    assert call(lab, "PUT", f"/identity/v3/projects/{pid}/users/{uid}/roles/{roles['reader']}").status_code == 204
    token = password_token(lab, f"{name}-u", "pw", pid)
    assert token.status_code == 201, token.text
    assert [r["name"] for r in token.json()["token"]["roles"]] == ["reader"]
    return pid, uid, token.headers["X-Subject-Token"]


def test_a_reader_reads_a_member_writes_an_admin_manages_flavors(lab):
    pid, uid, reader = reader_token(lab, "rbac")
    try:
        # reads: reader is enough
        for path in ("/compute/v2.1/servers", "/compute/v2.1/servers/detail", "/compute/v2.1/flavors",
                     "/compute/v2.1/limits", "/image/v2/images", f"/volume/v3/{pid}/volumes",
                     f"/volume/v3/{pid}/types"):
            r = call(lab, "GET", path, token=reader)
            assert r.status_code == 200, (path, r.status_code, r.text)
        # writes: member, in each service's own 403 body
        r = call(lab, "POST", "/compute/v2.1/servers",
                 {"server": {"name": "x", "imageRef": lab.default_image_id, "flavorRef": "1"}}, token=reader)
        assert r.status_code == 403, r.text
        assert r.json() == {"forbidden": {"code": 403, "message":
                                          "Policy doesn't allow os_compute_api:servers:create to be performed."}}
        r = call(lab, "POST", f"/volume/v3/{pid}/volumes", {"volume": {"size": 1}}, token=reader)
        assert r.status_code == 403, r.text
        assert r.json() == {"forbidden": {"code": 403, "message": "Policy doesn't allow volume:create to be performed."}}
        r = call(lab, "POST", "/image/v2/images", {"name": "x"}, token=reader)
        assert r.status_code == 403, r.text
        assert r.headers["Content-Type"].startswith("text/plain")
        assert "You are not authorized to complete add_image action." in r.text
        # a demo (member) image: the reader of another project cannot touch it, nor can one of its own
        image = call(lab, "POST", "/image/v2/images", {"name": "rbac-img", "disk_format": "raw",
                                                       "container_format": "bare"}, who="demo")
        assert image.status_code == 201, image.text
        iid = image.json()["id"]
        assert call(lab, "PATCH", f"/image/v2/images/{iid}", [{"op": "replace", "path": "/name", "value": "y"}],
                    token=reader, headers={"Content-Type": "application/openstack-images-v2.1-json-patch"}
                    ).status_code == 403
        assert call(lab, "DELETE", f"/image/v2/images/{iid}", token=reader).status_code == 403
        assert call(lab, "DELETE", f"/image/v2/images/{iid}", who="demo").status_code == 204
        # nova's keypairs belong to the user: a reader keeps their own
        r = call(lab, "POST", "/compute/v2.1/os-keypairs", {"keypair": {"name": "rbac-key"}}, token=reader,
                 headers={"X-OpenStack-Nova-API-Version": "2.10"})
        assert r.status_code == 201, r.text
        assert call(lab, "DELETE", "/compute/v2.1/os-keypairs/rbac-key", token=reader,
                    headers={"X-OpenStack-Nova-API-Version": "2.10"}).status_code == 204
        # admin-only: a member may not create flavors
        r = call(lab, "POST", "/compute/v2.1/flavors", {"flavor": {"name": "f", "ram": 64, "vcpus": 1, "disk": 1}},
                 who="demo")
        assert r.status_code == 403
        assert "os_compute_api:os-flavor-manage:create" in r.json()["forbidden"]["message"]
    finally:
        call(lab, "DELETE", f"/identity/v3/users/{uid}")
        call(lab, "DELETE", f"/identity/v3/projects/{pid}")


def test_keypairs_page_by_name_from_microversion_2_35(lab):
    v235 = {"X-OpenStack-Nova-API-Version": "2.35"}
    names = ["page-c", "page-a", "page-b"]
    for name in names:
        assert call(lab, "POST", "/compute/v2.1/os-keypairs", {"keypair": {"name": name}}, who="demo",
                    headers=v235).status_code == 201
    try:
        first = call(lab, "GET", "/compute/v2.1/os-keypairs?limit=2", who="demo", headers=v235).json()
        got = [k["keypair"]["name"] for k in first["keypairs"]]
        assert got == sorted(got) and len(got) == 2
        link = first["keypairs_links"][0]
        assert link["rel"] == "next" and link["href"].endswith(f"limit=2&marker={got[-1]}")
        rest = call(lab, "GET", link["href"][len(lab.url):], who="demo", headers=v235).json()
        mine = got + [k["keypair"]["name"] for k in rest["keypairs"]]
        assert [n for n in mine if n.startswith("page-")] == sorted(names)
        assert "keypairs_links" not in rest or len(rest["keypairs"]) == 2
        r = call(lab, "GET", "/compute/v2.1/os-keypairs?marker=nope", who="demo", headers=v235)
        assert r.status_code == 400 and r.json()["badRequest"]["message"] == "Marker nope could not be found."
        assert call(lab, "GET", "/compute/v2.1/os-keypairs?limit=-1", who="demo", headers=v235).status_code == 400
        # before 2.35 nova ignores the paging parameters
        old = call(lab, "GET", "/compute/v2.1/os-keypairs?limit=1&marker=nope", who="demo",
                   headers={"X-OpenStack-Nova-API-Version": "2.34"})
        assert old.status_code == 200 and "keypairs_links" not in old.json() and len(old.json()["keypairs"]) >= 3
    finally:
        for name in names:
            call(lab, "DELETE", f"/compute/v2.1/os-keypairs/{name}", who="demo", headers=v235)


def test_the_issues_other_gaps_answer_as_the_real_services_do(lab):
    """Issue #17's "other gaps found on the way", one call each."""
    from tempest.lib.api_schema.response.volume import volumes as volume_schemas
    from tempest.lib.common import rest_client
    pid = lab.session().get_project_id()
    # an image whose min_ram is above the flavor's RAM: nova's 400 at create
    image = call(lab, "POST", "/image/v2/images", {"name": "big-ram", "disk_format": "raw",
                                                   "container_format": "bare", "min_ram": 999999}, who="demo")
    assert image.status_code == 201, image.text
    iid = image.json()["id"]
    try:
        import requests
        up = requests.put(f"{lab.url}/image/v2/images/{iid}/file", data=b"x" * 512, timeout=60,
                          headers={"X-Auth-Token": lab.token("demo"), "Content-Type": "application/octet-stream"})
        assert up.status_code == 204, up.text
        r = call(lab, "POST", "/compute/v2.1/servers", {"server": {"name": "x", "imageRef": iid, "flavorRef": "1"}},
                 who="demo")
        assert r.status_code == 400, r.text
        assert "Flavor's memory is too small for requested image." in r.json()["badRequest"]["message"]
    finally:
        call(lab, "DELETE", f"/image/v2/images/{iid}", who="demo")
    # a volume type that does not exist: cinder's 404
    r = call(lab, "POST", f"/volume/v3/{pid}/volumes", {"volume": {"size": 1, "volume_type": "nope"}}, who="demo")
    assert r.status_code == 404 and r.json()["itemNotFound"]["code"] == 404
    # glance's own os_glance_* namespace: 403
    r = call(lab, "POST", "/image/v2/images", {"name": "x", "os_glance_importing_to_stores": "a"}, who="demo")
    assert r.status_code == 403, r.text
    # PUT /volumes/{id} answers what tempest's update_volume schema accepts
    vol = call(lab, "POST", f"/volume/v3/{pid}/volumes", {"volume": {"size": 1, "name": "upd"}}, who="demo")
    assert vol.status_code == 202, vol.text
    vid = vol.json()["volume"]["id"]
    try:
        wait_for(lambda: call(lab, "GET", f"/volume/v3/{pid}/volumes/{vid}", who="demo").json()["volume"],
                 lambda v: v["status"] == "available", failed=("error",), what="volume upd")
        r = call(lab, "PUT", f"/volume/v3/{pid}/volumes/{vid}", {"volume": {"name": "upd2", "description": "d"}},
                 who="demo")
        assert r.status_code == 200, r.text
        rest_client.RestClient.validate_response(volume_schemas.update_volume,
                                                 type("Resp", (), {"status": r.status_code})(), r.json())
        assert r.json()["volume"]["name"] == "upd2"
    finally:
        call(lab, "DELETE", f"/volume/v3/{pid}/volumes/{vid}", who="demo")

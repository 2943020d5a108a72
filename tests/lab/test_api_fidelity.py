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
dynamic credentials, the generated tempest.conf, trailing-slash collections, createImage.
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
    assert conf.get("volume-feature-enabled", "snapshot") == "False"


def test_collections_with_a_trailing_slash_are_not_found_in_glance_and_cinder(lab):
    pid = lab.session().get_project_id()
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

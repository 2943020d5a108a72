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

"""The lab's APIs through unmodified python-*clients and raw HTTP: auth, catalog, 401s,
flavors, keypairs, images (chunked upload, download, checksums), volumes, error codes.

No guest boots here except through failure paths (fast); see test_cloud_xenserver.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time

import pytest
from cloudfixtures import running_lab, wait_gone, wait_image, wait_server, wait_volume

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    yield from running_lab()


# -- identity ---------------------------------------------------------------------------------------
def test_password_auth_gives_token_and_catalog(lab):
    sess = lab.session()
    token = sess.get_token()
    assert token
    access = sess.auth.get_access(sess)
    types = {s["type"] for s in access.service_catalog.catalog}
    assert {"identity", "compute", "image", "volumev3", "block-storage"} <= types
    compute = sess.get_endpoint(service_type="compute", interface="public")
    assert compute == f"{lab.url}/compute/v2.1"
    volume = sess.get_endpoint(service_type="volumev3", interface="public")
    assert volume.endswith(f"/volume/v3/{access.project_id}")
    for url in (compute, volume, lab.endpoint("image")):
        assert url.startswith("http://127.")


def test_token_validation_and_revocation(lab):
    admin = lab.token("admin")
    demo = lab.session("demo").get_token()
    r = lab.request("GET", f"{lab.auth_url}/v3/auth/tokens", token=False,
                    headers={"X-Auth-Token": admin, "X-Subject-Token": demo})
    assert r.status_code == 200
    assert r.headers["X-Subject-Token"] == demo
    assert r.json()["token"]["user"]["name"] == "demo"
    # a fresh token, revoked, no longer works anywhere
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "password": lab.info["credentials"]["demo"]["password"], "domain": {"id": "default"}}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}}
    r = lab.request("POST", f"{lab.auth_url}/v3/auth/tokens", token=False, data=json.dumps(body),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 201
    victim = r.headers["X-Subject-Token"]
    assert "catalog" in r.json()["token"]
    r = lab.request("DELETE", f"{lab.auth_url}/v3/auth/tokens", token=False,
                    headers={"X-Auth-Token": admin, "X-Subject-Token": victim})
    assert r.status_code == 204
    r = lab.request("GET", f"{lab.url}/compute/v2.1/flavors", token=False, headers={"X-Auth-Token": victim})
    assert r.status_code == 401


def test_bad_password_is_401(lab):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "password": "wrong", "domain": {"id": "default"}}}}}}
    r = lab.request("POST", f"{lab.auth_url}/v3/auth/tokens", token=False, data=json.dumps(body),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == 401


@pytest.mark.parametrize("path", ["/compute/v2.1/servers", "/compute/v2.1/flavors", "/image/v2/images",
                                  "/volume/v3/{project}/volumes", "/lab/settings"])
@pytest.mark.parametrize("token", [None, "not-a-token", "forged.0123456789abcdef0123456789abcdef"])
def test_every_service_is_401_without_a_valid_token(lab, path, token):
    project = lab.session().get_project_id()
    headers = {"X-Auth-Token": token} if token else {}
    r = lab.request("GET", lab.url + path.format(project=project), token=False, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == 401
    assert "Keystone uri=" in r.headers.get("WWW-Authenticate", "")


def test_tokens_expire(lab):
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    lab.set_setting(token_ttl=2)
    try:
        c = lab.info["credentials"]["demo"]
        auth = v3.Password(auth_url=lab.auth_url, username=c["username"], password=c["password"],
                           project_name="demo", user_domain_name="Default", project_domain_name="Default")
        token = session.Session(auth=auth).get_token()
        r = lab.request("GET", f"{lab.url}/compute/v2.1/flavors", token=False, headers={"X-Auth-Token": token})
        assert r.status_code == 200
        time.sleep(2.5)
        r = lab.request("GET", f"{lab.url}/compute/v2.1/flavors", token=False, headers={"X-Auth-Token": token})
        assert r.status_code == 401
    finally:
        lab.set_setting(token_ttl=3600)


def test_version_documents(lab):
    r = lab.request("GET", f"{lab.url}/compute/", token=False)
    versions = r.json()["versions"]
    assert versions[0]["id"] == "v2.1" and versions[0]["min_version"] == "2.1"
    r = lab.request("GET", f"{lab.url}/image/", token=False)
    assert r.status_code == 300 and any(v["status"] == "CURRENT" for v in r.json()["versions"])
    r = lab.request("GET", f"{lab.url}/volume/", token=False)
    assert r.json()["versions"][0]["id"] == "v3.0"
    r = lab.request("GET", f"{lab.url}/identity/v3", token=False)
    assert r.json()["version"]["id"].startswith("v3")


def test_microversion_headers(lab):
    r = lab.request("GET", f"{lab.url}/compute/v2.1/flavors/1",
                    headers={"OpenStack-API-Version": "compute 2.61"})
    assert r.status_code == 200
    assert r.headers["OpenStack-API-Version"] == "compute 2.61"
    assert r.headers["X-OpenStack-Nova-API-Version"] == "2.61"
    assert "extra_specs" in r.json()["flavor"]
    r = lab.request("GET", f"{lab.url}/compute/v2.1/flavors/1")
    assert r.headers["OpenStack-API-Version"] == "compute 2.1"
    assert "extra_specs" not in r.json()["flavor"]
    r = lab.request("GET", f"{lab.url}/compute/v2.1/flavors", headers={"OpenStack-API-Version": "compute 2.999"})
    assert r.status_code == 406
    r = lab.request("GET", f"{lab.url}/compute/v2.1/flavors", headers={"OpenStack-API-Version": "compute x"})
    assert r.status_code == 400


# -- compute ----------------------------------------------------------------------------------------
def test_flavors_like_devstack(lab):
    nova = lab.nova()
    flavors = {f.name: f for f in nova.flavors.list()}
    assert flavors["m1.tiny"].disk == 1
    assert {"m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge", "m1.nano", "m1.micro"} <= set(flavors)
    assert nova.flavors.get("1").name == "m1.tiny"
    from novaclient import exceptions
    with pytest.raises(exceptions.NotFound):
        nova.flavors.get("does-not-exist")


def test_keypairs_generate_import_delete(lab):
    from novaclient import exceptions
    nova = lab.nova()
    kp = nova.keypairs.create("gen-key")
    try:
        assert kp.private_key.startswith("-----BEGIN")
        from cloudfixtures import private_key
        pkey = private_key(kp.private_key)
        assert kp.public_key.split()[1] == pkey.get_base64()
        with pytest.raises(exceptions.Conflict):
            nova.keypairs.create("gen-key")
        imported = nova.keypairs.create("imp-key", public_key=kp.public_key)
        assert imported.fingerprint == kp.fingerprint
        assert not hasattr(imported, "private_key") or not imported.private_key
        assert {k.name for k in nova.keypairs.list()} >= {"gen-key", "imp-key"}
        assert nova.keypairs.get("imp-key").public_key == kp.public_key
        with pytest.raises(exceptions.BadRequest):
            nova.keypairs.create("bad-key", public_key="ssh-rsa not-base64!")
    finally:
        for name in ("gen-key", "imp-key"):
            try:
                nova.keypairs.delete(name)
            except exceptions.NotFound:
                pass
    with pytest.raises(exceptions.NotFound):
        nova.keypairs.get("gen-key")


def test_server_bad_requests(lab):
    from novaclient import exceptions
    nova = lab.nova()
    with pytest.raises(exceptions.BadRequest):
        nova.servers.create("x", image=lab.default_image_id, flavor="nope", nics="none")
    with pytest.raises(exceptions.BadRequest):
        nova.servers.create("x", image="00000000-0000-0000-0000-000000000000", flavor="1", nics="none")
    with pytest.raises(exceptions.BadRequest):
        nova.servers.create("x", image=lab.default_image_id, flavor="1", nics="none", key_name="no-such-key")
    with pytest.raises(exceptions.NotFound):
        nova.servers.get("00000000-0000-0000-0000-000000000000")
    compute = lab.endpoint("compute")
    r = lab.request("POST", f"{compute}/servers", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "badRequest" in r.json()
    r = lab.request("POST", f"{compute}/servers", data=b"{" + b" " * 200000 + b"}",
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = lab.request("POST", f"{compute}/servers", data=json.dumps({"server": {"name": "x", "flavorRef": "1"}}),
                    headers={"Content-Type": "application/json", "OpenStack-API-Version": "compute 2.60"})
    assert r.status_code == 400  # networks is required from 2.37


def test_boot_of_a_broken_xenserver_image_goes_error_with_fault(lab, tmp_path):
    """XenServer's import checks run at boot: a tgz whose 0.vhd is garbage → ERROR + fault."""
    import tarfile
    bad = tmp_path / "bad.tgz"
    junk = tmp_path / "0.vhd"
    junk.write_bytes(os.urandom(4096))
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(junk, arcname="./0.vhd")
    glance = lab.glance()
    image = glance.images.create(name="broken-xen", disk_format="vhd", container_format="ovf")
    try:
        with open(bad, "rb") as f:
            glance.images.upload(image.id, f)
        nova = lab.nova()
        server = nova.servers.create("broken", image=image.id, flavor="1", nics="none")
        try:
            server = wait_server(nova, server.id, "ERROR", timeout=60)
            assert server.fault["code"] == 500
            assert server.fault["message"]
        finally:
            nova.servers.delete(server.id)
            wait_gone(lambda: nova.servers.get(server.id), what="server")
    finally:
        glance.images.delete(image.id)


# -- image ------------------------------------------------------------------------------------------
class _Chunks(io.RawIOBase):
    """A file-like without a length, so glanceclient streams it chunked."""

    def __init__(self, data):
        self._buf = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, b):
        data = self._buf.read(len(b))
        b[:len(data)] = data
        return len(data)


def test_image_upload_download_checksums(lab):
    glance = lab.glance()
    data = os.urandom(3 * 1024 * 1024 + 123)
    image = glance.images.create(name="lab-raw", disk_format="raw", container_format="bare")
    assert image.status == "queued"
    try:
        glance.images.upload(image.id, _Chunks(data))
        image = wait_image(glance, image.id)
        assert image.size == len(data)
        assert image.checksum == hashlib.md5(data).hexdigest()
        assert image.os_hash_algo == "sha512"
        assert image.os_hash_value == hashlib.sha512(data).hexdigest()
        got = b"".join(glance.images.data(image.id))
        assert got == data
        assert image.id in {i.id for i in glance.images.list()}
        from glanceclient import exc
        with pytest.raises(exc.HTTPConflict):
            glance.images.upload(image.id, io.BytesIO(b"again"))
    finally:
        glance.images.delete(image.id)
    from glanceclient import exc
    with pytest.raises(exc.HTTPNotFound):
        glance.images.get(image.id)


def test_image_chunked_upload_over_raw_http(lab):
    """PUT /v2/images/{id}/file with Transfer-Encoding: chunked, as glanceclient sends it."""
    glance = lab.glance()
    image = glance.images.create(name="lab-chunked", disk_format="raw", container_format="bare")
    try:
        data = os.urandom(1024 * 1024)

        def gen():
            for i in range(0, len(data), 100_000):
                yield data[i:i + 100_000]
        r = lab.request("PUT", f"{lab.endpoint('image')}/v2/images/{image.id}/file", data=gen(),
                        headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 204, r.text
        image = glance.images.get(image.id)
        assert image.status == "active" and image.size == len(data)
    finally:
        glance.images.delete(image.id)


def test_image_format_validation_and_errors(lab):
    from glanceclient import exc
    glance = lab.glance()
    base = lab.endpoint("image")
    r = lab.request("POST", f"{base}/v2/images", data=json.dumps({"name": "x", "disk_format": "floppy"}),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = lab.request("POST", f"{base}/v2/images", data=json.dumps({"name": "x", "container_format": "box"}),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = lab.request("POST", f"{base}/v2/images", data=b"{{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = lab.request("POST", f"{base}/v2/images", data=json.dumps({"name": "x", "size": 3}),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 403  # read-only attribute, as glance answers
    with pytest.raises(exc.HTTPNotFound):
        glance.images.get("00000000-0000-0000-0000-000000000000")
    image = glance.images.create(name="no-formats")
    try:
        r = lab.request("PUT", f"{base}/v2/images/{image.id}/file", data=b"abc",
                        headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 400  # disk_format/container_format must be set first
        # an image without data downloads as 204
        r = lab.request("GET", f"{base}/v2/images/{image.id}/file")
        assert r.status_code == 204
    finally:
        glance.images.delete(image.id)


def test_image_schemas_and_update(lab):
    r = lab.request("GET", f"{lab.endpoint('image')}/v2/schemas/image")
    schema = r.json()
    assert schema["name"] == "image" and "disk_format" in schema["properties"]
    r = lab.request("GET", f"{lab.endpoint('image')}/v2/schemas/images")
    assert r.json()["name"] == "images"
    glance = lab.glance()
    image = glance.images.create(name="upd", disk_format="raw", container_format="bare", color="blue")
    try:
        assert image.color == "blue"
        image = glance.images.update(image.id, name="updated", color="red")
        assert image.name == "updated" and image.color == "red"
    finally:
        glance.images.delete(image.id)


def test_default_image_is_xenserver_vhd_ovf(lab):
    glance = lab.glance()
    image = glance.images.get(lab.default_image_id)
    assert image.status == "active"
    assert (image.disk_format, image.container_format) == ("vhd", "ovf")
    assert image.visibility == "public"
    head = b"".join(glance.images.data(image.id))[:2]
    assert head == b"\x1f\x8b"  # a gzipped tar


# -- block storage ----------------------------------------------------------------------------------
def test_empty_volume_lifecycle(lab):
    cinder = lab.cinder()
    vol = cinder.volumes.create(1, name="lab-empty")
    assert vol.status == "creating"
    try:
        vol = wait_volume(cinder, vol.id)
        assert vol.size == 1 and vol.bootable == "false" and vol.attachments == []
        assert vol.id in {v.id for v in cinder.volumes.list()}
        assert lab.volume_path(vol.id).stat().st_size == 1024 ** 3
    finally:
        cinder.volumes.delete(vol.id)
    wait_gone(lambda: cinder.volumes.get(vol.id), what="volume")
    assert not lab.volume_path(vol.id).exists()


def test_volume_from_raw_image_is_bootable_copy(lab):
    glance, cinder = lab.glance(), lab.cinder()
    data = os.urandom(2 * 1024 * 1024)
    image = glance.images.create(name="vol-src", disk_format="raw", container_format="bare")
    glance.images.upload(image.id, io.BytesIO(data))
    try:
        vol = cinder.volumes.create(1, imageRef=image.id, name="from-raw")
        vol = wait_volume(cinder, vol.id)
        assert vol.bootable == "true"
        assert vol.volume_image_metadata["image_id"] == image.id
        with open(lab.volume_path(vol.id), "rb") as f:
            assert f.read(len(data)) == data
        cinder.volumes.delete(vol.id)
    finally:
        glance.images.delete(image.id)


def test_volume_from_image_too_big_goes_error_with_message(lab):
    """A raw image of 1 GiB + 1 MiB cannot fit a 1 GiB volume: error status, a message."""
    glance, cinder = lab.glance(), lab.cinder()
    image = glance.images.create(name="too-big", disk_format="qcow2", container_format="bare")
    # a small qcow2 whose virtual size is 2 GiB (header only): glance does not know its size
    qcow = bytearray(512)
    qcow[0:4] = b"QFI\xfb"
    qcow[4:8] = (3).to_bytes(4, "big")
    qcow[20:24] = (16).to_bytes(4, "big")          # cluster bits
    qcow[24:32] = (2 * 1024 ** 3).to_bytes(8, "big")
    glance.images.upload(image.id, io.BytesIO(bytes(qcow)))
    try:
        image = wait_image(glance, image.id)
        vol = cinder.volumes.create(1, imageRef=image.id, name="wont-fit")
        if getattr(vol, "status", None) == "creating":
            vol = wait_volume(cinder, vol.id, "error", timeout=60)
            assert vol.status == "error"
            msgs = cinder.messages.list(search_opts={"resource_uuid": vol.id})
            assert msgs and msgs[0].user_message
            cinder.volumes.delete(vol.id)
    except Exception as error:  # refused at the API (400) is also what Cinder may do
        from cinderclient import exceptions
        if not isinstance(error, exceptions.BadRequest):
            raise
    finally:
        glance.images.delete(image.id)


def test_volume_bad_requests(lab):
    from cinderclient import exceptions
    cinder = lab.cinder()
    with pytest.raises(exceptions.BadRequest):
        cinder.volumes.create(0)
    with pytest.raises(exceptions.BadRequest):
        cinder.volumes.create(1, imageRef="00000000-0000-0000-0000-000000000000")
    with pytest.raises(exceptions.NotFound):
        cinder.volumes.get("00000000-0000-0000-0000-000000000000")
    with pytest.raises(exceptions.OverLimit):
        cinder.volumes.create(5000)
    base = lab.endpoint("volumev3")
    r = lab.request("POST", f"{base}/volumes", data=b"[[", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "badRequest" in r.json()
    r = lab.request("POST", f"{base}/volumes", data=b" " * 300000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_backup_of_a_building_server_is_409(lab):
    """A 409 from nova: backup of a server that is still building."""
    from novaclient import exceptions
    nova = lab.nova("2.60")
    server = nova.servers.create("conflict", image=lab.default_image_id, flavor="1", nics="none")
    try:
        srv = nova.servers.get(server.id)
        if srv.status == "BUILD":
            with pytest.raises(exceptions.Conflict):
                nova.servers.backup(server.id, "b", "daily", 1)
    finally:
        nova.servers.delete(server.id)
        wait_gone(lambda: nova.servers.get(server.id), what="server")


def test_state_is_persistent_records(lab):
    """Images and volumes live in db.json (what survives a restart; see test_cloud_lifecycle)."""
    db = json.loads((lab.state_dir / "db.json").read_text())
    assert lab.default_image_id in db["images"]
    assert "1" in db["flavors"]


def test_settings_endpoint_is_admin_only(lab):
    r = lab.request("GET", f"{lab.url}/lab/settings", who="demo")
    assert r.status_code == 403
    r = lab.request("PUT", f"{lab.url}/lab/settings", who="admin", headers={"Content-Type": "application/json"},
                    data=json.dumps({"settings": {"conversion_mode": "bogus"}}))
    assert r.status_code == 400
    assert lab.set_mode("truncate")["conversion_mode"] == "truncate"
    assert lab.set_mode("reference")["conversion_mode"] == "reference"





def test_keystoneclient_works(lab):
    from keystoneclient.v3 import client as kc
    admin = kc.Client(session=lab.session("admin"))
    assert {p.name for p in admin.projects.list()} == {"admin", "demo"}
    assert {"compute", "image", "volumev3"} <= {s.type for s in admin.services.list()}
    demo_token = lab.token("demo")
    assert admin.tokens.validate(demo_token).user_id == lab.session("demo").get_user_id()
    demo = kc.Client(session=lab.session("demo"))
    assert [p.name for p in demo.projects.list(user=lab.session("demo").get_user_id())] == ["demo"]


def test_image_list_filters_on_properties(lab):
    glance = lab.glance()
    image = glance.images.create(name="filter-me", disk_format="raw", container_format="bare",
                                 image_type="backup", backup_type="weekly")
    try:
        found = {i.id for i in glance.images.list(filters={"image_type": "backup", "backup_type": "weekly"})}
        assert image.id in found
        assert image.id not in {i.id for i in glance.images.list(filters={"backup_type": "daily"})}
        assert lab.default_image_id not in found
    finally:
        glance.images.delete(image.id)

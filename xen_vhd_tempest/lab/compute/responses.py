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

"""Nova v2.1 over HTTP: views per microversion and :class:`ComputeResponses` (one method per
route of ``urls.py``), microversion headers. Errors are worded by ``errors.nova_body``."""

from __future__ import annotations

import hashlib

from ..errors import LabError, bad_request
from ..httpd import Response
from ..util import iso, requested_microversion

MIN_VERSION = "2.1"
MAX_VERSION = "2.96"
NETWORK = "private"


def version_doc(base_url):
    return {
        "id": "v2.1", "status": "CURRENT", "version": MAX_VERSION, "min_version": MIN_VERSION,
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base_url}/v2.1/"},
                  {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.compute+json;version=2.1"}],
    }


def _links(base, kind, ident):
    return [{"rel": "self", "href": f"{base}/v2.1/{kind}/{ident}"},
            {"rel": "bookmark", "href": f"{base}/{kind}/{ident}"}]


def flavor_view(req, f, detail=True):
    out = {"id": f["id"], "name": f["name"], "links": _links(req.base_url, "flavors", f["id"])}
    v = req.microversion
    if v >= (2, 55):
        out["description"] = f.get("description")
    if not detail:
        return out
    out.update({"ram": f["ram"], "vcpus": f["vcpus"], "disk": f["disk"],
                "swap": f["swap"] if (f["swap"] or v >= (2, 75)) else "",
                "OS-FLV-EXT-DATA:ephemeral": f["ephemeral"], "OS-FLV-DISABLED:disabled": f["disabled"],
                "os-flavor-access:is_public": f["is_public"], "rxtx_factor": f["rxtx_factor"]})
    if v >= (2, 61):
        out["extra_specs"] = dict(f.get("extra_specs", {}))
    return out


def address_view(server):
    if not server["address"]:
        return {}
    return {NETWORK: [{"version": 4, "addr": server["address"], "OS-EXT-IPS:type": "fixed",
                       "OS-EXT-IPS-MAC:mac_addr": server["mac"]}]}


def server_summary(req, s):
    return {"id": s["id"], "name": s["name"], "links": _links(req.base_url, "servers", s["id"])}


def server_view(req, s, *, show=True):
    """Nova's detailed server view at the request's microversion (list detail when not show)."""
    v = req.microversion
    admin = bool(req.context.get("is_admin"))
    out = server_summary(req, s)
    if s["image_id"]:
        image = {"id": s["image_id"], "links": [{"rel": "bookmark",
                                                 "href": f"{req.base_url}/images/{s['image_id']}"}]}
    else:
        image = ""
    f = s["flavor"]
    if v >= (2, 47):
        flavor = {"vcpus": f["vcpus"], "ram": f["ram"], "disk": f["disk"], "ephemeral": f["ephemeral"],
                  "swap": f["swap"], "original_name": f["name"], "extra_specs": dict(f.get("extra_specs", {}))}
    else:
        flavor = {"id": f["id"], "links": [{"rel": "bookmark", "href": f"{req.base_url}/flavors/{f['id']}"}]}
    host_id = hashlib.sha224((s["project_id"] + "lab").encode()).hexdigest() if s["launched_at"] else ""
    out.update({
        "status": s["status"], "tenant_id": s["project_id"], "user_id": s["user_id"],
        "metadata": s["metadata"], "hostId": host_id, "image": image, "flavor": flavor,
        "created": iso(s["created"]), "updated": iso(s["updated"]),
        "addresses": address_view(s), "accessIPv4": s.get("access_ipv4", ""),
        "accessIPv6": s.get("access_ipv6", ""),
        "OS-DCF:diskConfig": "MANUAL", "key_name": s["key_name"],
        "security_groups": [{"name": "default"}],
        "OS-SRV-USG:launched_at": iso(s["launched_at"], micro=True, z=False),
        "OS-SRV-USG:terminated_at": None,
        "OS-EXT-AZ:availability_zone": s["availability_zone"],
        "OS-EXT-STS:task_state": s["task_state"], "OS-EXT-STS:vm_state": s["vm_state"],
        "OS-EXT-STS:power_state": s["power_state"], "config_drive": s["config_drive"],
        "os-extended-volumes:volumes_attached": [
            ({"id": a["volume_id"], "delete_on_termination": a["delete_on_termination"]}
             if v >= (2, 3) else {"id": a["volume_id"]}) for a in s["attachments"]],
    })
    if s["status"] in ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"):
        out["progress"] = s["progress"]
    if s["fault"] and s["status"] in ("ERROR", "DELETED"):
        fault = {"code": s["fault"]["code"], "created": iso(s["fault"]["created"]),
                 "message": s["fault"]["message"]}
        if admin or s["fault"]["code"] != 500:
            fault["details"] = s["fault"]["details"]
        out["fault"] = fault
    if admin:
        out.update({"OS-EXT-SRV-ATTR:host": "lab" if s["launched_at"] else None,
                    "OS-EXT-SRV-ATTR:instance_name": s["instance_name"],
                    "OS-EXT-SRV-ATTR:hypervisor_hostname": "lab" if s["launched_at"] else None})
        if v >= (2, 3):
            out.update({"OS-EXT-SRV-ATTR:reservation_id": "r-" + s["id"][:8],
                        "OS-EXT-SRV-ATTR:launch_index": 0, "OS-EXT-SRV-ATTR:kernel_id": "",
                        "OS-EXT-SRV-ATTR:ramdisk_id": "", "OS-EXT-SRV-ATTR:hostname": s["hostname"],
                        "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                        "OS-EXT-SRV-ATTR:user_data": s["user_data"]})
    elif v >= (2, 90):
        out["OS-EXT-SRV-ATTR:hostname"] = s["hostname"]
    if v >= (2, 9):
        out["locked"] = False
    if v >= (2, 16) and admin:
        out["host_status"] = "UP" if s["launched_at"] else ""
    if v >= (2, 19):
        out["description"] = s["description"]
    if v >= (2, 26):
        out["tags"] = list(s["tags"])
    if v >= (2, 63):
        out["trusted_image_certificates"] = None
    if v >= (2, 71) and show:
        out["server_groups"] = []
    if v >= (2, 73):
        out["locked_reason"] = None
    if v >= (2, 96):
        out["pinned_availability_zone"] = None
    return out


def attachment_view(req, server_id, a):
    v = req.microversion
    out = {"serverId": server_id, "volumeId": a["volume_id"], "device": a["device"]}
    if v < (2, 89):
        out["id"] = a["volume_id"]
    if v >= (2, 70):
        out["tag"] = a.get("tag")
    if v >= (2, 79):
        out["delete_on_termination"] = a["delete_on_termination"]
    if v >= (2, 89):
        out["attachment_id"] = a["attachment_id"]
        out["bdm_uuid"] = a["bdm_uuid"]
    return out


def keypair_view(req, k, *, full=False, created=False):
    out = {"name": k["name"], "public_key": k["public_key"], "fingerprint": k["fingerprint"]}
    if req.microversion >= (2, 2):
        out["type"] = k["type"]
    if full:
        out.update({"user_id": k["user_id"], "created_at": iso(k["created_at"], micro=True, z=False),
                    "deleted": False, "deleted_at": None, "updated_at": None, "id": k["id"]})
    if created:
        out["user_id"] = k["user_id"]
        if "private_key" in k:
            out["private_key"] = k["private_key"]
    return out


def _body_of(req, key):
    body = req.json()
    if not isinstance(body, dict) or key not in body:
        raise bad_request(f"Invalid input for field/attribute {key}. Value: {body!r}. "
                          f"'{key}' is a required property")
    return body[key]


class ComputeResponses:
    """Nova's HTTP in and out over ``backend`` (``models.ComputeBackend``)."""

    def __init__(self, backend, image_url):
        self.backend = backend
        self.image_url = image_url   # glance, for the pre-2.45 createBackup Location header

    def prepare(self, req):
        req.microversion = requested_microversion(req.headers, "compute", "X-OpenStack-Nova-API-Version",
                                                  MIN_VERSION, MAX_VERSION)

    def decorate(self, req, resp):
        version = getattr(req, "microversion", None)
        if version is not None:
            text = f"{version[0]}.{version[1]}"
            resp.headers["OpenStack-API-Version"] = f"compute {text}"
            resp.headers["X-OpenStack-Nova-API-Version"] = text
            resp.headers["Vary"] = "OpenStack-API-Version, X-OpenStack-Nova-API-Version"
        resp.headers.setdefault("X-Compute-Request-Id", req.request_id)

    # -- versions
    def versions(self, req):
        return Response.json(200, {"versions": [version_doc(req.base_url)]})

    def v21(self, req):
        return Response.json(200, {"version": version_doc(req.base_url)})

    # -- flavors
    def _flavor_list(self, req, detail):
        flavors = self.backend.list_flavors(min_ram=req.arg("minRam"), min_disk=req.arg("minDisk"),
                                            sort_key=req.arg("sort_key", "flavorid"),
                                            sort_dir=req.arg("sort_dir", "asc"),
                                            marker=req.arg("marker"), limit=req.arg("limit"))
        body = {"flavors": [flavor_view(req, f, detail) for f in flavors]}
        if req.arg("limit") is not None and flavors and len(flavors) == int(req.arg("limit")):
            query = "&".join(f"{k}={v[-1]}" for k, v in req.query.items() if k != "marker")
            href = f"{req.base_url}{req.path}?{query}&marker={flavors[-1]['id']}"
            body["flavors_links"] = [{"rel": "next", "href": href}]
        return Response.json(200, body)

    def flavors(self, req):
        return self._flavor_list(req, False)

    def flavors_detail(self, req):
        return self._flavor_list(req, True)

    def flavor_show(self, req):
        return Response.json(200, {"flavor": flavor_view(req, self.backend.flavor(req.params["flavor_id"]))})

    def flavor_create(self, req):
        f = self.backend.create_flavor(req.context, _body_of(req, "flavor"))
        return Response.json(200, {"flavor": flavor_view(req, f)})

    def flavor_delete(self, req):
        self.backend.delete_flavor(req.context, req.params["flavor_id"])
        return Response.empty(202)

    # -- keypairs
    def keypairs(self, req):
        paged = req.microversion >= (2, 35)   # before 2.35 nova ignores limit and marker
        limit = req.arg("limit") if paged else None
        keys = self.backend.list_keypairs(req.context, marker=req.arg("marker") if paged else None, limit=limit)
        body = {"keypairs": [{"keypair": keypair_view(req, k)} for k in keys]}
        if limit is not None and keys and len(keys) == int(limit):
            query = "&".join(f"{k}={v[-1]}" for k, v in req.query.items() if k != "marker")
            body["keypairs_links"] = [{"rel": "next",
                                       "href": f"{req.base_url}{req.path}?{query}&marker={keys[-1]['name']}"}]
        return Response.json(200, body)

    def keypair_create(self, req):
        k = self.backend.create_keypair(req.context, _body_of(req, "keypair"),
                                        allow_generate=req.microversion < (2, 92))
        return Response.json(201 if req.microversion >= (2, 2) else 200,
                             {"keypair": keypair_view(req, k, created=True)})

    def keypair_show(self, req):
        k = self.backend.keypair(req.context, req.params["name"])
        return Response.json(200, {"keypair": keypair_view(req, k, full=True)})

    def keypair_delete(self, req):
        self.backend.delete_keypair(req.context, req.params["name"])
        return Response.empty(204 if req.microversion >= (2, 2) else 202)

    # -- servers
    def _all_tenants(self, req):
        return req.arg("all_tenants") not in (None, "0", "false", "False")

    def _filtered(self, req):
        servers = self.backend.list_servers(req.context, self._all_tenants(req))
        for key, field in (("name", "name"), ("status", "status")):
            value = req.arg(key)
            if value is not None:
                if key == "name":
                    import re
                    try:
                        rx = re.compile(value)
                    except re.error:
                        raise bad_request(f"Invalid filter name {value}") from None
                    servers = [s for s in servers if rx.search(s["name"])]
                else:
                    servers = [s for s in servers if s[field] == value.upper()]
        limit = req.arg("limit")
        if limit is not None:
            try:
                servers = servers[:int(limit)]
            except ValueError:
                raise bad_request(f"Invalid input for query parameters limit. Value: {limit}.") from None
        return servers

    def servers_index(self, req):
        return Response.json(200, {"servers": [server_summary(req, s) for s in self._filtered(req)]})

    def servers_detail(self, req):
        return Response.json(200, {"servers": [server_view(req, s, show=False) for s in self._filtered(req)]})

    def server_create(self, req):
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("server"), dict):
            raise bad_request(f"Invalid input for field/attribute server. Value: {body!r}. "
                              "'server' is a required property")
        s = self.backend.create_server(req.context, body["server"], req.microversion)
        out = {"id": s["id"], "links": _links(req.base_url, "servers", s["id"]),
               "OS-DCF:diskConfig": "MANUAL", "security_groups": [{"name": "default"}],
               "adminPass": s["admin_pass"]}
        return Response.json(202, {"server": out},
                             {"Location": f"{req.base_url}/v2.1/servers/{s['id']}"})

    def server_show(self, req):
        server = self.backend.server(req.context, req.params["server_id"])
        return Response.json(200, {"server": server_view(req, server)})

    def server_update(self, req):
        s = self.backend.update_server(req.context, req.params["server_id"], _body_of(req, "server"))
        return Response.json(200, {"server": server_view(req, s)})

    def server_delete(self, req):
        self.backend.delete_server(req.context, req.params["server_id"])
        return Response.empty(204)

    def server_action(self, req):
        body = req.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise bad_request("Invalid action: exactly one action per request.")
        (name, arg), = body.items()
        sid = req.params["server_id"]
        if name == "createBackup":
            image = self.backend.create_backup(req.context, sid, arg, req.microversion)
            if req.microversion >= (2, 45):
                return Response.json(202, {"image_id": image["id"]})
            return Response.empty(202, {"Location": f"{self.image_url}/images/{image['id']}",
                                        "Content-Type": "application/json"})
        if name == "createImage":
            image = self.backend.create_image(req.context, sid, arg, req.microversion)
            if req.microversion >= (2, 45):
                return Response.json(202, {"image_id": image["id"]})
            return Response.empty(202, {"Location": f"{self.image_url}/images/{image['id']}"})
        if name == "reboot":
            kind = arg.get("type") if isinstance(arg, dict) else None
            self.backend.reboot(req.context, sid, kind.upper() if isinstance(kind, str) else kind)
            return Response.empty(202)
        if name in ("os-start", "os-stop"):
            self.backend.power(req.context, sid, name == "os-start")
            return Response.empty(202)
        if name == "os-getConsoleOutput":
            length = (arg or {}).get("length") if isinstance(arg, dict) or arg is None else "bad"
            if length is not None:
                if isinstance(length, str) and length.lstrip("-").isdigit():
                    length = int(length)
                if not isinstance(length, int) or isinstance(length, bool) or length < -1:
                    raise bad_request(f"Invalid input for field/attribute length. Value: {length!r}.")
                if length == -1:
                    length = None
            return Response.json(200, {"output": self.backend.console_output(req.context, sid, length)})
        self.backend.server(req.context, sid)
        raise bad_request(f"There is no such action: {name}")

    def ips(self, req):
        s = self.backend.server(req.context, req.params["server_id"])
        return Response.json(200, {"addresses": address_view(s)})

    def ips_network(self, req):
        s = self.backend.server(req.context, req.params["server_id"])
        net = address_view(s)
        if req.params["network"] not in net:
            raise LabError(404, "Instance is not a member of specified network", kind="itemNotFound")
        return Response.json(200, {req.params["network"]: net[req.params["network"]]})

    # -- volume attachments
    def attachments(self, req):
        s = self.backend.server(req.context, req.params["server_id"])
        return Response.json(200, {"volumeAttachments": [attachment_view(req, s["id"], a)
                                                         for a in s["attachments"]]})

    def attachment_create(self, req):
        body = _body_of(req, "volumeAttachment")
        a = self.backend.attach_volume(req.context, req.params["server_id"], body, req.microversion)
        return Response.json(200, {"volumeAttachment": attachment_view(req, req.params["server_id"], a)})

    def attachment_show(self, req):
        a = self.backend.attachment(req.context, req.params["server_id"], req.params["volume_id"])
        return Response.json(200, {"volumeAttachment": attachment_view(req, req.params["server_id"], a)})

    def attachment_delete(self, req):
        self.backend.detach_volume(req.context, req.params["server_id"], req.params["volume_id"])
        return Response.empty(202)

    def limits(self, req):
        servers = self.backend.list_servers(req.context)
        return Response.json(200, {"limits": {"rate": [], "absolute": {
            "maxServerMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240,
            "maxTotalKeypairs": 100, "maxImageMeta": 128, "maxServerGroups": 10,
            "maxServerGroupMembers": 10, "maxTotalCores": 20, "maxTotalInstances": 10,
            "maxTotalRAMSize": 51200, "maxSecurityGroups": 10, "maxSecurityGroupRules": 20,
            "maxTotalFloatingIps": 10, "totalCoresUsed": sum(s["flavor"]["vcpus"] for s in servers),
            "totalInstancesUsed": len(servers), "totalRAMUsed": sum(s["flavor"]["ram"] for s in servers),
            "totalSecurityGroupsUsed": 0, "totalFloatingIpsUsed": 0, "totalServerGroupsUsed": 0}}})

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

"""Keystone v3 over HTTP: views and :class:`IdentityResponses` (one method per route of
``urls.py``): version documents, tokens, catalog, users and projects. Errors are worded by
``errors.keystone_body``."""

from __future__ import annotations

from ..errors import LabError, Unauthorized, bad_request
from ..httpd import Response
from ..util import iso
from .models import DOMAIN


def keystone_time(ts):
    return iso(ts, micro=True).replace("Z", "") + "Z"


def version_doc(base_url):
    return {
        "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base_url}/v3/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.identity-v3+json"}],
    }


def _project_doc(p, base):
    return {"id": p["id"], "name": p["name"], "domain_id": DOMAIN["id"], "enabled": True,
            "description": p.get("description", ""), "is_domain": False, "parent_id": DOMAIN["id"], "tags": [],
            "options": {}, "links": {"self": f"{base}/v3/projects/{p['id']}"}}


def _user_doc(user, base):
    return {"id": user["id"], "name": user["name"], "domain_id": DOMAIN["id"], "enabled": True,
            "default_project_id": user["project"], "password_expires_at": None, "options": {},
            "links": {"self": f"{base}/v3/users/{user['id']}"}}


def _listing(req, key, items):
    return Response.json(200, {key: items, "links": {"self": f"{req.base_url}/v3/{key}",
                                                     "previous": None, "next": None}})


class IdentityResponses:
    """Keystone's HTTP in and out over ``backend`` (``models.IdentityBackend``);
    ``catalog_for(context)`` returns the v3 catalog list for a token's context."""

    def __init__(self, backend, catalog_for):
        self.backend = backend
        self.catalog_for = catalog_for

    def _token_body(self, ctx, with_catalog=True):
        user = ctx["user"]
        token = {
            "methods": ctx["methods"],
            "user": {"domain": DOMAIN, "id": user["id"], "name": user["name"],
                     "password_expires_at": None},
            "audit_ids": ctx["audit_ids"],
            "expires_at": keystone_time(ctx["expires"]),
            "issued_at": keystone_time(ctx["issued"]),
        }
        if ctx["project"]:
            token["project"] = {"domain": DOMAIN, "id": ctx["project"]["id"],
                                "name": ctx["project"]["name"]}
            token["is_domain"] = False
            token["roles"] = [{"id": self.backend.role_ids[r], "name": r} for r in ctx["roles"]]
            if with_catalog:
                token["catalog"] = self.catalog_for(ctx)
        return {"token": token}

    def versions(self, req):
        return Response.json(300, {"versions": {"values": [version_doc(req.base_url)]}})

    def v3(self, req):
        return Response.json(200, {"version": version_doc(req.base_url)})

    def create_token(self, req):
        body = req.json()
        if not isinstance(body, dict) or "auth" not in body:
            raise bad_request("Expecting to find auth in request body.")
        token, ctx = self.backend.authenticate(body["auth"])
        nocatalog = "nocatalog" in req.query
        return Response.json(201, self._token_body(ctx, not nocatalog), {"X-Subject-Token": token})

    def _caller(self, req):
        return self.backend.validate(req.headers.get("X-Auth-Token"))

    def show_token(self, req):
        self._caller(req)
        subject = req.headers.get("X-Subject-Token")
        try:
            ctx = self.backend.validate(subject)
        except Unauthorized:
            raise LabError(404, f"Could not find token: {subject}", kind="itemNotFound") from None
        nocatalog = "nocatalog" in req.query
        return Response.json(200, self._token_body(ctx, not nocatalog), {"X-Subject-Token": subject})

    def delete_token(self, req):
        self._caller(req)
        subject = req.headers.get("X-Subject-Token")
        try:
            self.backend.revoke(subject)
        except Unauthorized:
            raise LabError(404, f"Could not find token: {subject}", kind="itemNotFound") from None
        return Response.empty(204)

    def auth_catalog(self, req):
        ctx = self._caller(req)
        if not ctx["project"]:
            raise LabError(403, "The service catalog is empty.", kind="forbidden")
        return Response.json(200, {"catalog": self.catalog_for(ctx),
                                   "links": {"self": f"{req.base_url}/v3/auth/catalog"}})

    def _projects_of(self, user, base):
        project = self.backend.projects.get(user["project"]) if user["project"] else None
        return [_project_doc(project, base)] if project else []

    def auth_projects(self, req):
        ctx = self._caller(req)
        projects = self._projects_of(ctx["user"], req.base_url)
        return Response.json(200, {"projects": projects,
                                   "links": {"self": f"{req.base_url}/v3/auth/projects",
                                             "previous": None, "next": None}})

    def show_project(self, req):
        self._caller(req)
        p = self.backend.projects.get(req.params["project_id"])
        if p is None:
            raise LabError(404, f"Could not find project: {req.params['project_id']}.")
        return Response.json(200, {"project": _project_doc(p, req.base_url)})

    def show_user(self, req):
        ctx = self._caller(req)
        user = self.backend.user_by(user_id=req.params["user_id"])
        if user is None:
            raise LabError(404, f"Could not find user: {req.params['user_id']}.")
        if user["id"] != ctx["user_id"] and not ctx["is_admin"]:
            raise LabError(403, "You are not authorized to perform the requested action: identity:get_user.")
        return Response.json(200, {"user": _user_doc(user, req.base_url)})

    def list_users(self, req):
        ctx = self._caller(req)
        users = [u for u in self.backend.users.values() if ctx["is_admin"] or u["id"] == ctx["user_id"]]
        name = req.arg("name")
        return _listing(req, "users", [_user_doc(u, req.base_url) for u in users if name in (None, u["name"])])

    def list_projects(self, req):
        ctx = self._caller(req)
        projects = [p for p in self.backend.projects.values() if ctx["is_admin"] or p["id"] == ctx["project_id"]]
        name = req.arg("name")
        return _listing(req, "projects", [_project_doc(p, req.base_url) for p in projects
                                         if name in (None, p["name"])])

    def user_projects(self, req):
        ctx = self._caller(req)
        user = self.backend.user_by(user_id=req.params["user_id"])
        if user is None or (user["id"] != ctx["user_id"] and not ctx["is_admin"]):
            raise LabError(404, f"Could not find user: {req.params['user_id']}.")
        return _listing(req, "projects", self._projects_of(user, req.base_url))

    def list_services(self, req):
        ctx = self._caller(req)
        return _listing(req, "services", [{"id": s["id"], "type": s["type"], "name": s["name"], "enabled": True,
                                          "links": {"self": f"{req.base_url}/v3/services/{s['id']}"}}
                                         for s in self.catalog_for(ctx)] if ctx["project"] else [])

    def list_endpoints(self, req):
        ctx = self._caller(req)
        out = []
        for s in self.catalog_for(ctx) if ctx["project"] else []:
            for e in s["endpoints"]:
                out.append({"id": e["id"], "interface": e["interface"], "region_id": e["region_id"],
                            "region": e["region"], "url": e["url"], "service_id": s["id"], "enabled": True,
                            "links": {"self": f"{req.base_url}/v3/endpoints/{e['id']}"}})
        return _listing(req, "endpoints", out)

    def list_roles(self, req):
        self._caller(req)
        return _listing(req, "roles", [{"id": rid, "name": name, "domain_id": None, "options": {},
                                       "links": {"self": f"{req.base_url}/v3/roles/{rid}"}}
                                      for name, rid in self.backend.role_ids.items()])

    def list_domains(self, req):
        self._caller(req)
        domains = [dict(DOMAIN, enabled=True, description="The default domain", tags=[], options={},
                        links={"self": f"{req.base_url}/v3/domains/default"})]
        name = req.arg("name")
        return _listing(req, "domains", [d for d in domains if name in (None, d["name"])])

    def create_project(self, req):
        body = req.json()
        project = self.backend.create_project(self._caller(req),
                                              body.get("project") if isinstance(body, dict) else None)
        return Response.json(201, {"project": _project_doc(project, req.base_url)})

    def delete_project(self, req):
        self.backend.delete_project(self._caller(req), req.params["project_id"])
        return Response.empty(204)

    def create_user(self, req):
        body = req.json()
        user = self.backend.create_user(self._caller(req), body.get("user") if isinstance(body, dict) else None)
        return Response.json(201, {"user": _user_doc(user, req.base_url)})

    def delete_user(self, req):
        self.backend.delete_user(self._caller(req), req.params["user_id"])
        return Response.empty(204)

    def assign_role(self, req):
        p = req.params
        self.backend.assign_role(self._caller(req), p["project_id"], p["user_id"], p["role_id"])
        return Response.empty(204)

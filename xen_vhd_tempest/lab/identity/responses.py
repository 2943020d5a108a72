"""Keystone v3 over HTTP: version documents, tokens, catalog; keystone-style errors."""

from __future__ import annotations

from ..httpd import HTTPError, Response, Service, bad_request
from ..util import iso
from .models import DOMAIN, Unauthorized

TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict", 413: "Request Entity Too Large"}


def keystone_time(ts):
    return iso(ts, micro=True).replace("Z", "") + "Z"


def format_error(error: HTTPError) -> Response:
    return Response.json(error.status, {"error": {"code": error.status,
                                                  "title": TITLES.get(error.status, "Error"),
                                                  "message": error.message}})


def unauthorized_response(identity_url: str):
    """The 401 keystonemiddleware gives in front of every other service."""
    body = {"error": {"code": 401, "title": "Unauthorized",
                      "message": "The request you have made requires authentication."}}
    return Response.json(401, body, {"WWW-Authenticate": f'Keystone uri="{identity_url}"'})


def version_doc(base_url):
    return {
        "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base_url}/v3/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.identity-v3+json"}],
    }


def build(backend, catalog_for) -> Service:
    """``catalog_for(context)`` returns the v3 catalog list for a token's context."""
    service = Service("identity", format_error=format_error)

    def token_body(ctx, with_catalog=True):
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
            token["roles"] = [{"id": backend.role_ids[r], "name": r} for r in ctx["roles"]]
            if with_catalog:
                token["catalog"] = catalog_for(ctx)
        return {"token": token}

    def versions(req):
        return Response.json(300, {"versions": {"values": [version_doc(req.base_url)]}})

    def v3(req):
        return Response.json(200, {"version": version_doc(req.base_url)})

    def create_token(req):
        body = req.json()
        if not isinstance(body, dict) or "auth" not in body:
            raise bad_request("Expecting to find auth in request body.")
        token, ctx = backend.authenticate(body["auth"])
        nocatalog = "nocatalog" in req.query
        return Response.json(201, token_body(ctx, not nocatalog), {"X-Subject-Token": token})

    def caller(req):
        return backend.validate(req.headers.get("X-Auth-Token"))

    def show_token(req):
        caller(req)
        subject = req.headers.get("X-Subject-Token")
        try:
            ctx = backend.validate(subject)
        except Unauthorized:
            raise HTTPError(404, f"Could not find token: {subject}", kind="itemNotFound") from None
        nocatalog = "nocatalog" in req.query
        return Response.json(200, token_body(ctx, not nocatalog), {"X-Subject-Token": subject})

    def delete_token(req):
        caller(req)
        subject = req.headers.get("X-Subject-Token")
        try:
            backend.revoke(subject)
        except Unauthorized:
            raise HTTPError(404, f"Could not find token: {subject}", kind="itemNotFound") from None
        return Response.empty(204)

    def auth_catalog(req):
        ctx = caller(req)
        if not ctx["project"]:
            raise HTTPError(403, "The service catalog is empty.", kind="forbidden")
        return Response.json(200, {"catalog": catalog_for(ctx),
                                   "links": {"self": f"{req.base_url}/v3/auth/catalog"}})

    def project_doc(p, base):
        return {"id": p["id"], "name": p["name"], "domain_id": DOMAIN["id"], "enabled": True,
                "description": "", "is_domain": False, "parent_id": DOMAIN["id"], "tags": [],
                "options": {}, "links": {"self": f"{base}/v3/projects/{p['id']}"}}

    def auth_projects(req):
        ctx = caller(req)
        user = ctx["user"]
        projects = [project_doc(backend.projects[user["project"]], req.base_url)]
        return Response.json(200, {"projects": projects,
                                   "links": {"self": f"{req.base_url}/v3/auth/projects",
                                             "previous": None, "next": None}})

    def show_project(req):
        caller(req)
        p = backend.projects.get(req.params["project_id"])
        if p is None:
            raise HTTPError(404, f"Could not find project: {req.params['project_id']}.")
        return Response.json(200, {"project": project_doc(p, req.base_url)})

    def user_doc(user, base):
        return {"id": user["id"], "name": user["name"], "domain_id": DOMAIN["id"], "enabled": True,
                "default_project_id": user["project"], "password_expires_at": None, "options": {},
                "links": {"self": f"{base}/v3/users/{user['id']}"}}

    def listing(req, key, items):
        return Response.json(200, {key: items, "links": {"self": f"{req.base_url}/v3/{key}",
                                                         "previous": None, "next": None}})

    def show_user(req):
        ctx = caller(req)
        user = backend.user_by(user_id=req.params["user_id"])
        if user is None:
            raise HTTPError(404, f"Could not find user: {req.params['user_id']}.")
        if user["id"] != ctx["user_id"] and not ctx["is_admin"]:
            raise HTTPError(403, "You are not authorized to perform the requested action: identity:get_user.")
        return Response.json(200, {"user": user_doc(user, req.base_url)})

    def list_users(req):
        ctx = caller(req)
        users = [u for u in backend.users.values() if ctx["is_admin"] or u["id"] == ctx["user_id"]]
        name = req.arg("name")
        return listing(req, "users", [user_doc(u, req.base_url) for u in users if name in (None, u["name"])])

    def list_projects(req):
        ctx = caller(req)
        projects = [p for p in backend.projects.values() if ctx["is_admin"] or p["id"] == ctx["project_id"]]
        name = req.arg("name")
        return listing(req, "projects", [project_doc(p, req.base_url) for p in projects
                                         if name in (None, p["name"])])

    def user_projects(req):
        ctx = caller(req)
        user = backend.user_by(user_id=req.params["user_id"])
        if user is None or (user["id"] != ctx["user_id"] and not ctx["is_admin"]):
            raise HTTPError(404, f"Could not find user: {req.params['user_id']}.")
        return listing(req, "projects", [project_doc(backend.projects[user["project"]], req.base_url)])

    def list_services(req):
        ctx = caller(req)
        return listing(req, "services", [{"id": s["id"], "type": s["type"], "name": s["name"], "enabled": True,
                                          "links": {"self": f"{req.base_url}/v3/services/{s['id']}"}}
                                         for s in catalog_for(ctx)] if ctx["project"] else [])

    def list_endpoints(req):
        ctx = caller(req)
        out = []
        for s in catalog_for(ctx) if ctx["project"] else []:
            for e in s["endpoints"]:
                out.append({"id": e["id"], "interface": e["interface"], "region_id": e["region_id"],
                            "region": e["region"], "url": e["url"], "service_id": s["id"], "enabled": True,
                            "links": {"self": f"{req.base_url}/v3/endpoints/{e['id']}"}})
        return listing(req, "endpoints", out)

    def list_roles(req):
        caller(req)
        return listing(req, "roles", [{"id": rid, "name": name, "domain_id": None, "options": {},
                                       "links": {"self": f"{req.base_url}/v3/roles/{rid}"}}
                                      for name, rid in backend.role_ids.items()])

    def list_domains(req):
        caller(req)
        return listing(req, "domains", [dict(DOMAIN, enabled=True, description="The default domain",
                                             tags=[], options={},
                                             links={"self": f"{req.base_url}/v3/domains/default"})])

    service.route("GET", "/", versions, public=True)
    service.route("GET", "/v3", v3, public=True)
    service.route("POST", "/v3/auth/tokens", create_token, public=True)
    service.route("GET", "/v3/auth/tokens", show_token, public=True)
    service.route("DELETE", "/v3/auth/tokens", delete_token, public=True)
    service.route("GET", "/v3/auth/catalog", auth_catalog, public=True)
    service.route("GET", "/v3/auth/projects", auth_projects, public=True)
    service.route("GET", "/v3/projects/{project_id}", show_project, public=True)
    service.route("GET", "/v3/users/{user_id}", show_user, public=True)
    service.route("GET", "/v3/users/{user_id}/projects", user_projects, public=True)
    service.route("GET", "/v3/users", list_users, public=True)
    service.route("GET", "/v3/projects", list_projects, public=True)
    service.route("GET", "/v3/services", list_services, public=True)
    service.route("GET", "/v3/endpoints", list_endpoints, public=True)
    service.route("GET", "/v3/roles", list_roles, public=True)
    service.route("GET", "/v3/domains", list_domains, public=True)
    return service

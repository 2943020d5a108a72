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

"""Keystone v3 state: one domain, the bootstrap projects and users (admin, demo), the projects,
users and role assignments an admin creates (tempest's dynamic credentials), signed expiring tokens.

Tokens are self-contained (payload + HMAC with a secret kept in the state dir),
like fernet tokens: they survive a lab restart and need no table. Revocation
(``DELETE /v3/auth/tokens``) is remembered in memory until the token expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading

from ..errors import LabError, Unauthorized, bad_request, conflict
from ..util import hex_id, now

DOMAIN = {"id": "default", "name": "Default"}


class IdentityBackend:
    def __init__(self, store, settings, secret_path, *, admin_password, demo_password):
        self.store = store
        self.settings = settings
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()
        if not os.path.exists(secret_path):
            fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        with open(secret_path) as f:
            self._secret = f.read().strip().encode()
        with store.lock:
            ids = store.collection("identity")
            if not ids:
                ids.update({
                    "admin_project": hex_id(), "demo_project": hex_id(),
                    "admin_user": hex_id(), "demo_user": hex_id(),
                    "admin_role": hex_id(), "member_role": hex_id(), "reader_role": hex_id(),
                })
                store.save()
            self.ids = dict(ids)
        self.projects = {
            self.ids["admin_project"]: {"id": self.ids["admin_project"], "name": "admin"},
            self.ids["demo_project"]: {"id": self.ids["demo_project"], "name": "demo"},
        }
        self.users = {
            "admin": {"id": self.ids["admin_user"], "name": "admin", "password": admin_password,
                      "project": self.ids["admin_project"],
                      "roles": ["admin", "member", "reader"]},
            "demo": {"id": self.ids["demo_user"], "name": "demo", "password": demo_password,
                     "project": self.ids["demo_project"], "roles": ["member", "reader"]},
        }
        self.role_ids = {"admin": self.ids["admin_role"], "member": self.ids["member_role"],
                         "reader": self.ids["reader_role"]}
        # what admins created: {"projects": {id: project}, "users": {id: user}}, kept in db.json
        with store.lock:
            self._created = store.collection("identity_created")
            self._created.setdefault("projects", {})
            self._created.setdefault("users", {})
            for project in self._created["projects"].values():
                self.projects[project["id"]] = project
            for user in self._created["users"].values():
                self.users[user["id"]] = user

    # -- what an admin manages (keystone's identity:create_* policies: admin only)
    @staticmethod
    def _require_admin(ctx, action):
        if not ctx["is_admin"]:
            raise LabError(403, f"You are not authorized to perform the requested action: identity:{action}.",
                           kind="forbidden")

    def create_project(self, ctx, body):
        self._require_admin(ctx, "create_project")
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"].strip():
            raise bad_request("Invalid input for field 'name': None is not of type 'string'")
        if body.get("domain_id", DOMAIN["id"]) != DOMAIN["id"]:
            raise bad_request(f"Could not find domain: {body['domain_id']}.")
        with self.store.lock:
            if self.project_by(name=body["name"]) is not None:
                raise conflict(f"Conflict occurred attempting to store project - it is not permitted to have "
                               f"two projects with the same name in the same domain : {body['name']}.")
            project = {"id": hex_id(), "name": body["name"], "description": str(body.get("description") or "")}
            self.projects[project["id"]] = project
            self._created["projects"][project["id"]] = project
            self.store.save()
        return project

    def delete_project(self, ctx, project_id):
        self._require_admin(ctx, "delete_project")
        with self.store.lock:
            if project_id not in self._created["projects"]:
                if project_id in self.projects:     # the bootstrap projects stay
                    raise LabError(403, "The lab's bootstrap projects cannot be deleted.", kind="forbidden")
                raise LabError(404, f"Could not find project: {project_id}.")
            del self._created["projects"][project_id]
            del self.projects[project_id]
            for user in self._created["users"].values():
                if user["project"] == project_id:
                    user["project"], user["roles"] = None, []
            self.store.save()

    def create_user(self, ctx, body):
        self._require_admin(ctx, "create_user")
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"].strip():
            raise bad_request("Invalid input for field 'name': None is not of type 'string'")
        if body.get("domain_id", DOMAIN["id"]) != DOMAIN["id"]:
            raise bad_request(f"Could not find domain: {body['domain_id']}.")
        with self.store.lock:
            if self.user_by(name=body["name"]) is not None:
                raise conflict(f"Conflict occurred attempting to store user - Duplicate entry found with "
                               f"name {body['name']} at domain ID {DOMAIN['id']}.")
            user = {"id": hex_id(), "name": body["name"], "password": str(body.get("password") or ""),
                    "project": None, "roles": []}
            self.users[user["id"]] = user
            self._created["users"][user["id"]] = user
            self.store.save()
        return user

    def delete_user(self, ctx, user_id):
        self._require_admin(ctx, "delete_user")
        with self.store.lock:
            if user_id not in self._created["users"]:
                if self.user_by(user_id=user_id) is not None:
                    raise LabError(403, "The lab's bootstrap users cannot be deleted.", kind="forbidden")
                raise LabError(404, f"Could not find user: {user_id}.")
            del self._created["users"][user_id]
            del self.users[user_id]
            self.store.save()

    def assign_role(self, ctx, project_id, user_id, role_id):
        """``PUT /v3/projects/{p}/users/{u}/roles/{r}``. A lab user has roles on one project; keystone's
        implied roles apply (admin implies member, member implies reader)."""
        self._require_admin(ctx, "create_grant")
        names = {rid: name for name, rid in self.role_ids.items()}
        if role_id not in names:
            raise LabError(404, f"Could not find role: {role_id}.")
        if project_id not in self.projects:
            raise LabError(404, f"Could not find project: {project_id}.")
        with self.store.lock:
            user = self._created["users"].get(user_id)
            if user is None:
                if self.user_by(user_id=user_id) is not None:
                    raise LabError(403, "The lab's bootstrap users keep their roles.", kind="forbidden")
                raise LabError(404, f"Could not find user: {user_id}.")
            if user["project"] not in (None, project_id):
                raise bad_request("A lab user has roles on one project only.")
            implied = {"admin": ["admin", "member", "reader"], "member": ["member", "reader"],
                       "reader": ["reader"]}[names[role_id]]
            user["project"] = project_id
            user["roles"] = [r for r in ("admin", "member", "reader") if r in set(user["roles"]) | set(implied)]
            self.store.save()

    # -- users
    def user_by(self, *, name=None, user_id=None):
        for user in self.users.values():
            if (name is not None and user["name"] == name) or (user_id is not None and user["id"] == user_id):
                return user
        return None

    def project_by(self, *, name=None, project_id=None):
        for project in self.projects.values():
            if (name is not None and project["name"] == name) or \
                    (project_id is not None and project["id"] == project_id):
                return project
        return None

    # -- tokens
    def issue(self, user, project, methods, audit_parent=None, expires=None):
        issued = now()
        if expires is None:
            expires = issued + int(self.settings.get("token_ttl"))
        audit = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        payload = {"u": user["id"], "p": project["id"] if project else None, "m": methods,
                   "i": issued, "e": expires, "a": [audit] + ([audit_parent] if audit_parent else [])}
        raw = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
        sig = hmac.new(self._secret, raw.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{raw}.{sig}", self._context(payload)

    def validate(self, token: str | None):
        """The context a token stands for; ``Unauthorized`` when absent, forged, expired or revoked."""
        if not token:
            raise Unauthorized()
        try:
            raw, sig = token.rsplit(".", 1)
        except ValueError:
            raise Unauthorized() from None
        good = hmac.new(self._secret, raw.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(good, sig):
            raise Unauthorized()
        try:
            payload = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except ValueError:
            raise Unauthorized() from None
        if payload["e"] <= now():
            raise Unauthorized("The request you have made requires authentication.")
        with self._lock:
            if token in self._revoked:
                raise Unauthorized()
        if self.user_by(user_id=payload["u"]) is None:
            raise Unauthorized()
        return self._context(payload)

    def revoke(self, token):
        ctx = self.validate(token)
        with self._lock:
            self._revoked = {t: e for t, e in self._revoked.items() if e > now()}
            self._revoked[token] = ctx["expires"]

    def _context(self, payload):
        user = self.user_by(user_id=payload["u"])
        project = self.projects.get(payload["p"]) if payload["p"] else None
        if project is not None and user is not None and user["project"] != project["id"]:
            raise Unauthorized()    # the project or the user's role on it went away
        return {
            "user": user, "project": project, "methods": payload["m"], "issued": payload["i"],
            "expires": payload["e"], "audit_ids": payload["a"],
            "roles": list(user["roles"]) if (user and project) else [],
            "is_admin": bool(user and project and "admin" in user["roles"]),
            "user_id": user["id"] if user else None,
            "project_id": project["id"] if project else None,
        }

    def authenticate(self, auth: dict):
        """Handle the ``auth`` object of ``POST /v3/auth/tokens``; returns (token, context)."""
        from ..errors import bad_request
        if not isinstance(auth, dict) or not isinstance(auth.get("identity"), dict):
            raise bad_request("Expecting to find identity in auth.")
        identity = auth["identity"]
        methods = identity.get("methods")
        if not isinstance(methods, list) or not methods:
            raise bad_request("Expecting to find methods in identity.")
        user = None
        parent_ctx = None
        if "password" in methods:
            pw = identity.get("password", {}).get("user")
            if not isinstance(pw, dict):
                raise bad_request("Expecting to find user in password.")
            if pw.get("id"):
                user = self.user_by(user_id=pw["id"])
            elif pw.get("name"):
                user = self.user_by(name=pw["name"])
            if user is None or not hmac.compare_digest(str(pw.get("password", "")), user["password"]):
                raise Unauthorized("The request you have made requires authentication.")
        elif "token" in methods:
            tok = identity.get("token", {}).get("id")
            parent_ctx = self.validate(tok)
            user = parent_ctx["user"]
        else:
            raise Unauthorized("The request you have made requires authentication.")
        project = None
        scope = auth.get("scope")
        if isinstance(scope, dict) and "project" in scope:
            sp = scope["project"]
            if sp.get("id"):
                project = self.project_by(project_id=sp["id"])
            elif sp.get("name"):
                project = self.project_by(name=sp["name"])
            if project is None or user["project"] is None or project["id"] != user["project"]:
                raise Unauthorized("User has no access to project")
        elif scope is None and parent_ctx is None:
            project = None  # unscoped
        elif parent_ctx is not None and scope is None:
            project = parent_ctx["project"]
        expires = parent_ctx["expires"] if parent_ctx else None
        audit_parent = parent_ctx["audit_ids"][0] if parent_ctx else None
        return self.issue(user, project, methods, audit_parent=audit_parent, expires=expires)

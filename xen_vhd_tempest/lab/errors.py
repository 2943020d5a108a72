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

"""The lab's one error type, and each service's wording of it.

Models raise :class:`LabError` (status, message, nova/cinder ``kind``); ``httpd`` turns it into
the body of the service that answers, through :data:`BODIES` (the one place the four services'
error shapes are written). A LabError raised in a background job (a server build, a volume
from an image) is a user-facing failure: its message goes to the server's fault or the
volume's user message, without a traceback in the lab's log.
"""

from __future__ import annotations


class LabError(Exception):
    """A failure the user sees: ``status`` and ``message``; ``kind`` is the nova/cinder error key
    (``badRequest``, ``itemNotFound``...); ``headers`` go with the response; ``style`` names the
    service whose body to use when it is not the one answering (keystonemiddleware's 401)."""

    style: str | None = None

    def __init__(self, status: int, message: str, *, kind: str | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = dict(headers or {})


class Fault(LabError):
    """A server build, backup or attachment failed: one line for the server's ``fault``."""

    def __init__(self, message: str):
        super().__init__(500, message, kind="computeFault")


class Unauthorized(LabError):
    """No valid token: keystone's 401 body, in front of every service."""

    style = "identity"

    def __init__(self, message="The request you have made requires authentication.", *, headers=None):
        super().__init__(401, message, kind="unauthorized", headers=headers)


def bad_request(message):
    return LabError(400, message, kind="badRequest")


def not_found(message):
    return LabError(404, message, kind="itemNotFound")


def conflict(message):
    return LabError(409, message, kind="conflictingRequest")


def forbidden(message):
    return LabError(403, message, kind="forbidden")


# how each service words a policy refusal (oslo.policy's PolicyNotAuthorized; glance's Forbidden)
POLICY_WORDING = {"compute": "Policy doesn't allow {rule} to be performed.",
                  "volume": "Policy doesn't allow {rule} to be performed.",
                  "image": "You are not authorized to complete {rule} action."}


def policy_forbidden(service, rule):
    return LabError(403, POLICY_WORDING.get(service, "Policy doesn't allow {rule} to be performed.").format(rule=rule),
                    kind="forbidden")


# -- error bodies per service: a dict is sent as JSON, a str as text/plain ------------------------
NOVA_KINDS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
              405: "badMethod", 409: "conflictingRequest", 413: "overLimit", 415: "badMediaType",
              501: "notImplemented"}
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 413: "Request Entity Too Large",
          415: "Unsupported Media Type"}


def generic_body(error: LabError) -> dict:
    """Cinder's (and the lab admin API's) shape: ``{kind: {code, message}}``."""
    return {error.kind or "error": {"code": error.status, "message": error.message}}


def nova_body(error: LabError) -> dict:
    """Nova names the key after the status, whatever the model said."""
    return {NOVA_KINDS.get(error.status, "computeFault"): {"code": error.status, "message": error.message}}


def glance_body(error: LabError) -> str:
    """webob's plain-text error page, which is what glance sends."""
    return f"{error.status} {TITLES.get(error.status, 'Error')}\n\n{error.message}\n\n   "


def keystone_body(error: LabError) -> dict:
    return {"error": {"code": error.status, "title": TITLES.get(error.status, "Error"),
                      "message": error.message}}


BODIES = {"identity": keystone_body, "compute": nova_body, "image": glance_body, "volume": generic_body}

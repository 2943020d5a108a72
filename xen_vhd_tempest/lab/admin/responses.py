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

"""The lab admin API over HTTP: settings (GET, PUT ``{"settings": {...}}``) and status."""

from __future__ import annotations

from ..config import CONVERSION_MODES
from ..errors import LabError, bad_request
from ..httpd import Response


def _require_admin(req):
    if not (req.context and req.context.get("is_admin")):
        raise LabError(403, "The lab's admin API needs an admin token.", kind="forbidden")


class AdminResponses:
    """``settings``: the lab's ``config.Settings``; ``status()``: the status document."""

    def __init__(self, settings, status, log=print):
        self.settings = settings
        self.status_of_lab = status
        self.log = log

    def _settings_body(self, current):
        return {"settings": current, "conversion_modes": list(CONVERSION_MODES)}

    def get_settings(self, req):
        _require_admin(req)
        return Response.json(200, self._settings_body(self.settings.current()))

    def put_settings(self, req):
        _require_admin(req)
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("settings"), dict):
            raise bad_request("Expected {\"settings\": {...}}")
        try:
            current = self.settings.update(**body["settings"])
        except ValueError as error:
            raise bad_request(str(error)) from None
        self.log(f"settings changed: {body['settings']}")
        return Response.json(200, self._settings_body(current))

    def status(self, req):
        _require_admin(req)
        return Response.json(200, self.status_of_lab())

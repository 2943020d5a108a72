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

"""Cinder v3's routes in the lab: path (under ``/volume``) -> ``VolumeResponses`` method.

A new volume API is one row here and one method in ``responses.py`` (state and behaviour in
``models.py``). Routes under ``/v3/{project_id}`` take a microversion and check the project.
"""

from ..httpd import Route

P = "/v3/{project_id}"

ROUTES = (
    Route("GET", "/", "versions", public=True, versioned=False),
    Route("GET", "/v3", "v3_root", public=True, versioned=False),
    Route("POST", P + "/volumes", "create", rule="volume:create"),
    Route("GET", P + "/volumes", "index"),
    Route("GET", P + "/volumes/detail", "detail"),
    Route("GET", P + "/volumes/summary", "summary"),
    Route("GET", P + "/volumes/{volume_id}", "show"),
    Route("PUT", P + "/volumes/{volume_id}", "update", rule="volume:update"),
    Route("DELETE", P + "/volumes/{volume_id}", "delete", rule="volume:delete"),
    Route("POST", P + "/volumes/{volume_id}/action", "action"),
    Route("POST", P + "/snapshots", "snapshot_create"),
    Route("GET", P + "/snapshots", "snapshot_index"),
    Route("GET", P + "/snapshots/detail", "snapshot_detail"),
    Route("GET", P + "/snapshots/{snapshot_id}", "snapshot_show"),
    Route("PUT", P + "/snapshots/{snapshot_id}", "snapshot_update"),
    Route("DELETE", P + "/snapshots/{snapshot_id}", "snapshot_delete"),
    Route("POST", P + "/snapshots/{snapshot_id}/action", "snapshot_action"),
    Route("GET", P + "/snapshots/{snapshot_id}/metadata", "snapshot_metadata"),
    Route("POST", P + "/snapshots/{snapshot_id}/metadata", "snapshot_metadata_create"),
    Route("PUT", P + "/snapshots/{snapshot_id}/metadata", "snapshot_metadata_replace"),
    Route("GET", P + "/snapshots/{snapshot_id}/metadata/{key}", "snapshot_metadata_show"),
    Route("PUT", P + "/snapshots/{snapshot_id}/metadata/{key}", "snapshot_metadata_update"),
    Route("DELETE", P + "/snapshots/{snapshot_id}/metadata/{key}", "snapshot_metadata_delete"),
    Route("GET", P + "/types", "types"),
    Route("GET", P + "/types/{type_id}", "show_type"),
    Route("GET", P + "/messages", "messages"),
    Route("GET", P + "/limits", "limits"),
)

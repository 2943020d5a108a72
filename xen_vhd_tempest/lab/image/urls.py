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

"""Glance v2's routes in the lab: path (under ``/image``) -> ``ImageResponses`` method.

A new image API is one row here and one method in ``responses.py`` (state and behaviour in
``models.py``).
"""

from ..httpd import Route

ROUTES = (
    Route("GET", "/", "versions", public=True),
    Route("GET", "/versions", "versions", public=True),
    Route("GET", "/v2", "versions", public=True),
    Route("POST", "/v2/images", "create", rule="add_image"),
    Route("GET", "/v2/images", "index"),
    Route("GET", "/v2/images/{image_id}", "show"),
    Route("PATCH", "/v2/images/{image_id}", "update", rule="modify_image"),
    Route("DELETE", "/v2/images/{image_id}", "delete", rule="delete_image"),
    Route("PUT", "/v2/images/{image_id}/file", "upload", rule="upload_image"),
    Route("GET", "/v2/images/{image_id}/file", "download"),
    Route("PUT", "/v2/images/{image_id}/tags/{tag}", "add_tag", rule="modify_image"),
    Route("DELETE", "/v2/images/{image_id}/tags/{tag}", "delete_tag", rule="modify_image"),
    Route("POST", "/v2/images/{image_id}/actions/deactivate", "deactivate"),
    Route("POST", "/v2/images/{image_id}/actions/reactivate", "reactivate"),
    Route("POST", "/v2/images/{image_id}/members", "add_member", rule="add_member"),
    Route("GET", "/v2/images/{image_id}/members", "members"),
    Route("GET", "/v2/images/{image_id}/members/{member_id}", "show_member"),
    Route("PUT", "/v2/images/{image_id}/members/{member_id}", "update_member", rule="modify_member"),
    Route("DELETE", "/v2/images/{image_id}/members/{member_id}", "delete_member", rule="delete_member"),
    Route("GET", "/v2/schemas/image", "schema_image"),
    Route("GET", "/v2/schemas/images", "schema_images"),
    Route("GET", "/v2/schemas/member", "schema_member"),
    Route("GET", "/v2/schemas/members", "schema_members"),
    Route("GET", "/v2/schemas/metadefs/{name}", "schema_metadefs"),
    Route("GET", "/v2/info/import", "info_import"),
)

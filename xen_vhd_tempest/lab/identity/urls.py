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

"""Keystone v3's routes in the lab: path (under ``/identity``) -> ``IdentityResponses`` method.

Every route is public to the dispatcher: keystone checks the caller's token itself.
"""

from ..httpd import Route

ROUTES = (
    Route("GET", "/", "versions", public=True),
    Route("GET", "/v3", "v3", public=True),
    Route("POST", "/v3/auth/tokens", "create_token", public=True),
    Route("GET", "/v3/auth/tokens", "show_token", public=True),
    Route("DELETE", "/v3/auth/tokens", "delete_token", public=True),
    Route("GET", "/v3/auth/catalog", "auth_catalog", public=True),
    Route("GET", "/v3/auth/projects", "auth_projects", public=True),
    Route("GET", "/v3/projects/{project_id}", "show_project", public=True),
    Route("GET", "/v3/users/{user_id}", "show_user", public=True),
    Route("GET", "/v3/users/{user_id}/projects", "user_projects", public=True),
    Route("GET", "/v3/users", "list_users", public=True),
    Route("GET", "/v3/projects", "list_projects", public=True),
    Route("GET", "/v3/services", "list_services", public=True),
    Route("GET", "/v3/endpoints", "list_endpoints", public=True),
    Route("GET", "/v3/roles", "list_roles", public=True),
    Route("GET", "/v3/domains", "list_domains", public=True),
    Route("POST", "/v3/projects", "create_project", public=True),
    Route("DELETE", "/v3/projects/{project_id}", "delete_project", public=True),
    Route("POST", "/v3/users", "create_user", public=True),
    Route("DELETE", "/v3/users/{user_id}", "delete_user", public=True),
    Route("PUT", "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", "assign_role", public=True),
)

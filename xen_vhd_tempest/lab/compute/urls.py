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

"""Nova v2.1's routes in the lab: path (under ``/compute``) -> ``ComputeResponses`` method.

A new compute API is one row here and one method in ``responses.py`` (state and behaviour in
``models.py``). Every route but the version list takes a microversion.
"""

from ..httpd import Route

P = "/v2.1"

ROUTES = (
    Route("GET", "/", "versions", public=True, versioned=False),
    Route("GET", P, "v21", public=True),
    Route("GET", P + "/flavors", "flavors"),
    Route("GET", P + "/flavors/detail", "flavors_detail"),
    Route("POST", P + "/flavors", "flavor_create", role="admin", rule="os_compute_api:os-flavor-manage:create"),
    Route("GET", P + "/flavors/{flavor_id}", "flavor_show"),
    Route("DELETE", P + "/flavors/{flavor_id}", "flavor_delete", role="admin",
          rule="os_compute_api:os-flavor-manage:delete"),
    Route("GET", P + "/os-keypairs", "keypairs"),
    Route("POST", P + "/os-keypairs", "keypair_create", role="reader"),
    Route("GET", P + "/os-keypairs/{name}", "keypair_show"),
    Route("DELETE", P + "/os-keypairs/{name}", "keypair_delete", role="reader"),
    Route("GET", P + "/servers", "servers_index"),
    Route("GET", P + "/servers/detail", "servers_detail"),
    Route("POST", P + "/servers", "server_create", rule="os_compute_api:servers:create"),
    Route("GET", P + "/servers/{server_id}", "server_show"),
    Route("PUT", P + "/servers/{server_id}", "server_update", rule="os_compute_api:servers:update"),
    Route("DELETE", P + "/servers/{server_id}", "server_delete", rule="os_compute_api:servers:delete"),
    Route("POST", P + "/servers/{server_id}/action", "server_action"),
    Route("GET", P + "/servers/{server_id}/ips", "ips"),
    Route("GET", P + "/servers/{server_id}/ips/{network}", "ips_network"),
    Route("GET", P + "/servers/{server_id}/os-volume_attachments", "attachments"),
    Route("POST", P + "/servers/{server_id}/os-volume_attachments", "attachment_create",
          rule="os_compute_api:os-volumes-attachments:create"),
    Route("GET", P + "/servers/{server_id}/os-volume_attachments/{volume_id}", "attachment_show"),
    Route("DELETE", P + "/servers/{server_id}/os-volume_attachments/{volume_id}", "attachment_delete",
          rule="os_compute_api:os-volumes-attachments:delete"),
    Route("GET", P + "/limits", "limits"),
)

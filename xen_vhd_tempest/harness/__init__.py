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

"""The pytest front end: the story with python-*clients and paramiko, on a clouds.yaml cloud or the lab.

pytest_plugin  -- the ``pytest11`` plugin: ``--xvt-*`` options (from ``scenario.options``), the
                  cloud under test (``--xvt-os-cloud`` / ``$OS_CLOUD``, else the embedded lab),
                  the story's options and progress reporter as fixtures
test_scenarios -- the two stories as tests: ``pytest --pyargs xen_vhd_tempest.harness``
run            -- ``xen-vhd-tempest run``: those tests under pytest, ending in PASS or FAIL
clients        -- ``scenario.cloud.Cloud`` over keystoneauth + python-novaclient/glanceclient/cinderclient
ssh            -- ``scenario.cloud.Shell`` over paramiko, host keys verified where the cloud publishes them
"""

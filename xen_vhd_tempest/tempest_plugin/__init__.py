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

"""The tempest front end: the story inside tempest, with tempest's clients, config and RemoteClient.

plugin  -- the ``tempest.test_plugins`` entry point (load_tests, register_opts, get_opt_lists)
config  -- ``[xen_vhd]``: ``scenario.options.SETTINGS`` as oslo.config options, plus compute_is_xenserver
manager -- the tests' base class: Options from tempest.conf, the story run, its Outcome judged
cloud   -- ``scenario.cloud.Cloud`` over the test's service clients, resources also on ``addCleanup``
remote  -- ``scenario.cloud.Shell`` over tempest.lib's RemoteClient
tests/scenario -- the tests tempest discovers (``tempest run --regex '^xen_vhd_tempest\\.'``)

Only tempest's stable plugin interface is imported: ``tempest.lib``, ``tempest.config``,
``tempest.test_discover.plugins`` and ``tempest.scenario.manager``.
"""

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

"""Tempest's entry point for xen-vhd-tempest (``tempest.test_plugins`` in setup.cfg)."""

import os

from tempest import config
from tempest.test_discover import plugins

from xen_vhd_tempest.tempest_plugin import config as project_config


class XenVhdTempestPlugin(plugins.TempestPlugin):
    def load_tests(self):
        """(test dir, top level dir): the tests live in ``xen_vhd_tempest/tempest_plugin/tests``."""
        package_dir = os.path.dirname(os.path.abspath(__file__))
        top_level = os.path.dirname(os.path.dirname(package_dir))
        return os.path.join(package_dir, "tests"), top_level

    def register_opts(self, conf):
        config.register_opt_group(conf, project_config.xen_vhd_group, project_config.XenVhdGroup)

    def get_opt_lists(self):
        return project_config.option_lists()

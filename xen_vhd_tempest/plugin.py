"""Tempest's entry point for xen-vhd-tempest (``tempest.test_plugins`` in setup.cfg)."""

import os

from tempest import config
from tempest.test_discover import plugins

from xen_vhd_tempest import config as project_config


class XenVhdTempestPlugin(plugins.TempestPlugin):
    def load_tests(self):
        """(test dir, top level dir): the tests live in ``xen_vhd_tempest/tests``."""
        package_dir = os.path.dirname(os.path.abspath(__file__))
        top_level = os.path.dirname(package_dir)
        return os.path.join(package_dir, "tests"), top_level

    def register_opts(self, conf):
        config.register_opt_group(conf, project_config.xen_vhd_group, project_config.XenVhdGroup)

    def get_opt_lists(self):
        return project_config.option_lists()

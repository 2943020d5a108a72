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

"""The base of the plugin's scenario tests: a story of ``xen_vhd_tempest.scenario`` run inside tempest.

``XenServerImageScenarioTest`` builds the story's ``Options`` from tempest.conf (``[xen_vhd]``,
each unset option falling back to tempest's own as ``scenario.options.SETTINGS`` says), runs the
story on ``cloud.TempestCloud`` with its progress logged and attached to the test's details,
and judges the story's ``Outcome`` the way the pytest harness does (``Outcome.verdict``).
"""

import io
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request

from oslo_log import log as logging
from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.scenario import manager
from testtools import content

from xen_vhd_tempest.scenario.options import SETTINGS, Options
from xen_vhd_tempest.scenario.report import Reporter
from xen_vhd_tempest.tempest_plugin.cloud import TempestCloud

CONF = config.CONF
LOG = logging.getLogger(__name__)
SERVICES = ("nova", "cinder", "glance")


class _LogStream(io.StringIO):
    """The story's progress: kept for the test's details and logged line by line."""

    def write(self, text):
        for line in text.splitlines():
            if line.strip():
                LOG.info("%s", line)
        return super().write(text)

    def flush(self):
        pass


def options_from_conf(conf, **overrides):
    """``Options`` from tempest.conf: ``[xen_vhd]`` first, then each setting's tempest fallback."""
    values = {}
    for setting in SETTINGS:
        value = getattr(conf.xen_vhd, setting.tempest) if setting.tempest else None
        if value is None and setting.tempest_fallback:
            section, option = setting.tempest_fallback.split(".")
            value = getattr(getattr(conf, section), option)
        if value is not None:
            values[setting.name] = value
    values.update(overrides)
    return Options(**values)


class XenServerImageScenarioTest(manager.ScenarioTest):
    """Runs one story of the scenario library and judges its outcome as the test's result."""

    credentials = ["primary"]

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        missing = [name for name in SERVICES if not getattr(CONF.service_available, name)]
        if missing:
            raise cls.skipException(f"the scenario needs compute, volume and image: {', '.join(missing)} "
                                    f"not available ([service_available])")
        if not CONF.validation.run_validation:
            raise cls.skipException("the scenario checks data inside guests over SSH: set [validation] "
                                    "run_validation = True")

    def setUp(self):
        super().setUp()
        parent = CONF.xen_vhd.work_dir
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.workdir = tempfile.mkdtemp(prefix="xen-vhd-tempest-", dir=parent or None)
        self.addCleanup(shutil.rmtree, self.workdir, ignore_errors=True)

    def options(self, **overrides):
        return options_from_conf(CONF, workdir=self.workdir,
                                 prefix=data_utils.rand_name(name="xen-vhd", prefix=CONF.resource_name_prefix),
                                 **overrides)

    def run_story(self, story_class, options):
        """Run the story; the test fails unless its outcome is what ``expected_fault`` asks for."""
        stream = _LogStream()
        story = story_class(TempestCloud(self), options, Reporter(stream))
        outcome = None
        try:
            outcome = story.run()
        finally:
            self.addDetail("xen-vhd-scenario", content.text_content(stream.getvalue()))
            if outcome is not None:
                self.addDetail("xen-vhd-outcome", content.text_content(json.dumps(outcome.to_json(), indent=1)))
        problem = outcome.verdict(options.expected_fault)
        if problem:
            self.fail(f"[xen_vhd] {problem}" if options.expected_fault != "none" else problem)
        return outcome


def fetch_raw_image(ref, workdir):
    """A local path for ``[xen_vhd] raw_image``: a path or file:// URL as is, http(s) downloaded."""
    parsed = urllib.parse.urlparse(ref)
    if parsed.scheme in ("", "file"):
        return urllib.parse.unquote(parsed.path) if parsed.scheme else ref
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"[xen_vhd] raw_image: unsupported URL scheme {parsed.scheme!r}")
    dest = os.path.join(workdir, "raw-image")
    LOG.info("downloading %s", ref)
    with urllib.request.urlopen(ref, timeout=60) as resp, open(dest, "wb") as f:
        shutil.copyfileobj(resp, f, 1 << 20)
    return dest

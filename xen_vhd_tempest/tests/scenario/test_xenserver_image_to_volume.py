"""XenServer images (VHD chains in a tgz) become Cinder volumes holding the disk they represent.

The steps are the scenario library's (``xen_vhd_tempest.scenario.story``), the same ones the
pytest harness runs with python-*clients; here they run on tempest's clients, waiters and
RemoteClient (``tempest_cloud``) with options from ``tempest.conf`` (``[xen_vhd]``).
"""

import io
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request

from oslo_log import log as logging
from tempest import config
from tempest.common import utils
from tempest.lib import decorators
from tempest.lib.common.utils import data_utils
from tempest.scenario import manager
from testtools import content

from xen_vhd_tempest.scenario.report import Reporter
from xen_vhd_tempest.scenario.story import BackupScenario, Options, SyntheticScenario
from xen_vhd_tempest.tests.scenario.tempest_cloud import TempestCloud, ssh_factory

CONF = config.CONF
LOG = logging.getLogger(__name__)


class _LogStream(io.StringIO):
    """The story's progress: kept for the test's details and logged line by line."""

    def write(self, text):
        for line in text.splitlines():
            if line.strip():
                LOG.info("%s", line)
        return super().write(text)

    def flush(self):
        pass


class XenServerImageScenarioTest(manager.ScenarioTest):
    """Runs one story of the scenario library and reports its summary as the test's result."""

    credentials = ["primary"]

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
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
        xen = CONF.xen_vhd
        values = dict(
            image=xen.image_ref or CONF.compute.image_ref,
            helper_image=xen.helper_image_ref or CONF.compute.image_ref,
            flavor=xen.flavor_ref or CONF.compute.flavor_ref,
            network=CONF.compute.fixed_network_name,
            ssh_user=xen.ssh_user or CONF.validation.image_ssh_user,
            ssh_password=CONF.validation.image_ssh_password,
            boot_timeout=float(xen.boot_timeout),
            image_timeout=float(xen.image_timeout),
            volume_timeout=float(xen.volume_timeout),
            prefix=data_utils.rand_name(name="xen-vhd", prefix=CONF.resource_name_prefix),
            workdir=self.workdir,
            dd_count=xen.dd_count,
        )
        values.update(overrides)
        return Options(**values)

    def run_story(self, story_class, options):
        stream = _LogStream()
        reporter = Reporter(stream)
        story = story_class(TempestCloud(self), options, reporter, ssh_factory=ssh_factory(self))
        try:
            passed = story.run()
        finally:
            self.addDetail("xen-vhd-scenario", content.text_content(stream.getvalue()))
        self.check_outcome(passed, story, stream.getvalue())

    def check_outcome(self, passed, story, log):
        expected = CONF.xen_vhd.expected_fault
        if expected == "none":
            if not passed:
                self.fail(f"{story.title} failed:\n{_summary(log)}")
            return
        named = _fault_named(story.diagnosis)
        if passed:
            self.fail(f"[xen_vhd] expected_fault = {expected}, but the volume matched the reference "
                      f"conversion: the cloud is not converting that wrong way")
        if named != expected:
            self.fail(f"[xen_vhd] expected_fault = {expected}, but the scenario "
                      f"{'diagnosed ' + repr(named) if named else 'failed without naming a known fault'}:\n"
                      f"{_summary(log)}")


class XenServerBackupToVolumeTest(XenServerImageScenarioTest):
    """The seed: a ``nova backup`` of a booted XenServer instance becomes a volume that boots."""

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.xen_vhd.compute_is_xenserver:
            raise cls.skipException("the backup scenario needs a compute with XenServer semantics: set "
                                    "[xen_vhd] compute_is_xenserver = True (XenAPI, or the xen-vhd-tempest lab)")

    @decorators.idempotent_id("cd7a98a8-5d3c-4605-b30e-efb28c3d704b")
    @decorators.attr(type="slow")
    @utils.services("compute", "volume", "image")
    def test_backup_image_to_volume(self):
        """Boot the XenServer image; dd 10 MB of the root disk to somefile and md5sum it;
        createBackup; download the backup and check/convert it with the reference converter;
        create a volume from the backup; attach it and compare its bytes with the reference;
        boot from the volume and ``md5sum -c somefile.md5``.
        """
        self.run_story(BackupScenario, self.options())


class SyntheticChainToVolumeTest(XenServerImageScenarioTest):
    """For any compute: a XenServer chain built from a raw disk, uploaded as vhd/ovf."""

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.xen_vhd.raw_image:
            raise cls.skipException("the synthetic-chain scenario needs a bootable raw disk: set [xen_vhd] "
                                    "raw_image to its path or URL")

    @decorators.idempotent_id("37c756f2-b2bb-4dd8-9c73-7fc3eceff67f")
    @decorators.attr(type="slow")
    @utils.services("compute", "volume", "image")
    def test_synthetic_chain_to_volume(self):
        """Build base + resize layer + leaf (a known pattern, partial-sector writes) from the raw
        disk; upload it as vhd/ovf; create a volume from it; compare its bytes with the reference
        conversion; boot from the volume and check the pattern.
        """
        raw = fetch_raw_image(CONF.xen_vhd.raw_image, self.workdir)
        self.run_story(SyntheticScenario, self.options(raw_image=raw))


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


def _fault_named(diagnosis):
    """The known-wrong conversion a diagnosis names ('leaf-only', ...), or None."""
    if diagnosis is None:
        return None
    variant = getattr(diagnosis, "variant", None)
    if variant:
        return variant
    found = re.search(r"matches (?:the )?'([a-z-]+)'", str(diagnosis))
    return found.group(1) if found else None


def _summary(log):
    """The story's summary table (from its last blank-line-separated block with 'step')."""
    at = log.rfind("\nstep ")
    return log[at:].strip() if at >= 0 else log[-3000:]

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

"""XenServer images (VHD chains in a tgz) become Cinder volumes holding the disk they represent.

The steps are the scenario library's (``xen_vhd_tempest.scenario.story``), the same ones the
pytest harness runs with python-*clients; here they run on tempest's clients and RemoteClient
(``tempest_plugin.manager``) with options from ``tempest.conf`` (``[xen_vhd]``).
"""

from tempest import config
from tempest.lib import decorators

from xen_vhd_tempest.scenario.story import BackupScenario, SyntheticScenario
from xen_vhd_tempest.tempest_plugin import manager

CONF = config.CONF


class XenServerBackupToVolumeTest(manager.XenServerImageScenarioTest):
    """The seed: a ``nova backup`` of a booted XenServer instance becomes a volume that boots."""

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.xen_vhd.compute_is_xenserver:
            raise cls.skipException("the backup scenario needs a compute with XenServer semantics: set "
                                    "[xen_vhd] compute_is_xenserver = True (XenAPI, or the xen-vhd-tempest lab)")

    @decorators.idempotent_id("cd7a98a8-5d3c-4605-b30e-efb28c3d704b")
    @decorators.attr(type=["slow", "compute", "image", "volume"])
    def test_backup_image_to_volume(self):
        """Boot the XenServer image; dd 10 MB of the root disk to somefile and md5sum it;
        createBackup; download the backup and check/convert it with the reference converter;
        create a volume from the backup; attach it and compare its bytes with the reference;
        boot from the volume and ``md5sum -c somefile.md5``.
        """
        self.run_story(BackupScenario, self.options())


class SyntheticChainToVolumeTest(manager.XenServerImageScenarioTest):
    """For any compute: a XenServer chain built from a raw disk, uploaded as vhd/ovf."""

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.xen_vhd.raw_image:
            raise cls.skipException("the synthetic-chain scenario needs a bootable raw disk: set [xen_vhd] "
                                    "raw_image to its path or URL")

    @decorators.idempotent_id("37c756f2-b2bb-4dd8-9c73-7fc3eceff67f")
    @decorators.attr(type=["slow", "compute", "image", "volume"])
    def test_synthetic_chain_to_volume(self):
        """Build base + resize layer + leaf (a known pattern, partial-sector writes) from the raw
        disk; upload it as vhd/ovf; create a volume from it; compare its bytes with the reference
        conversion; boot from the volume and check the pattern.
        """
        raw = manager.fetch_raw_image(CONF.xen_vhd.raw_image, self.workdir)
        self.run_story(SyntheticScenario, self.options(raw_image=raw))

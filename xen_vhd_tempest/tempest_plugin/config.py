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

"""The tempest plugin's options: one group, ``[xen_vhd]``, option lists only.

The story's options are ``scenario.options.SETTINGS`` (the table the pytest harness and
``xen-vhd-tempest run`` build theirs from); each row with a ``tempest`` name is an option here,
and a row's ``tempest_fallback`` is the tempest option used while it is unset. One option is
tempest's alone: ``compute_is_xenserver`` selects the backup scenario (the harness selects with
pytest markers instead).

Which scenario runs where:

* ``compute_is_xenserver = True`` (a XenServer compute, or the lab): the seed's scenario - boot
  the XenServer image, write a file, ``nova backup``, volume from the backup, byte-exact check,
  boot from the volume.
* ``raw_image`` set (any compute): a XenServer chain built locally from that bootable raw disk,
  uploaded as vhd/ovf, then the same volume steps.

``expected_fault`` turns a test around for sensitivity runs: the cloud is known to convert
XenServer images one wrong way, and the test passes only when the scenario notices it and names it.
"""

from oslo_config import cfg

from xen_vhd_tempest.scenario.options import FAULTS, SETTINGS  # noqa: F401 - FAULTS: the choices, importable here

OPT_TYPES = {"str": cfg.StrOpt, "int": cfg.IntOpt, "float": cfg.FloatOpt, "bool": cfg.BoolOpt, "port": cfg.PortOpt}

xen_vhd_group = cfg.OptGroup(
    name="xen_vhd",
    title="XenServer images to Cinder volumes (xen-vhd-tempest)",
    help="Options of the xen-vhd-tempest plugin: the XenServer image to boot, the raw disk a "
         "synthetic chain is built from, SSH and timeouts.")


def _opt(setting):
    text = setting.help[0].upper() + setting.help[1:] + "."
    kw = {"help": text}
    if setting.tempest_fallback:
        section, option = setting.tempest_fallback.split(".")
        kw["help"] += f" Default: [{section}] {option}."
    elif setting.default is not None:
        kw["default"] = setting.default
    if setting.choices:
        kw["choices"] = setting.choices
    return OPT_TYPES[setting.kind](setting.tempest, **kw)


XenVhdGroup = [
    cfg.BoolOpt("compute_is_xenserver",
                default=False,
                help="The compute service runs XenServer semantics (XenAPI, or the xen-vhd-tempest lab): "
                     "it boots vhd/ovf images and createBackup exports a VHD chain. Enables the backup "
                     "scenario."),
] + [_opt(s) for s in SETTINGS if s.tempest]


def option_lists():
    """[(group name, options)] for ``get_opt_lists`` and sample config generation."""
    return [(xen_vhd_group.name, XenVhdGroup)]

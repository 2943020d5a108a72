"""The tempest plugin's options: one group, ``[xen_vhd]``, option lists only.

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

# The known-wrong conversions the diagnosis can name (converter.variants / the lab's faulty modes).
FAULTS = ("none", "raw-copy", "leaf-only", "no-resize", "ignore-bitmaps", "wrong-order", "truncate")

xen_vhd_group = cfg.OptGroup(
    name="xen_vhd",
    title="XenServer images to Cinder volumes (xen-vhd-tempest)",
    help="Options of the xen-vhd-tempest plugin: the XenServer image to boot, the raw disk a "
         "synthetic chain is built from, SSH and timeouts.")

XenVhdGroup = [
    cfg.StrOpt("image_ref",
               help="The XenServer image (disk_format=vhd, container_format=ovf) the backup scenario "
                    "boots. Default: [compute] image_ref."),
    cfg.BoolOpt("compute_is_xenserver",
                default=False,
                help="The compute service runs XenServer semantics (XenAPI, or the xen-vhd-tempest lab): "
                     "it boots vhd/ovf images and createBackup exports a VHD chain. Enables the backup "
                     "scenario."),
    cfg.StrOpt("raw_image",
               help="Path or URL (file://, http://, https://) of a bootable raw disk image (e.g. a raw "
                    "cirros). The synthetic-chain scenario builds a XenServer image from it. Unset: that "
                    "scenario is skipped."),
    cfg.StrOpt("helper_image_ref",
               help="The image of the server volumes are attached to in the synthetic scenario. "
                    "Default: [compute] image_ref."),
    cfg.StrOpt("flavor_ref",
               help="Flavor of the servers the scenarios boot. Default: [compute] flavor_ref."),
    cfg.StrOpt("ssh_user",
               help="User to SSH to the guests as. Default: [validation] image_ssh_user."),
    cfg.PortOpt("ssh_port",
                default=22,
                help="Port of the guests' SSH server."),
    cfg.IntOpt("boot_timeout",
               default=600,
               help="Seconds for a server to become ACTIVE and answer SSH."),
    cfg.IntOpt("image_timeout",
               default=900,
               help="Seconds for a backup or an uploaded image to become active."),
    cfg.IntOpt("volume_timeout",
               default=900,
               help="Seconds for a volume to become available (conversion included) or in-use."),
    cfg.IntOpt("dd_count",
               default=10000,
               help="KiB of the root disk the backup scenario copies to somefile (the seed's dd count)."),
    cfg.StrOpt("work_dir",
               help="Where each test makes its temporary directory for downloaded backups and "
                    "reference conversions (a few GiB, sparse), removed after the test. Default: the "
                    "system's temporary directory."),
    cfg.StrOpt("expected_fault",
               default="none",
               choices=FAULTS,
               help="The known-wrong conversion the cloud is expected to perform (sensitivity runs "
                    "against a deliberately broken cloud, e.g. the lab's conversion_mode). 'none': the "
                    "volume must match the reference conversion. Otherwise the test passes only when "
                    "the byte-exact check fails and the diagnosis names this fault."),
]


def option_lists():
    """[(group name, options)] for ``get_opt_lists`` and sample config generation."""
    return [(xen_vhd_group.name, XenVhdGroup)]

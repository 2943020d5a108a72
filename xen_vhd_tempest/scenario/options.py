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

"""The story's options, declared once: ``SETTINGS`` is the table every front end builds from.

Each ``Setting`` is one field of ``Options`` and says how the front ends expose it:

* ``tempest``: the option's name in tempest.conf's ``[xen_vhd]`` (``tempest_plugin.config``),
  and ``tempest_fallback``, the tempest option used when it is unset ("compute.image_ref");
* ``flag``: the command-line stem, ``--xvt-<flag>`` for pytest (``harness.pytest_plugin``)
  and ``--<flag>`` for ``xen-vhd-tempest run`` (``harness.run``).

A setting with neither is the front end's own business (``host_key_of``, ``prefix``).
"""

import dataclasses
import uuid

from converter.variants import VARIANTS

# The known-wrong conversions a diagnosis can name, and "none" (the volume must be right).
FAULTS = ("none", *VARIANTS)


def port(text):
    """A TCP port number (argparse: "invalid port value" for anything else)."""
    number = int(text)
    if not 0 < number < 65536:
        raise ValueError(f"{text}: not a TCP port")
    return number


KINDS = {"str": str, "int": int, "float": float, "bool": bool, "port": port, "object": object}


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    kind: str                      # str | int | float | bool | port | object
    default: object
    help: str
    tempest: str | None = None
    tempest_fallback: str | None = None
    flag: str | None = None
    choices: tuple | None = None

    @property
    def type(self):
        return KINDS[self.kind]


SETTINGS = (
    Setting("image", "str", None, "the XenServer image (disk_format=vhd, container_format=ovf) the backup "
            "scenario boots", tempest="image_ref", tempest_fallback="compute.image_ref", flag="image"),
    Setting("helper_image", "str", None, "the image of the server volumes are attached to in the synthetic "
            "scenario", tempest="helper_image_ref", tempest_fallback="compute.image_ref", flag="helper-image"),
    Setting("raw_image", "str", None, "a bootable raw disk (e.g. a raw cirros) the synthetic scenario builds "
            "a XenServer chain from", tempest="raw_image", flag="raw-image"),
    Setting("flavor", "str", "m1.tiny", "flavor (id or name) of the servers the scenarios boot",
            tempest="flavor_ref", tempest_fallback="compute.flavor_ref", flag="flavor"),
    Setting("network", "str", None, "network (id or name) the servers are booted on; unset: the cloud's "
            "choice", tempest_fallback="compute.fixed_network_name", flag="network"),
    Setting("ssh_user", "str", "cirros", "user to SSH to the guests as", tempest="ssh_user",
            tempest_fallback="validation.image_ssh_user", flag="ssh-user"),
    Setting("ssh_password", "str", None, "SSH password, tried after the run's keypair",
            tempest_fallback="validation.image_ssh_password", flag="ssh-password"),
    Setting("ssh_port", "port", 22, "port of the guests' SSH server", tempest="ssh_port", flag="ssh-port"),
    Setting("boot_timeout", "float", 600.0, "seconds for a server to become ACTIVE and answer SSH",
            tempest="boot_timeout", flag="boot-timeout"),
    Setting("image_timeout", "float", 900.0, "seconds for a backup or an uploaded image to become active",
            tempest="image_timeout", flag="image-timeout"),
    Setting("volume_timeout", "float", 900.0, "seconds for a volume to become available (conversion "
            "included) or in-use", tempest="volume_timeout", flag="volume-timeout"),
    Setting("dd_count", "int", 10000, "KiB of the root disk the backup scenario copies to somefile (the "
            "seed's dd count)", tempest="dd_count", flag="dd-count"),
    Setting("workdir", "str", None, "where downloaded backups and reference conversions go (a few GiB, "
            "sparse); unset: a temporary directory", tempest="work_dir", flag="workdir"),
    Setting("expected_fault", "str", "none", "the known-wrong conversion the cloud is expected to perform "
            "(sensitivity runs against a deliberately broken cloud, e.g. the lab's conversion mode); 'none': "
            "the volume must match the reference conversion, otherwise the run passes only when the "
            "byte-exact check fails and the diagnosis names this fault", tempest="expected_fault",
            flag="expected-fault", choices=FAULTS),
    Setting("keep", "bool", False, "keep a failed run's resources for debugging", flag="keep-on-failure"),
    Setting("host_key_of", "object", None, "callable(server id) -> the host key(s) the cloud published "
            "for it, or None"),
    Setting("prefix", "str", "", "run-unique name prefix of everything created"),
)
BY_NAME = {s.name: s for s in SETTINGS}


def add_flag(add, setting, prefix):
    """``add(prefix + flag, **kw)`` for one setting: argparse's ``add_argument`` and pytest's
    ``addoption`` alike. The value lands in ``xvt_<name>``, None (False) when not given, so a
    front end can tell "not given" from the default."""
    shown = f" (default: {setting.default})" if setting.default not in (None, "", False) else ""
    if setting.kind == "bool":
        add(prefix + setting.flag, action="store_true", dest=f"xvt_{setting.name}", help=setting.help)
    else:
        add(prefix + setting.flag, type=setting.type, default=None, choices=setting.choices,
            dest=f"xvt_{setting.name}", metavar=setting.name.upper(), help=setting.help + shown)


def _post_init(self):
    if not self.prefix:
        self.prefix = f"xvt-{uuid.uuid4().hex[:8]}"
    if self.expected_fault not in FAULTS:
        raise ValueError(f"expected_fault {self.expected_fault!r}: not one of {', '.join(FAULTS)}")


Options = dataclasses.make_dataclass(
    "Options", [(s.name, s.type, dataclasses.field(default=s.default)) for s in SETTINGS],
    namespace={"__post_init__": _post_init, "__doc__": "The story's options: one field per ``SETTINGS`` row."})
Options.__module__ = __name__

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

"""The files a running lab writes for its clients: ``clouds.yaml``, ``accounts.yaml``,
``tempest.conf`` and ``lab.json``, from real serialisers (PyYAML, configparser, json).

A new tempest option for the lab is one entry in :func:`tempest_sections`.
"""

from __future__ import annotations

import configparser
import io
import json
import os
from pathlib import Path

import yaml

from .compute import responses as compute_responses
from .config import REGION
from .volume import responses as volume_responses

CLOUD_NAME = "xen-vhd-lab"
SSH_USER = "cirros"
SSH_PASSWORD = "gocubsgo"


def write(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def clouds_yaml(creds: dict) -> str:
    """Clouds ``xen-vhd-lab`` (user demo) and ``xen-vhd-lab-admin`` (user admin)."""
    def cloud(who):
        c = creds[who]
        return {"auth": {"auth_url": creds["auth_url"], "username": c["username"], "password": c["password"],
                         "project_name": c["project_name"], "user_domain_name": "Default",
                         "project_domain_name": "Default"},
                "region_name": REGION, "identity_api_version": 3, "image_api_version": 2,
                "volume_api_version": 3, "interface": "public"}
    return yaml.safe_dump({"clouds": {CLOUD_NAME: cloud("demo"), f"{CLOUD_NAME}-admin": cloud("admin")}},
                          sort_keys=False, default_flow_style=False)


def accounts_yaml(creds: dict) -> str:
    """tempest's pre-provisioned accounts (``[auth] test_accounts_file``)."""
    accounts = [{"username": "demo", "project_name": "demo", "password": creds["demo"]["password"],
                 "user_domain_name": "Default", "project_domain_name": "Default", "roles": ["member"]},
                {"username": "admin", "project_name": "admin", "password": creds["admin"]["password"],
                 "user_domain_name": "Default", "project_domain_name": "Default", "roles": ["admin"],
                 "types": ["admin"]}]
    return yaml.safe_dump(accounts, sort_keys=False, default_flow_style=False)


def _disabled(*names):
    return {name: False for name in names}


def tempest_sections(*, state_dir: Path, creds: dict, image_id: str, raw_image) -> dict:
    """tempest.conf for the lab as {section: {option: value}}."""
    return {
        "DEFAULT": {"log_dir": state_dir, "log_file": "tempest.log"},
        "oslo_concurrency": {"lock_path": state_dir / "tempest_lock"},
        # tempest's default: a project and users per test class, made through keystone's admin API
        # (tempest 47 asks for primary, alt, project_reader and admin personas)
        "auth": {"use_dynamic_credentials": True,
                 "admin_username": "admin", "admin_password": creds["admin"]["password"],
                 "admin_project_name": "admin", "admin_domain_name": "Default",
                 "default_credentials_domain_name": "Default"},
        "identity": {"uri_v3": f"{creds['auth_url']}/v3", "auth_version": "v3", "region": REGION,
                     "catalog_type": "identity", "disable_ssl_certificate_validation": True},
        "identity-feature-enabled": {"api_v2": False, "api_v3": True},
        "compute": {"image_ref": image_id, "image_ref_alt": image_id, "flavor_ref": 1, "flavor_ref_alt": 84,
                    "min_microversion": compute_responses.MIN_VERSION,
                    "max_microversion": compute_responses.MAX_VERSION,
                    # no network API (no neutron, nova's os-networks proxy is gone): tempest boots servers
                    # without "networks" and nova picks the one network, as nova-network did
                    "build_timeout": 300, "build_interval": 1,
                    "region": REGION, "catalog_type": "compute"},
        "compute-feature-enabled": {"console_output": True,
                                    **_disabled("resize", "live_migration", "vnc_console",
                                                "spice_console", "serial_console", "rescue", "suspend", "pause",
                                                "shelve", "interface_attach", "attach_encrypted_volume"),
                                    "config_drive": True, "personality": False, "snapshot": True},
        "image": {"catalog_type": "image", "region": REGION, "disk_formats": "vhd,raw,qcow2",
                  "container_formats": "ovf,bare"},
        # the lab's glance does not inspect uploaded data (no format enforcement), has no import
        "image-feature-enabled": {"import_image": False, "image_format_enforcement": False},
        "volume": {"catalog_type": "volumev3", "region": REGION,
                   "min_microversion": volume_responses.MIN_VERSION,
                   "max_microversion": volume_responses.MAX_VERSION,
                   "volume_size": 1, "build_timeout": 300, "build_interval": 1},
        # volume snapshots; no backups or clones; the image/volume dependency tests snapshot a
        # volume-backed server (nova's createImage of one is not served yet)
        "volume-feature-enabled": dict(snapshot=True, **_disabled(
            "backup", "clone", "manage_volume", "extend_attached_volume", "enable_volume_image_dep_tests")),
        "network": {"public_network_id": "", "floating_network_name": ""},
        "network-feature-enabled": {"floating_ips": False},
        "validation": {"run_validation": True, "connect_method": "fixed", "auth_method": "keypair",
                       "image_ssh_user": SSH_USER, "image_ssh_password": SSH_PASSWORD,
                       "image_alt_ssh_user": SSH_USER, "network_for_ssh": compute_responses.NETWORK,
                       "ip_version_for_ssh": 4, "ssh_timeout": 300, "security_group": False},
        "enforce_scope": {"nova": True, "glance": True, "cinder": True},
        "service_available": {"nova": True, "glance": True, "cinder": True, "neutron": False, "swift": False},
        # The lab's compute has XenServer semantics: the backup scenario runs; the synthetic one
        # builds its chain from the lab guest's raw disk.
        "xen_vhd": {"compute_is_xenserver": True, "raw_image": raw_image or ""},
    }


def tempest_conf(url: str, **sections) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str          # option names as written
    parser.read_dict({name: {key: str(value) for key, value in options.items()}
                      for name, options in tempest_sections(**sections).items()})
    out = io.StringIO()
    out.write(f"# Generated by xen-vhd-tempest lab for {url}\n")
    parser.write(out)
    return out.getvalue()


def lab_json(*, url: str, state_dir: Path, creds: dict, started_at, default_image_id) -> str:
    """How to reach the running lab (``lab status``, ``lab env`` and the harness read it)."""
    return json.dumps({
        "pid": os.getpid(), "url": url, "auth_url": creds["auth_url"], "state_dir": str(state_dir),
        "started_at": started_at, "default_image_id": default_image_id,
        "cloud": CLOUD_NAME, "clouds_yaml": str(state_dir / "clouds.yaml"),
        "tempest_conf": str(state_dir / "tempest.conf"), "credentials": creds,
        "ssh_user": SSH_USER, "ssh_password": SSH_PASSWORD, "network": compute_responses.NETWORK,
    }, indent=2) + "\n"

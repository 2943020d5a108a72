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

"""devstack/plugin.sh through devstack's phases, under bash, with devstack's functions doubled
(tests/unit/devstack_double.sh): real INI files, the real converter building the image, every
other call recorded."""

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from converter.check import check_image

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "devstack" / "plugin.sh"
SETTINGS = ROOT / "devstack" / "settings"
DOUBLE = Path(__file__).with_name("devstack_double.sh")
BINDEP = ROOT / "devstack" / "files" / "bindep.txt"
PHASES = ("pre-install", "install", "post-config", "extra", "test-config")
FAKE_IMAGE_ID = "0b8c1d0e-5a1f-4f57-9d4e-3c7e2f1a9b00"
MIB = 1 << 20


class Devstack:
    """A fake devstack tree in ``tmp``: $DEST, $DATA_DIR, $FILES with a bootable disk, glance-api.conf
    and tempest.conf as devstack leaves them before the plugin runs."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.dest = tmp / "opt-stack"
        self.data = tmp / "data"
        self.files = tmp / "files"
        for d in (self.dest, self.data, self.files, self.dest / "tempest" / "etc"):
            d.mkdir(parents=True, exist_ok=True)
        disk = bytearray(4 * MIB)
        disk[510:512] = b"\x55\xaa"                         # a boot sector signature, data further in
        disk[MIB:MIB + 11] = b"cirros-root"
        (self.files / "cirros-0.6.3-x86_64-disk.img").write_bytes(bytes(disk))
        self.glance_conf = tmp / "glance-api.conf"
        self.glance_conf.write_text("[DEFAULT]\ndebug = True\n\n[image_format]\nrequire_image_format_match = True\n")
        self.tempest_conf = self.dest / "tempest" / "etc" / "tempest.conf"
        self.tempest_conf.write_text("[compute]\nimage_ref = 1234\n\n[image]\ndisk_formats = qcow2,raw\n")
        self.calls_file = tmp / "calls.log"
        # /usr/local/bin stands in tmp: the plugin links vhd-util there, and a vhd-util installed
        # on the machine running the tests must not change what they see
        self.local_bin = tmp / "usr-local-bin"
        self.local_bin.mkdir()
        self.env = {
            "PATH": os.pathsep.join([str(self.local_bin), str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
            "XEN_VHD_TEMPEST_VHD_UTIL_LINK": str(self.local_bin / "vhd-util"),
            "HOME": str(tmp),
            "XVT_PYTHON": sys.executable,
            "DEVSTACK_CALLS": str(self.calls_file),
            "FAKE_IMAGE_ID": FAKE_IMAGE_ID,
            "DEST": str(self.dest),
            "DATA_DIR": str(self.data),
            "FILES": str(self.files),
            "DEFAULT_IMAGE_FILE_NAME": "cirros-0.6.3-x86_64-disk.img",
            "GLANCE_API_CONF": str(self.glance_conf),
            "TEMPEST_DIR": str(self.dest / "tempest"),
            "REQUIREMENTS_DIR": str(self.dest / "requirements"),
            "TEMPEST_CONFIG": str(self.tempest_conf),
            "REGION_NAME": "RegionOne",
            "XEN_VHD_TEMPEST_DIR": str(ROOT),
        }

    def run(self, *invocations, check=True, **env):
        """Source settings, then plugin.sh once per (mode, phase), in one bash like stack.sh."""
        lines = ["set -o errexit -o nounset", f"source {DOUBLE}", f"source {SETTINGS}"]
        lines += [f"source {PLUGIN} {' '.join(inv)}" for inv in invocations]
        proc = subprocess.run(["bash", "-c", "\n".join(lines)], env={**self.env, **env}, cwd=self.tmp,
                              capture_output=True, text=True, timeout=120)
        if check and proc.returncode:
            raise AssertionError(f"bash exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def stack(self, **env):
        return self.run(*[("stack", phase) for phase in PHASES], **env)

    def calls(self, name=None):
        if not self.calls_file.exists():
            return []
        out = [line.rstrip("\n").split("\t") for line in self.calls_file.read_text().splitlines()]
        return [c for c in out if name is None or c[0] == name]

    @staticmethod
    def ini(path):
        conf = configparser.RawConfigParser()
        conf.read(path)
        return conf


@pytest.fixture
def devstack(tmp_path):
    return Devstack(tmp_path)


def test_stack_configures_glance_and_tempest_and_uploads_a_xenserver_image(devstack):
    devstack.stack()

    glance = devstack.ini(devstack.glance_conf)
    assert "vhd" in glance.get("image_format", "disk_formats").split(",")
    assert "ovf" in glance.get("image_format", "container_formats").split(",")
    assert glance.get("image_format", "require_image_format_match") == "False"

    tempest = devstack.ini(devstack.tempest_conf)
    data = devstack.data / "xen-vhd-tempest"
    assert dict(tempest.items("xen_vhd")) == {
        "image_ref": FAKE_IMAGE_ID,
        "raw_image": str(data / "base.raw"),
        "compute_is_xenserver": "False",
        "expected_fault": "none",
        "work_dir": str(data / "work"),
    }
    assert tempest.get("image", "disk_formats") == "qcow2,raw,vhd"
    assert tempest.get("compute", "image_ref") == "1234"                      # devstack's own, untouched

    # the uploaded file: vhd/ovf, public, a XenServer image that passes XenServer's import checks
    (upload,) = devstack.calls("openstack")
    args = upload[1:]
    assert args[args.index("--disk-format") + 1] == "vhd"
    assert args[args.index("--container-format") + 1] == "ovf"
    assert "--public" in args and "cirros-xenserver" in args
    image = Path(args[args.index("--file") + 1])
    assert image == data / "cirros-xenserver.vhd.tgz"
    report = check_image(image)
    assert report.ok, report.problems
    assert [m.name for m in report.members] == ["0.vhd"]
    assert report.members[0].current_size == 4 * MIB
    assert (data / "base.raw").read_bytes() == (devstack.files / "cirros-0.6.3-x86_64-disk.img").read_bytes()

    calls = devstack.calls()
    assert not devstack.calls("install_package")         # qemu-utils: devstack/files/bindep.txt (below)
    assert ["pip_install", str(ROOT)] in calls
    upper = str(devstack.dest / "requirements" / "upper-constraints.txt")
    assert ["tox", str(devstack.dest / "tempest"), "-evenv-tempest", "--", "pip", "install", "-c", upper,
            str(ROOT)] in calls
    assert not devstack.calls("die")
    assert not devstack.calls("warn")


def test_xen_vhd_util_becomes_vhd_util_for_cinder(devstack):
    devstack.stack()
    link = devstack.local_bin / "vhd-util"
    assert link.is_symlink()
    assert Path(os.readlink(link)) == Path(sys.executable).parent / "xen-vhd-util"
    # under that name it is blktap's vhd-util: its usage lists blktap's subcommands
    proc = subprocess.run([str(link)], capture_output=True, text=True, env=devstack.env, timeout=60)
    assert proc.stdout.startswith("usage: vhd-util COMMAND")
    assert "coalesce" in proc.stdout + proc.stderr and "modify" in proc.stdout + proc.stderr
    assert ["sudo", "ln", "-sf", str(Path(sys.executable).parent / "xen-vhd-util"), str(link)] in devstack.calls()


def test_a_vhd_util_already_on_path_is_left_alone(devstack):
    real = devstack.tmp / "blktap-bin"
    real.mkdir()
    (real / "vhd-util").write_text("#!/bin/sh\nexit 0\n")
    (real / "vhd-util").chmod(0o755)
    devstack.stack(PATH=f"{real}{os.pathsep}{devstack.env['PATH']}")
    assert not (devstack.local_bin / "vhd-util").exists()
    assert not devstack.calls("sudo") and not devstack.calls("warn")


def test_without_the_drop_in_cinder_is_warned_about(devstack):
    devstack.stack(XEN_VHD_TEMPEST_INSTALL_VHD_UTIL="False")
    assert not (devstack.local_bin / "vhd-util").exists()
    (warning,) = devstack.calls("warn")
    assert "vhd-util is not on PATH" in " ".join(warning)


def test_phases_run_in_devstack_order(devstack):
    devstack.stack()
    summaries = [c[1] for c in devstack.calls("echo_summary")]
    assert [s.split()[0] for s in summaries] == ["Installing", "Configuring", "Building",
                                                 "Installing", "Configuring"]
    names = [c[0] for c in devstack.calls() if c[0] in ("install_package", "pip_install", "qemu-img",
                                                        "openstack", "tox")]
    assert names == ["pip_install", "qemu-img", "openstack", "tox"]


def test_settings_define_the_plugin_and_overrides_win(devstack):
    devstack.stack(XEN_VHD_TEMPEST_COMPUTE_IS_XENSERVER="yes", XEN_VHD_TEMPEST_EXPECTED_FAULT="leaf-only",
                   XEN_VHD_TEMPEST_BOOT_TIMEOUT="1200", XEN_VHD_TEMPEST_IMAGE_NAME="xs-image",
                   XEN_VHD_TEMPEST_IMAGE_RESIZE="8M", XEN_VHD_TEMPEST_VHD_UTIL_PACKAGE="blktap-utils")
    assert ["define_plugin", "xen-vhd-tempest"] in devstack.calls()
    assert ["enable_service", "xen-vhd-tempest"] in devstack.calls()
    assert ["install_package", "blktap-utils"] in devstack.calls()
    xen = dict(devstack.ini(devstack.tempest_conf).items("xen_vhd"))
    assert xen["compute_is_xenserver"] == "True"
    assert xen["expected_fault"] == "leaf-only"
    assert xen["boot_timeout"] == "1200"
    report = check_image(devstack.data / "xen-vhd-tempest" / "xs-image.vhd.tgz")
    assert report.ok, report.problems
    assert [m.name for m in report.members] == ["0.vhd", "1.vhd"]
    assert report.members[0].current_size == 8 * MIB


def test_existing_glance_lists_are_extended_not_replaced(devstack):
    devstack.glance_conf.write_text("[DEFAULT]\ndisk_formats = raw,qcow2\n\n[image_format]\n"
                                    "container_formats = bare\n")
    devstack.run(("stack", "post-config"), XEN_VHD_TEMPEST_RELAX_GLANCE_FORMAT_MATCH="False")
    glance = devstack.ini(devstack.glance_conf)
    assert glance.get("image_format", "disk_formats") == "raw,qcow2,vhd"      # the [DEFAULT] spelling carried over
    assert glance.get("image_format", "container_formats") == "bare,ovf"
    assert not glance.has_option("image_format", "require_image_format_match")


def test_zuul_installed_plugin_is_not_installed_again(devstack):
    devstack.stack(TEMPEST_PLUGINS=f"/opt/stack/other {ROOT}")
    assert not devstack.calls("tox")
    assert devstack.ini(devstack.tempest_conf).get("xen_vhd", "image_ref") == FAKE_IMAGE_ID


def test_without_tempest_or_glance_the_phases_leave_them_alone(devstack):
    devstack.stack(DISABLED_SERVICES="tempest glance g-api")
    assert not devstack.calls("openstack") and not devstack.calls("tox")
    assert not devstack.ini(devstack.tempest_conf).has_section("xen_vhd")
    assert devstack.ini(devstack.glance_conf).get("image_format", "require_image_format_match") == "True"


def test_disabled_plugin_does_nothing(devstack):
    devstack.stack(DISABLED_SERVICES="xen-vhd-tempest")
    assert [c[0] for c in devstack.calls()] == ["define_plugin", "enable_service"]


def test_missing_base_disk_stops_stack_with_the_variable_to_set(devstack):
    proc = devstack.run(("stack", "extra"), check=False, XEN_VHD_TEMPEST_BASE_IMAGE=str(devstack.tmp / "nope.img"))
    assert proc.returncode != 0
    assert "XEN_VHD_TEMPEST_BASE_IMAGE" in proc.stderr and "nope.img" in proc.stderr
    assert not devstack.calls("openstack")


def test_clean_removes_what_the_plugin_built(devstack):
    devstack.stack()
    assert (devstack.data / "xen-vhd-tempest").is_dir()
    devstack.run(("unstack",), ("clean",))
    assert not (devstack.data / "xen-vhd-tempest").exists()


def test_scripts_parse_and_pass_shellcheck():
    for script in (PLUGIN, SETTINGS, DOUBLE):
        subprocess.run(["bash", "-n", str(script)], check=True)
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is not installed (bindep.txt, profile test)", pytrace=False)
    proc = subprocess.run(["shellcheck", "-s", "bash", str(PLUGIN), str(SETTINGS), str(DOUBLE)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_system_packages_are_devstacks_bindep_list():
    """devstack installs a plugin's devstack/files/bindep.txt (default profile) itself: qemu-img's
    package on each platform family, read by the real bindep."""
    bindep = Path(sys.executable).parent / "bindep"
    if not bindep.exists():
        pytest.fail(f"no bindep next to {sys.executable} (tools/install-deps installs it)", pytrace=False)
    listed = subprocess.run([str(bindep), "-f", str(BINDEP), "-l", "newline"], capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "qemu-utils" in listed.stdout.split()          # this machine is dpkg
    text = BINDEP.read_text()
    assert "qemu-utils [platform:dpkg]" in text and "qemu-img [platform:rpm]" in text
    assert "install_package qemu" not in PLUGIN.read_text()


def test_a_named_vhd_util_package_is_installed_at_pre_install(devstack):
    devstack.run(("stack", "pre-install"), XEN_VHD_TEMPEST_VHD_UTIL_PACKAGE="blktap-utils")
    assert devstack.calls("install_package") == [["install_package", "blktap-utils"]]
    devstack.calls_file.unlink()
    devstack.run(("stack", "pre-install"))
    assert not devstack.calls("install_package") and not devstack.calls("echo_summary")


def test_upper_constraints_follow_devstacks_variable(devstack):
    devstack.stack(UPPER_CONSTRAINTS_FILE="/opt/stack/requirements/other-constraints.txt")
    (tox,) = devstack.calls("tox")
    assert tox[tox.index("-c") + 1] == "/opt/stack/requirements/other-constraints.txt"

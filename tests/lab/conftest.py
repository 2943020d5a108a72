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

"""Fixtures for the lab guest and hypervisor tests: a guest image built from scratch for the
session (its kernel comes from the real cache, fetched once), an SSH key pair, SSH helpers."""

from __future__ import annotations

import io
import shutil
import time

import pytest

from xen_vhd_tempest.lab.hypervisor import qemu_available

BUILD_TOOLS = ("mformat", "mcopy", "syslinux", "mke2fs", "dropbearkey", "qemu-img")


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: needs the lab's tools (QEMU, mtools, syslinux, ...); boots real guests")


def _missing_build_tools() -> list[str]:
    return [t for t in BUILD_TOOLS if not shutil.which(t)]


@pytest.fixture(scope="session")
def guest_kernel():
    """Debian's cloud kernel, from the real cache (downloaded once with apt-get download)."""
    missing = _missing_build_tools()
    if missing:
        pytest.fail(f"guest build tools missing: {', '.join(missing)} (see bindep.txt, profile lab)", pytrace=False)
    from xen_vhd_tempest.lab.guest import kernel as kernelmod
    from xen_vhd_tempest.paths import cache_dir
    return kernelmod.debian_cloud_kernel(cache_dir())


@pytest.fixture(scope="session")
def guest_build(tmp_path_factory, guest_kernel):
    """The guest image built from scratch into a fresh cache under the pytest basetemp."""
    from xen_vhd_tempest.lab.guest import build_guest_image
    cache = tmp_path_factory.mktemp("guest-cache")
    kernel_tree = guest_kernel.vmlinuz.parent.parent
    t0 = time.monotonic()
    img = build_guest_image(cache_dir=cache, kernel=kernel_tree)
    return {"image": img, "cache": cache, "kernel_tree": kernel_tree, "seconds": time.monotonic() - t0}


@pytest.fixture(scope="session")
def guest_image(guest_build):
    return guest_build["image"]


@pytest.fixture(scope="session")
def need_qemu():
    reason = qemu_available()
    if reason:
        pytest.fail(f"cannot run QEMU guests here: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def ssh_keypair():
    """(paramiko key, OpenSSH public key line)."""
    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    priv = ed25519.Ed25519PrivateKey.generate()
    pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()
    pub = priv.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem)), pub + " lab-test"


@pytest.fixture(scope="session")
def config_drive(tmp_path_factory, ssh_keypair):
    from xen_vhd_tempest.lab.guest import make_config_drive
    path = tmp_path_factory.mktemp("config-drive") / "config-2.img"
    return make_config_drive(path, uuid="8b3c6a2e-0000-4000-8000-000000000001",
                             hostname="labguest.novalocal", public_keys={"lab": ssh_keypair[1]})


class SSH:
    """A paramiko connection with a run() that returns (status, stdout, stderr)."""

    def __init__(self, address, user, *, pkey=None, password=None, timeout=30):
        import paramiko
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        self.client.connect(address[0], address[1], username=user, pkey=pkey, password=password,
                            look_for_keys=False, allow_agent=False, timeout=timeout,
                            banner_timeout=timeout, auth_timeout=timeout)

    def run(self, command: str, timeout: float = 60) -> tuple[int, str, str]:
        _, out, err = self.client.exec_command(command, timeout=timeout)
        o = out.read().decode(errors="replace")
        e = err.read().decode(errors="replace")
        return out.channel.recv_exit_status(), o, e

    def check(self, command: str, timeout: float = 60) -> str:
        rc, o, e = self.run(command, timeout)
        assert rc == 0, f"{command!r} -> {rc}: {e.strip() or o.strip()}"
        return o

    def close(self):
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def guests(tmp_path):
    """Factory for guests that are all stopped at the end of the test, pass or fail."""
    from xen_vhd_tempest.lab.hypervisor import Guest
    made = []

    def make(name, disk, **kw):
        kw.setdefault("workdir", tmp_path / "run")
        g = Guest(name, disk, **kw)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()


@pytest.fixture
def ssh_to():
    opened = []

    def connect(guest, user="cirros", **kw):
        s = SSH(guest.ssh_address, user, **kw)
        opened.append(s)
        return s

    yield connect
    for s in opened:
        s.close()



def pytest_collection_modifyitems(config, items):
    """``load`` tests (minutes of API load beside a scenario) and ``readme`` ones (a README block
    that boots scenarios) run only when ``-m`` names them."""
    for marker in ("load", "readme"):
        if marker in (config.option.markexpr or ""):
            continue
        chosen = [i for i in items if i.get_closest_marker(marker) is None]
        if len(chosen) != len(items):
            config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker(marker)])
            items[:] = chosen

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

"""Helpers for the lab cloud tests: start a lab with the real CLI, clients for it, SSH, waits.

A test module defines its ``lab`` fixture with :func:`running_lab`: each module gets its own
lab (background process, fresh state directory, port picked by the lab), stopped with
``lab down`` at the end of the module.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB_MODULE = "xen_vhd_tempest.lab.commands"   # the fixtures' entry point; test_cloud_lifecycle uses the CLI


def cli(*args, timeout=300, check=True, module="xen_vhd_tempest.cli"):
    """Run ``xen-vhd-tempest ARGS`` as a user would; returns the CompletedProcess.

    ``module="xen_vhd_tempest.lab.commands"`` runs the lab's own entry point (``ARGS`` without
    the leading ``lab``), independent of the other subcommands' modules.
    """
    if module != "xen_vhd_tempest.cli":
        args = args[1:] if args and args[0] == "lab" else args
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"xen-vhd-tempest {' '.join(map(str, args))} -> {proc.returncode}: "
                             f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


class LabHandle:
    def __init__(self, state_dir: Path, up_seconds: float):
        self.state_dir = state_dir
        self.up_seconds = up_seconds
        self.info = json.loads((state_dir / "lab.json").read_text())
        self.url = self.info["url"]
        self.auth_url = self.info["auth_url"]
        self.default_image_id = self.info["default_image_id"]
        self._sessions = {}

    # -- auth
    def session(self, who="demo"):
        if who not in self._sessions:
            from keystoneauth1 import session
            from keystoneauth1.identity import v3
            c = self.info["credentials"][who]
            auth = v3.Password(auth_url=self.auth_url, username=c["username"], password=c["password"],
                               project_name=c["project_name"], user_domain_name="Default",
                               project_domain_name="Default")
            self._sessions[who] = session.Session(auth=auth)
        return self._sessions[who]

    def token(self, who="demo"):
        return self.session(who).get_token()

    # -- clients
    def nova(self, version="2.60", who="demo"):
        from novaclient import client
        return client.Client(version, session=self.session(who))

    def glance(self, who="demo"):
        from glanceclient import Client
        return Client("2", session=self.session(who))

    def cinder(self, version="3.60", who="demo"):
        from cinderclient import client
        return client.Client(version, session=self.session(who))

    def endpoint(self, service_type, who="demo"):
        return self.session(who).get_endpoint(service_type=service_type, interface="public")

    # -- raw HTTP (for malformed requests)
    def request(self, method, url, *, token=True, who="demo", headers=None, data=None):
        import requests
        h = dict(headers or {})
        if token:
            h["X-Auth-Token"] = self.token(who)
        return requests.request(method, url, headers=h, data=data, timeout=60)

    # -- lab admin
    def set_mode(self, mode):
        r = self.request("PUT", f"{self.url}/lab/settings", who="admin",
                         headers={"Content-Type": "application/json"},
                         data=json.dumps({"settings": {"conversion_mode": mode}}))
        assert r.status_code == 200, r.text
        return r.json()["settings"]

    def set_setting(self, **changes):
        r = self.request("PUT", f"{self.url}/lab/settings", who="admin",
                         headers={"Content-Type": "application/json"},
                         data=json.dumps({"settings": changes}))
        assert r.status_code == 200, r.text
        return r.json()["settings"]

    def status(self):
        r = self.request("GET", f"{self.url}/lab/status", who="admin")
        assert r.status_code == 200, r.text
        return r.json()

    def volume_path(self, volume_id) -> Path:
        return self.state_dir / "volumes" / f"{volume_id}.raw"


def start_lab(state_dir: Path, module="xen_vhd_tempest.cli") -> LabHandle:
    t0 = time.monotonic()
    cli("lab", "up", "--state-dir", state_dir, "--port", "0", module=module)
    return LabHandle(state_dir, time.monotonic() - t0)


def stop_lab(handle: LabHandle, module="xen_vhd_tempest.cli"):
    cli("lab", "down", "--state-dir", handle.state_dir, module=module)


@contextlib.contextmanager
def private_dir(prefix):
    """A temporary directory outside pytest's basetemp: concurrent pytest sessions rotate old
    basetemps away, which must not pull a running lab's state from under it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def running_lab(tmp_path_factory=None):
    """Generator for a module-scoped ``lab`` fixture: ``yield from running_lab()``."""
    with private_dir("xvt-lab-test-") as state_dir:
        handle = start_lab(state_dir, module=LAB_MODULE)
        try:
            yield handle
        finally:
            stop_lab(handle, module=LAB_MODULE)


def running_guest_lab():
    """``running_lab()`` for modules that boot guests: skipped, with the reason, where QEMU cannot run."""
    import pytest

    from xen_vhd_tempest.lab.hypervisor import qemu_available
    reason = qemu_available()
    if reason:
        pytest.fail(f"cannot run QEMU guests here: {reason}", pytrace=False)
    yield from running_lab()


def wait_for(get, ready, *, failed=(), timeout=300, interval=0.5, what="resource"):
    """Poll ``get()`` until ``ready(obj)``; fail early when its status is in ``failed``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = get()
        if ready(last):
            return last
        status = getattr(last, "status", None) if not isinstance(last, dict) else last.get("status")
        if status in failed:
            fault = getattr(last, "fault", None) if not isinstance(last, dict) else last.get("fault")
            raise AssertionError(f"{what} went {status}: {fault}")
        time.sleep(interval)
    raise AssertionError(f"{what} not ready after {timeout}s: {getattr(last, 'status', last)}")


def wait_server(nova, server_id, status="ACTIVE", timeout=300):
    return wait_for(lambda: nova.servers.get(server_id), lambda s: s.status == status,
                    failed=("ERROR",) if status != "ERROR" else (), timeout=timeout, what=f"server {server_id}")


def wait_volume(cinder, volume_id, status="available", timeout=300):
    return wait_for(lambda: cinder.volumes.get(volume_id), lambda v: v.status == status,
                    failed=("error",) if status != "error" else (), timeout=timeout, what=f"volume {volume_id}")


def wait_image(glance, image_id, timeout=300):
    return wait_for(lambda: glance.images.get(image_id), lambda i: i.status == "active",
                    failed=("killed",), timeout=timeout, what=f"image {image_id}")


def wait_gone(get, timeout=120, what="resource"):
    from keystoneauth1.exceptions import NotFound as KsaNotFound
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            get()
        except KsaNotFound:
            return
        except Exception as error:  # client-specific NotFound classes
            if getattr(error, "code", None) == 404 or type(error).__name__ in ("NotFound", "HTTPNotFound"):
                return
            raise
        time.sleep(0.3)
    raise AssertionError(f"{what} still there after {timeout}s")


def wait_for_banner(host, port, timeout=120):
    """Wait until an SSH server answers with its banner (quietly, unlike paramiko's retries)."""
    import socket
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(3)
                if s.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no SSH banner from {host}:{port} after {timeout}s")
        time.sleep(0.5)


class SSH:
    """A paramiko connection: run() -> (status, stdout bytes, stderr text)."""

    def __init__(self, host, port, user, *, pkey=None, password=None, timeout=60):
        import paramiko
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        deadline = time.monotonic() + timeout
        wait_for_banner(host, port, timeout)
        while True:
            try:
                self.client.connect(host, port, username=user, pkey=pkey, password=password,
                                    look_for_keys=False, allow_agent=False, timeout=10,
                                    banner_timeout=10, auth_timeout=10)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def run(self, command, timeout=120):
        _, out, err = self.client.exec_command(command, timeout=timeout)
        o = out.read()
        e = err.read().decode(errors="replace")
        return out.channel.recv_exit_status(), o, e

    def check(self, command, timeout=120) -> bytes:
        rc, o, e = self.run(command, timeout)
        assert rc == 0, f"{command!r} -> {rc}: {e.strip() or o.decode(errors='replace').strip()}"
        return o

    def close(self):
        self.client.close()


def private_key(pem: str):
    import paramiko
    return paramiko.RSAKey.from_private_key(io.StringIO(pem))


def server_ssh_address(server):
    """Where a client SSHes to a lab server: its address on network ``private``, port 22."""
    addr = server.addresses["private"][0]["addr"]
    return addr, 22


def lab_processes(state_dir: Path) -> list[int]:
    """PIDs of processes whose command line mentions ``state_dir`` (the lab, its QEMU guests)."""
    out = []
    needle = str(state_dir).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if needle in cmdline:
            out.append(int(entry))
    return out


def set_tempest_microversion(*, compute=None, volume=None):
    """Tempest's service clients send (and choose schemas by) module-level microversions."""
    from tempest.lib.services.compute import base_compute_client
    from tempest.lib.services.volume import base_client
    base_compute_client.COMPUTE_MICROVERSION = compute
    base_client.VOLUME_MICROVERSION = volume


@contextlib.contextmanager
def tempest_microversion(*, compute=None, volume=None):
    set_tempest_microversion(compute=compute, volume=volume)
    try:
        yield
    finally:
        set_tempest_microversion()


def _data_ranges(fd, size):
    """(start, end) ranges of a file that may hold data (holes skipped; whole file if unsupported)."""
    out, pos = [], 0
    try:
        while pos < size:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    except OSError as error:
        if error.errno == 6:  # ENXIO: no data past pos
            return out
        return [(0, size)]
    return out


def same_content(a, b, offset=0, length=None) -> bool:
    """Do files ``a`` and ``b`` read the same in [offset, offset+length)? Holes read as zeros;
    only the ranges where either file has data are compared (fast on sparse 1 GiB volumes)."""
    size_a, size_b = os.path.getsize(a), os.path.getsize(b)
    end = max(size_a, size_b) if length is None else offset + length
    with open(a, "rb") as fa, open(b, "rb") as fb:
        ranges = sorted(_data_ranges(fa.fileno(), size_a) + _data_ranges(fb.fileno(), size_b))
        pos = offset
        for start, stop in ranges:
            start, stop = max(start, pos), min(stop, end)
            if start >= stop:
                continue
            while start < stop:
                n = min(stop - start, 16 * 1024 * 1024)
                fa.seek(start)
                fb.seek(start)
                x = fa.read(n).ljust(n, b"\0")
                y = fb.read(n).ljust(n, b"\0")
                if x != y:
                    return False
                start += n
            pos = max(pos, stop)
    return True

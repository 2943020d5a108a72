"""pytest plugin (entry point ``pytest11``): the scenario against a real cloud or the lab.

Cloud selection: ``--os-cloud NAME`` or ``$OS_CLOUD`` picks a clouds.yaml entry (keystoneauth
session, python-novaclient/-glanceclient/-cinderclient, paramiko); without either, the
embedded lab is started for the session (and stopped at its end if this session started it).

    pytest --pyargs xen_vhd_tempest.harness                    # both scenarios on the lab
    pytest --pyargs xen_vhd_tempest.harness --os-cloud mycloud -m xen_synthetic --xen-raw-image cirros.raw
"""

import fcntl
import os
import sys
import uuid
from pathlib import Path

import pytest

MARKERS = {
    "xen_backup": "the seed scenario: boot a XenServer image, nova backup, volume, boot from it "
                  "(needs XenServer compute or the lab)",
    "xen_synthetic": "a XenServer chain built locally, uploaded as vhd/ovf, volume, boot from it (any compute)",
}


def pytest_addoption(parser):
    g = parser.getgroup("xen-vhd-tempest", "XenServer image -> Cinder volume scenarios")
    g.addoption("--os-cloud", default=os.environ.get("OS_CLOUD"),
                help="clouds.yaml entry of a real cloud (default: $OS_CLOUD; none: the embedded lab)")
    g.addoption("--os-client-config-file", default=os.environ.get("OS_CLIENT_CONFIG_FILE"),
                help="a clouds.yaml to read instead of the standard locations")
    g.addoption("--xen-image", help="XenServer image (vhd/ovf) to boot for the backup scenario")
    g.addoption("--xen-helper-image", help="image of the server volumes are attached to (synthetic scenario)")
    g.addoption("--xen-raw-image", help="bootable raw disk the synthetic chain is built from")
    g.addoption("--xen-flavor", default="m1.tiny")
    g.addoption("--xen-network", help="network id for servers (default: the cloud's choice, nics=auto)")
    g.addoption("--xen-ssh-user", default="cirros")
    g.addoption("--xen-ssh-password", help="fallback SSH password (keys from the created keypair come first)")
    g.addoption("--xen-timeout", type=float, default=600.0, help="seconds for each server, image or volume wait")
    g.addoption("--xen-keep-on-failure", action="store_true", help="keep a failed run's resources for debugging")
    g.addoption("--xen-lab-dir", help="state directory of the embedded lab (default: the lab's own)")
    g.addoption("--xen-lab-cinder", metavar="SRC",
                help="the embedded lab makes volumes with upstream Cinder's code: 'installed' (the cinder "
                     "package) or a Cinder source tree; restored at the end of the session")
    g.addoption("--xen-lab-vhd-util", metavar="PATH", help="the vhd-util the lab's Cinder runs (default xen-vhd-util)")
    g.addoption("--xen-workdir", help="where downloads and reference conversions go (default: a temp dir)")


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


class Target:
    """The cloud under test and the defaults it implies."""

    def __init__(self, cloud, *, defaults, lab_info=None, restore=None):
        self.cloud = cloud
        self.defaults = defaults
        self.lab_info = lab_info
        self.restore = restore or {}       # lab settings to put back at the end of the session


def _lab_target(config, worker):
    from xen_vhd_tempest.lab import commands as lab
    from xen_vhd_tempest.lab.guest import build_guest_image
    from xen_vhd_tempest.scenario.clients import ClientsCloud, session_for

    state = Path(config.getoption("--xen-lab-dir") or lab.default_state_dir())
    port = lab.DEFAULT_PORT
    if worker:                              # pytest-xdist: one lab per worker, each on its own port
        state, port = state / worker, 0
    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".harness.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = lab.running_info(state) is None
        info = lab.ensure_up(state, port=port)
    restore = _lab_cinder(config, info, state)
    cloud = ClientsCloud(session_for("xen-vhd-lab", info["clouds_yaml"]), name=f"lab at {info['url']}")
    guest = build_guest_image()
    defaults = dict(image=info["default_image_id"], helper_image=info["default_image_id"],
                    raw_image=str(guest.raw_path), ssh_user=info.get("ssh_user", "cirros"),
                    ssh_password=info.get("ssh_password"), host_key_of=lab_host_keys(info))
    return Target(cloud, defaults=defaults, lab_info=dict(info, started=started, state_dir=str(state)),
                  restore=restore)


def _lab_cinder(config, info, state):
    """Point the lab's volume-from-image at real Cinder for this session; the settings to restore."""
    from xen_vhd_tempest.lab import commands as lab
    src, vhd_util = config.getoption("--xen-lab-cinder"), config.getoption("--xen-lab-vhd-util")
    if not src and not vhd_util:
        return {}
    changes = {}
    if src:
        changes.update(conversion_mode="cinder", cinder_src=None if src == "installed" else src)
    if vhd_util:
        changes["vhd_util"] = vhd_util
    before = lab.lab_api(info, "GET", "/settings")["settings"]
    try:
        lab.set_settings(state, **changes)
    except Exception as exc:       # the lab refuses a bad path in one line (HTTP 400)
        pytest.exit(f"--xen-lab-cinder: {getattr(exc, 'read', lambda: b'')().decode() or exc}", returncode=2)
    return {k: before.get(k) for k in changes}


def lab_host_keys(info):
    """``Options.host_key_of`` for the lab: the host keys it publishes for a server (read from
    the guest's disk; ``GET /lab/status``), so SSH to lab guests is verified, never trusted."""
    def host_key_of(server_id):
        from xen_vhd_tempest.lab import commands as lab
        guest = lab.lab_api(info, "GET", "/status")["guests"].get(server_id) or {}
        return guest.get("host_keys") or None
    return host_key_of


@pytest.fixture(scope="session")
def xen_target(request):
    config = request.config
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    name = config.getoption("--os-cloud")
    if name:
        from xen_vhd_tempest.scenario.clients import ClientsCloud, session_for
        from xen_vhd_tempest.scenario.cloud import CloudError
        try:
            cloud = ClientsCloud(session_for(name, config.getoption("--os-client-config-file")), name=name)
        except CloudError as exc:
            pytest.fail(str(exc), pytrace=False)
        target = Target(cloud, defaults={})
    else:
        target = _lab_target(config, worker)
    yield target
    if target.lab_info and target.lab_info["started"]:
        from xen_vhd_tempest.lab import commands as lab
        lab.ensure_down(target.lab_info["state_dir"])
    elif target.restore:
        from xen_vhd_tempest.lab import commands as lab
        lab.set_settings(Path(target.lab_info["state_dir"]), **target.restore)


@pytest.fixture
def xen_cloud(xen_target):
    return xen_target.cloud


@pytest.fixture
def xen_options(request, xen_target, tmp_path):
    """Scenario options for one test: CLI options over the target's defaults, a run-unique prefix."""
    from xen_vhd_tempest.scenario.story import Options
    get = request.config.getoption
    d = xen_target.defaults
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return Options(
        image=get("--xen-image") or d.get("image"),
        helper_image=get("--xen-helper-image") or get("--xen-image") or d.get("helper_image"),
        raw_image=get("--xen-raw-image") or d.get("raw_image"),
        flavor=get("--xen-flavor"), network=get("--xen-network"),
        ssh_user=get("--xen-ssh-user") or d.get("ssh_user", "cirros"),
        ssh_password=get("--xen-ssh-password") or d.get("ssh_password"),
        host_key_of=d.get("host_key_of"),
        boot_timeout=get("--xen-timeout"), image_timeout=get("--xen-timeout"), volume_timeout=get("--xen-timeout"),
        keep=get("--xen-keep-on-failure"), workdir=get("--xen-workdir") or str(tmp_path),
        prefix=f"xvt-{worker + '-' if worker else ''}{uuid.uuid4().hex[:8]}",
    )


class _TerminalStream:
    """File-like: lines go to pytest's terminal writer, which output capturing does not touch."""

    def __init__(self, config):
        self.writer = config.get_terminal_writer()
        self.pending = ""

    def write(self, text):
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.writer.line(line)
        return len(text)

    def flush(self):
        self.writer.flush()


@pytest.fixture
def xen_reporter(request):
    """Progress goes straight to the terminal as it happens, even while pytest captures output."""
    from xen_vhd_tempest.scenario.report import Reporter
    if request.config.getoption("capture") == "no":
        return Reporter(sys.stdout)
    return Reporter(_TerminalStream(request.config))

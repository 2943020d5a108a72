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

"""pytest plugin (entry point ``pytest11``): the scenario against a real cloud or the lab.

Cloud selection: ``--xvt-os-cloud NAME`` or ``$OS_CLOUD`` picks a clouds.yaml entry (keystoneauth
session, python-novaclient/-glanceclient/-cinderclient, paramiko); without either, the
embedded lab is started for the session (and stopped at its end if this session started it).

    pytest --pyargs xen_vhd_tempest.harness                    # both scenarios on the lab
    pytest --pyargs xen_vhd_tempest.harness --xvt-os-cloud mycloud -m xen_synthetic --xvt-raw-image cirros.raw

Every option is ``--xvt-...``: the plugin is loaded by every pytest run in the environment it
is installed in, and must not take names other plugins use. The scenario's options come from
``scenario.options.SETTINGS`` (``--xvt-<flag>``), the same table tempest's ``[xen_vhd]`` is built from.
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


PREFIX = "--xvt-"
HARNESS_OPTIONS = (          # the harness's own, beside the story's options
    ("os-cloud", dict(default=os.environ.get("OS_CLOUD"),
                      help="clouds.yaml entry of a real cloud (default: $OS_CLOUD; none: the embedded lab)")),
    ("os-client-config-file", dict(default=os.environ.get("OS_CLIENT_CONFIG_FILE"),
                                   help="a clouds.yaml to read instead of the standard locations")),
    ("lab-dir", dict(help="state directory of the embedded lab (default: the lab's own)")),
    ("lab-cinder", dict(metavar="SRC", help="the embedded lab makes volumes with upstream Cinder's code: "
                                           "'installed' (the cinder package) or a Cinder source tree; the lab's "
                                           "settings are restored at the end of the session")),
    ("lab-vhd-util", dict(metavar="PATH", help="the vhd-util the lab's Cinder runs (default xen-vhd-util)")),
)


def pytest_addoption(parser):
    from xen_vhd_tempest.scenario.options import SETTINGS, add_flag
    g = parser.getgroup("xen-vhd-tempest", "XenServer image -> Cinder volume scenarios")
    for stem, kw in HARNESS_OPTIONS:
        g.addoption(PREFIX + stem, **kw)
    for setting in SETTINGS:
        if setting.flag:
            add_flag(g.addoption, setting, PREFIX)


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None) \
            and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_XdistController(config), "xen-vhd-tempest-xdist")


class _XdistController:
    """On the xdist controller: the workers' progress live (``relay``), and every story's step
    table and diagnosis in the final summary. Registered only where xdist's hooks exist."""

    def __init__(self, config):
        from xen_vhd_tempest.harness.relay import Follower
        self.config = config
        self.follower = Follower(self._line)   # the terminal writer exists from sessionstart on
        self.summaries = []
        self.shared_lab = None          # the state dir of a lab this controller started
        self.restore = None             # (state dir, settings) the controller changed on it

    def _line(self, text):
        self.config.get_terminal_writer().line(text)

    @pytest.hookimpl(tryfirst=True)         # before xdist's own: the lab is up before any worker
    def pytest_sessionstart(self, session):
        self.follower.start()
        config = self.config
        if config.getoption("--xvt-lab-dir") and not config.getoption("--xvt-os-cloud"):
            state, port = _lab_place(config, None)
            started, info = _lab_up(state, port)
            self._line(f"xen-vhd-tempest: the workers share the lab at {info['url']} ({state})")
            self.shared_lab = state if started else None
            self.restore = (state, _lab_cinder(config, info, state))

    def pytest_configure_node(self, node):
        from xen_vhd_tempest.harness.relay import WORKERINPUT_KEY
        node.workerinput[WORKERINPUT_KEY] = str(self.follower.dir)

    def pytest_runtest_logreport(self, report):
        from xen_vhd_tempest.harness.relay import SUMMARY_PROPERTY
        for key, value in report.user_properties:
            if key == SUMMARY_PROPERTY and report.when == "call":
                gateway = getattr(getattr(report, "node", None), "gateway", None)
                self.summaries.append((getattr(gateway, "id", "?"), value))

    def pytest_terminal_summary(self, terminalreporter):
        self.follower.stop()
        if self.summaries:
            terminalreporter.section("xen-vhd-tempest stories")
            for worker, text in self.summaries:
                terminalreporter.line(f"[{worker}] {text.strip()}\n")

    def pytest_unconfigure(self, config):
        self.follower.stop()
        from xen_vhd_tempest.lab import commands as lab
        if self.shared_lab is not None:
            lab.ensure_down(self.shared_lab)
        elif self.restore and self.restore[1]:
            state, changed = self.restore
            lab.set_settings(state, **changed)


class Target:
    """The cloud under test and the defaults it implies."""

    def __init__(self, cloud, *, defaults, lab_info=None, restore=None):
        self.cloud = cloud
        self.defaults = defaults
        self.lab_info = lab_info
        self.restore = restore or {}       # lab settings to put back at the end of the session


def _lab_target(config, worker):
    from xen_vhd_tempest.harness.clients import ClientsCloud, session_for
    from xen_vhd_tempest.lab.guest import build_guest_image

    state, port = _lab_place(config, worker)
    started, info = _lab_up(state, port)
    # A lab the workers share is the controller's to configure (and to restore at the end).
    shared = worker and config.getoption("--xvt-lab-dir")
    restore = {} if shared else _lab_cinder(config, info, state)
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
    src, vhd_util = config.getoption(PREFIX + "lab-cinder"), config.getoption(PREFIX + "lab-vhd-util")
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
        pytest.exit(f"{PREFIX}lab-cinder: {getattr(exc, 'read', lambda: b'')().decode() or exc}", returncode=2)
    return {k: before.get(k) for k in changes}


def _lab_place(config, worker):
    """(state dir, port) of this session's lab. Under pytest-xdist without ``--xvt-lab-dir``,
    one lab per worker (each on a free port); with it, the workers share that lab, which the
    controller starts and stops."""
    from xen_vhd_tempest.lab import commands as lab
    given = config.getoption("--xvt-lab-dir")
    state = Path(given or lab.default_state_dir())
    if worker and not given:
        return state / worker, 0
    return state, lab.default_port()


def _lab_up(state, port):
    """(whether this call started it, lab.json info): one starter at a time per state dir."""
    from xen_vhd_tempest.lab import commands as lab
    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".harness.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = lab.running_info(state) is None
        return started, lab.ensure_up(state, port=port)


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
    name = config.getoption("--xvt-os-cloud")
    if name:
        from xen_vhd_tempest.harness.clients import ClientsCloud, session_for
        from xen_vhd_tempest.scenario.cloud import CloudError
        try:
            cloud = ClientsCloud(session_for(name, config.getoption("--xvt-os-client-config-file")), name=name)
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
    """Scenario options for one test: each ``--xvt-`` option given, else the target's default (the
    lab's image, user, host keys), else the table's; a run-unique prefix."""
    from xen_vhd_tempest.scenario.options import SETTINGS, Options
    given = {s.name: request.config.getoption(f"xvt_{s.name}") for s in SETTINGS if s.flag}
    values = {name: value for name, value in given.items() if value not in (None, False)}
    for name, value in xen_target.defaults.items():
        values.setdefault(name, value)
    if given["image"] and not given["helper_image"]:        # one image given serves both scenarios
        values["helper_image"] = given["image"]
    values.setdefault("workdir", str(tmp_path))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return Options(prefix=f"xvt-{worker + '-' if worker else ''}{uuid.uuid4().hex[:8]}",
                   **{k: v for k, v in values.items() if v is not None})


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
    from xen_vhd_tempest.harness.relay import worker_stream
    from xen_vhd_tempest.scenario.report import Reporter
    stream = worker_stream(request.config)         # under pytest-xdist: relayed to the controller
    if stream is not None:
        request.addfinalizer(stream.close)
        return Reporter(stream)
    if request.config.getoption("capture") == "no":
        return Reporter(sys.stdout)
    return Reporter(_TerminalStream(request.config))

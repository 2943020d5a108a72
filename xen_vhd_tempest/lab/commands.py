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

"""``xen-vhd-tempest lab up|down|status|env|settings``: run the embedded lab cloud.

``lab up`` starts the lab in the background (``--foreground`` to keep it attached) with a
state directory (``--state-dir``, default ``$XEN_VHD_TEMPEST_LAB_DIR`` or
``~/.local/state/xen-vhd-tempest/lab``); it returns when the APIs answer and the default image
is active. ``lab down`` stops it and every guest. ``lab env`` prints how to use it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .config import CONVERSION_MODES, DEFAULT_PORT, LabConfig


def default_state_dir() -> Path:
    explicit = os.environ.get("XEN_VHD_TEMPEST_LAB_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "xen-vhd-tempest" / "lab"


def default_port() -> int:
    """``$XEN_VHD_TEMPEST_LAB_PORT`` or 8780: two users (or test sessions) on one host each keep
    the README's commands as written."""
    explicit = os.environ.get("XEN_VHD_TEMPEST_LAB_PORT")
    if explicit:
        try:
            return int(explicit)
        except ValueError:
            raise SystemExit(f"xen-vhd-tempest: XEN_VHD_TEMPEST_LAB_PORT={explicit!r} is not a port number") from None
    return DEFAULT_PORT


def add_parser(subparsers):
    lab = subparsers.add_parser("lab", help="run the embedded OpenStack lab (XenServer semantics, QEMU guests)",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    lab.set_defaults(func=lambda args: (lab.print_help(), 2)[1])
    sub = lab.add_subparsers(dest="lab_command", metavar="ACTION")

    def common(p):
        p.add_argument("--state-dir", type=Path, default=None,
                       help="the lab's state directory (default: $XEN_VHD_TEMPEST_LAB_DIR or "
                            "~/.local/state/xen-vhd-tempest/lab)")
        return p

    up = common(sub.add_parser("up", help="start the lab"))
    up.add_argument("--port", type=int, default=None,
                    help=f"loopback port for every API (default $XEN_VHD_TEMPEST_LAB_PORT or {DEFAULT_PORT}; "
                         "0 picks a free one)")
    up.add_argument("--host", default="127.0.0.1", help="loopback address to bind (127.x.x.x only)")
    up.add_argument("--foreground", action="store_true", help="stay attached; stop on Ctrl-C / SIGTERM")
    up.add_argument("--no-default-image", action="store_true", help="do not upload the default XenServer image")
    up.add_argument("--admin-password", default="labadmin")
    up.add_argument("--demo-password", default="labdemo")
    up.add_argument("--guest-memory", type=int, default=192, metavar="MB")
    up.add_argument("--timeout", type=float, default=300, help="seconds to wait for a background lab to be ready")
    add_cinder_arguments(up)
    up.set_defaults(func=cmd_up)

    down = common(sub.add_parser("down", help="stop the lab and every guest"))
    down.add_argument("--timeout", type=float, default=60)
    down.set_defaults(func=cmd_down)

    status = common(sub.add_parser("status", help="is the lab up; what runs in it"))
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    env = common(sub.add_parser("env", help="print shell settings to use the lab"))
    env.set_defaults(func=cmd_env)

    settings = common(sub.add_parser("settings", help="show or change runtime settings"))
    settings.add_argument("--conversion-mode", choices=CONVERSION_MODES,
                          help="how volumes are made from images: reference converter, a known-wrong one "
                               "(sensitivity checks) or cinder (upstream Cinder's code)")
    add_cinder_arguments(settings)
    settings.add_argument("--token-ttl", type=int, metavar="SECONDS", help="lifetime of new tokens")
    settings.add_argument("--fault", action="append", metavar="SPEC", default=[],
                          help="add a fault injection rule, e.g. kind=api,service=compute,method=POST,"
                               "path=/servers$,status=500,count=1 (or JSON); kinds: api, guest, ssh-drop, "
                               "volume-error, image-saving (see lab/fault_injection.py)")
    settings.add_argument("--clear-faults", action="store_true", help="remove every fault injection rule")
    settings.set_defaults(func=cmd_settings)
    return lab


def add_cinder_arguments(p):
    """``--cinder [SRC]`` and ``--vhd-util PATH``: shared by ``lab up``, ``lab settings`` and ``run``."""
    p.add_argument("--cinder", nargs="?", const="", default=None, metavar="SRC",
                   help="volumes from images by upstream Cinder's own code: the installed cinder package, "
                        "or the Cinder source tree SRC (used unmodified)")
    p.add_argument("--vhd-util", metavar="PATH",
                   help="the vhd-util Cinder runs (default: xen-vhd-util)")


def cinder_settings(args) -> dict:
    """The settings ``--cinder``/``--vhd-util`` ask for; ValueError in one line for a bad path."""
    import importlib.util

    from .volume.cinder import validate_cinder_src, validate_vhd_util
    changes = {}
    if args.cinder == "" and importlib.util.find_spec("cinder") is None:
        raise ValueError("--cinder: no cinder package is installed (pip install 'xen-vhd-tempest[cinder]'), "
                         "or name a Cinder source tree: --cinder SRC")
    if args.cinder is not None:
        changes.update(conversion_mode="cinder",
                       cinder_src=validate_cinder_src(args.cinder, "--cinder") if args.cinder else None)
    if args.vhd_util:
        changes["vhd_util"] = validate_vhd_util(args.vhd_util, "--vhd-util")
    return changes


# -- helpers ----------------------------------------------------------------------------------------
def _state_dir(args) -> Path:
    return (args.state_dir or default_state_dir()).absolute()


def read_info(state_dir: Path):
    try:
        return json.loads((state_dir / "lab.json").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def running_info(state_dir: Path):
    info = read_info(state_dir)
    if info and _alive(info["pid"]):
        return info
    return None


def admin_token(info) -> str:
    creds = info["credentials"]["admin"]
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": creds["username"], "password": creds["password"], "domain": {"id": "default"}}}},
        "scope": {"project": {"name": creds["project_name"], "domain": {"id": "default"}}}}}
    req = urllib.request.Request(info["auth_url"] + "/v3/auth/tokens", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["X-Subject-Token"]


def lab_api(info, method, path, body=None):
    token = admin_token(info)
    req = urllib.request.Request(info["url"] + "/lab" + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"X-Auth-Token": token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def set_settings(state_dir: Path, **changes) -> dict:
    """Change runtime settings of a running lab (or of a stopped one: its settings file)."""
    info = running_info(Path(state_dir))
    if info is None:
        from .config import Settings
        return Settings(Path(state_dir) / "settings.json").update(**changes)
    return lab_api(info, "PUT", "/settings", {"settings": changes})["settings"]


# -- for other code (the pytest harness) ------------------------------------------------------------
def ensure_up(state_dir=None, *, port=None, timeout=300.0) -> dict:
    """The running lab's ``lab.json`` info, starting a background lab first if none runs there.

    Keys: url, auth_url, pid, state_dir, clouds_yaml (cloud ``xen-vhd-lab``), tempest_conf,
    default_image_id, credentials {admin, demo}, ssh_user, ssh_password, network.
    """
    state_dir = Path(state_dir or default_state_dir()).absolute()
    info = running_info(state_dir)
    if info is not None:
        return info
    port = default_port() if port is None else port
    if port and not _port_free("127.0.0.1", port):
        port = 0        # another lab (or anything else) holds it: a free port, named in lab.json
    args = argparse.Namespace(state_dir=state_dir, port=port, host="127.0.0.1", foreground=False,
                              no_default_image=False, admin_password="labadmin", demo_password="labdemo",
                              guest_memory=192, timeout=timeout, cinder=None, vhd_util=None)
    if cmd_up(args) != 0:
        raise RuntimeError(f"the lab did not start; see {state_dir / 'lab.out'}")
    return running_info(state_dir)


def _port_free(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def ensure_down(state_dir=None, timeout=60.0):
    """Stop the lab of ``state_dir`` (and every guest) if it runs."""
    state_dir = Path(state_dir or default_state_dir()).absolute()
    cmd_down(argparse.Namespace(state_dir=state_dir, timeout=timeout))


# -- commands ---------------------------------------------------------------------------------------
def cmd_up(args) -> int:
    state_dir = _state_dir(args)
    if args.port is None:
        args.port = default_port()
    try:
        changes = cinder_settings(args)
    except ValueError as error:
        print(f"lab up: {error}", file=sys.stderr)
        return 2
    info = running_info(state_dir)
    if info is not None:
        print(f"lab already up at {info['url']} (pid {info['pid']}, state {state_dir})")
        if changes:
            set_settings(state_dir, **changes)
            print(f"  settings: {json.dumps(changes, sort_keys=True)}")
        return 0
    if not (args.host == "localhost" or args.host.startswith("127.")):
        print(f"lab: --host {args.host}: the lab binds loopback addresses only", file=sys.stderr)
        return 2
    state_dir.mkdir(parents=True, exist_ok=True)
    if changes:
        from .config import Settings
        Settings(state_dir / "settings.json").update(**changes)
    if args.foreground:
        return _serve(args, state_dir)
    (state_dir / "lab.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "xen_vhd_tempest.lab.commands", "up", "--foreground",
           "--state-dir", str(state_dir), "--port", str(args.port), "--host", args.host,
           "--admin-password", args.admin_password, "--demo-password", args.demo_password,
           "--guest-memory", str(args.guest_memory)]
    if args.no_default_image:
        cmd.append("--no-default-image")
    out = open(state_dir / "lab.out", "ab")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                            close_fds=True)
    out.close()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (state_dir / "lab.out").read_text(errors="replace").strip().splitlines()[-5:]
            print(f"lab: failed to start (exit {proc.returncode}): " + " | ".join(tail), file=sys.stderr)
            return 1
        info = read_info(state_dir)
        if info and info.get("pid") == proc.pid:
            print(f"lab up at {info['url']} in {time.monotonic() - t0:.1f}s (pid {proc.pid}, state {state_dir})")
            print(f"  clouds.yaml: {info['clouds_yaml']} (cloud {info['cloud']})")
            print(f"  tempest.conf: {info['tempest_conf']}")
            print(f"  default image: {info.get('default_image_id')}")
            return 0
        time.sleep(0.2)
    print(f"lab: not ready after {args.timeout:.0f}s; see {state_dir / 'lab.out'}", file=sys.stderr)
    os.kill(proc.pid, signal.SIGTERM)
    return 1


def _serve(args, state_dir) -> int:
    from .cloud import Lab
    config = LabConfig(state_dir=state_dir, host=args.host, port=args.port,
                       admin_password=args.admin_password, demo_password=args.demo_password,
                       guest_memory_mb=args.guest_memory, default_image=not args.no_default_image)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lab = Lab(config, log_to_stderr=True)
    try:
        lab.start()
    except OSError as error:
        print(f"lab: cannot start on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
        _safe_stop(lab)
        return 1
    except Exception as error:
        print(f"lab: cannot start: {error}", file=sys.stderr)
        _safe_stop(lab)
        raise
    print(f"lab up at {lab.url} in {lab.start_seconds:.1f}s (state {state_dir})", flush=True)
    try:
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        lab.stop()
    return 0


def _safe_stop(lab):
    try:
        if getattr(lab, "server", None) is not None:
            lab.stop()
    except Exception:
        pass


def cmd_down(args) -> int:
    state_dir = _state_dir(args)
    info = read_info(state_dir)
    if info is None or not _alive(info["pid"]):
        (state_dir / "lab.json").unlink(missing_ok=True)
        print(f"lab is not running (state {state_dir})")
        return 0
    pid = info["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        print(f"lab: pid {pid} did not stop within {args.timeout:.0f}s; killing it", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)
        time.sleep(1)  # the guests' watchdogs kill QEMU when the lab process is gone
    (state_dir / "lab.json").unlink(missing_ok=True)
    print(f"lab down (state {state_dir} kept)")
    return 0


def cmd_status(args) -> int:
    state_dir = _state_dir(args)
    info = running_info(state_dir)
    if info is None:
        if args.json:
            print(json.dumps({"up": False, "state_dir": str(state_dir)}))
        else:
            print(f"lab is down (state {state_dir})")
        return 3
    try:
        status = lab_api(info, "GET", "/status")
    except (OSError, urllib.error.URLError) as error:
        print(f"lab pid {info['pid']} does not answer at {info['url']}: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dict(status, up=True), indent=2))
        return 0
    print(f"lab up at {info['url']} (pid {info['pid']}, state {state_dir})")
    settings = status["settings"]
    print(f"  images {status['images']}, volumes {status['volumes']}, servers {status['servers']}, "
          f"conversion mode {settings['conversion_mode']}")
    if settings["conversion_mode"] == "cinder":
        print(f"  cinder: {settings.get('cinder_src') or 'the installed cinder package'}, vhd-util "
              f"{settings.get('vhd_util') or 'xen-vhd-util'}; each volume's Cinder log: "
              f"{state_dir / 'volumes'}/ID.cinder.log")
        worker = status.get("cinder")
        if worker:
            print(f"  cinder worker pid {worker['pid']}: Cinder {worker['cinder']} from {worker['path']}")
    for rule in status["settings"].get("faults") or []:
        print(f"  fault: {json.dumps(rule, sort_keys=True)}")
    for sid, g in status["guests"].items():
        print(f"  guest {sid}: ssh {g['ssh'][0]}:{g['ssh'][1]} pid {g['pid']}")
    return 0


def cmd_env(args) -> int:
    state_dir = _state_dir(args)
    info = running_info(state_dir) or read_info(state_dir)
    if info is None:
        print(f"lab is not running (state {state_dir}); start it with: xen-vhd-tempest lab up", file=sys.stderr)
        return 3
    demo = info["credentials"]["demo"]
    print(f"# xen-vhd-tempest lab at {info['url']} (state {state_dir})")
    print(f"export OS_CLIENT_CONFIG_FILE={info['clouds_yaml']}")
    print(f"export OS_CLOUD={info['cloud']}          # {info['cloud']}-admin for the admin user")
    print(f"export OS_AUTH_URL={info['auth_url']}")
    print(f"export OS_USERNAME={demo['username']} OS_PASSWORD={demo['password']} "
          f"OS_PROJECT_NAME={demo['project_name']}")
    print("export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_IDENTITY_API_VERSION=3")
    print(f"export TEMPEST_CONFIG_DIR={state_dir} TEMPEST_CONFIG=tempest.conf")
    print(f"export XEN_VHD_TEMPEST_LAB_DIR={state_dir}")
    print(f"# default XenServer image: {info.get('default_image_id')} (vhd/ovf; ssh user "
          f"{info['ssh_user']}, password {info['ssh_password']})")
    print("# servers: addresses['private'][0]['addr'] is 127.0.0.N; the guest's SSH is on port 22 there")
    print("# (when the lab runs as root; otherwise 127.0.0.1 and the port in `lab status`).")
    print("# conversion mode: xen-vhd-tempest lab settings --conversion-mode MODE  (or PUT /lab/settings)")
    print(f"# real Cinder: xen-vhd-tempest lab settings --cinder [SRC]; its logs: {state_dir}/volumes/ID.cinder.log")
    return 0


def cmd_settings(args) -> int:
    state_dir = _state_dir(args)
    if not state_dir.is_dir():
        print(f"lab settings: no lab state directory {state_dir} (start a lab with: xen-vhd-tempest lab up)",
              file=sys.stderr)
        return 2
    changes = {}
    if args.conversion_mode:
        changes["conversion_mode"] = args.conversion_mode
    if args.token_ttl is not None:
        changes["token_ttl"] = args.token_ttl
    try:
        changes.update(cinder_settings(args))
        if args.fault or args.clear_faults:
            from .fault_injection import parse_spec
            added = [parse_spec(spec) for spec in args.fault]
            if args.clear_faults:
                changes["faults"] = added
            else:
                info = running_info(state_dir)
                if info is None:
                    from .config import Settings
                    existing = Settings(state_dir / "settings.json").current()["faults"]
                else:
                    existing = lab_api(info, "GET", "/settings")["settings"]["faults"]
                changes["faults"] = list(existing) + added
        if changes:
            current = set_settings(state_dir, **changes)
        else:
            info = running_info(state_dir)
            if info is None:
                from .config import Settings
                current = Settings(state_dir / "settings.json").current()
            else:
                current = lab_api(info, "GET", "/settings")["settings"]
    except ValueError as error:
        print(f"lab settings: {error}", file=sys.stderr)
        return 2
    print(json.dumps(current, indent=2, sort_keys=True))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="xen-vhd-tempest")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["lab"] + list(sys.argv[1:] if argv is None else argv))
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())

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

"""Real Cinder as the lab's volume-from-image: the client of the long-lived Cinder worker.

Conversion mode ``cinder`` runs upstream Cinder's own code (``lab.volume.cinder_worker``) from
the installed ``cinder`` package or from a source tree (``cinder_src``, put first on the
worker's ``sys.path``, used unmodified). Everything Cinder needs lives under
``STATE/cinder/``::

    cinder.conf     oslo.config: state_path, image_conversion_dir, lock_path, and privsep's
                    helper_command (privsep-helper directly: the lab runs as root, no sudo;
                    processutils uses no root helper for root either)
    bin/vhd-util    xen-vhd-util (or the ``vhd_util`` setting's real one), first on PATH
    conversion/     Cinder's image_conversion_dir
    worker.log      the worker's own log (start-up, every request)

Each volume's Cinder log is ``STATE/volumes/ID.cinder.log``; a failed conversion names it in
the volume's user message, next to the command Cinder ran and what it printed.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import LabError

ROOT = Path(__file__).resolve().parents[3]       # the project (converter, xen_vhd_tempest)
START_TIMEOUT = 120.0


class CinderUnavailable(LabError):
    """The worker could not start (not a Cinder tree, an import error): one line."""

    def __init__(self, message):
        super().__init__(500, message, kind="volumeBackendAPIException")


class CinderFailed(LabError):
    """Cinder's create-from-image raised: the message is the volume's user message."""

    def __init__(self, reply: dict, log_path: Path):
        self.reply = reply
        self.log_path = log_path
        super().__init__(500, user_message(reply, log_path), kind="volumeBackendAPIException")


def user_message(reply: dict, log_path) -> str:
    """Cinder's message, then (when a process failed) which Cinder function ran which command
    and what it printed, then where Cinder's log is. One line."""
    text = _one_line(reply.get("error", "Cinder failed"))
    if reply.get("command"):
        # what the command printed (blktap's vhd-util writes its errors to stdout); Cinder's
        # message often is that stderr already
        stderr = _one_line(reply.get("stderr") or reply.get("stdout") or "")[:400]
        said = f": {stderr}" if stderr and stderr not in text else ""
        ran = f"Cinder's {reply.get('function') or 'code'} ran `{command_line(reply['command'])}`"
        text += f" ({ran}: exit {reply.get('exit_code')}{said})"
    return f"{text} [Cinder's log: {log_path}]"


def command_line(cmd: str) -> str:
    """The command without processutils' resource-limit wrapper (``python -m
    oslo_concurrency.prlimit ... --``)."""
    if "oslo_concurrency.prlimit" in cmd and " -- " in cmd:
        return cmd.split(" -- ", 1)[1]
    return cmd


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())


# -- the user's inputs ------------------------------------------------------------------------------
def validate_cinder_src(path, label="cinder_src") -> str:
    """An absolute path to a Cinder source tree, or ValueError in one line."""
    p = Path(str(path)).expanduser()
    if not p.is_dir():
        raise ValueError(f"{label} {path}: no such directory")
    if not (p / "cinder" / "image" / "image_utils.py").is_file():
        raise ValueError(f"{label} {path}: not a Cinder source tree (no cinder/image/image_utils.py)")
    return str(p.resolve())


def validate_vhd_util(path, label="vhd_util") -> str:
    p = Path(str(path)).expanduser()
    if not p.is_file() or not os.access(p, os.X_OK):
        raise ValueError(f"{label} {path}: not an executable file")
    return str(p.resolve())


# -- the worker -------------------------------------------------------------------------------------
class CinderWorker:
    """One worker process, started on first use, restarted when it dies or its settings change.
    Requests are served one at a time (Cinder's CONF and the volume log handler are global)."""

    def __init__(self, state_dir, *, cinder_src=None, vhd_util=None, log=print):
        self.home = Path(state_dir) / "cinder"
        self.cinder_src = cinder_src
        self.vhd_util = vhd_util
        self.log = log
        self.proc = None
        self.ready: dict = {}
        self._lock = threading.Lock()

    @property
    def settings(self):
        return (self.cinder_src, self.vhd_util)

    # -- files
    def config_file(self) -> Path:
        return self.home / "cinder.conf"

    def _prepare(self):
        for sub in ("bin", "conversion", "locks"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        tool = self.home / "bin" / "vhd-util"
        tool.unlink(missing_ok=True)
        if self.vhd_util:
            tool.symlink_to(self.vhd_util)
        else:
            tool.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m converter.vhdutil \"$@\"\n")
            tool.chmod(0o755)
        conf = configparser.ConfigParser(interpolation=None)
        conf["DEFAULT"] = {"state_path": str(self.home), "image_conversion_dir": str(self.home / "conversion"),
                           "debug": "true", "use_stderr": "true", "host": "lab"}
        conf["oslo_concurrency"] = {"lock_path": str(self.home / "locks")}
        conf["cinder_sys_admin"] = {"helper_command": f"{_privsep_helper()} --config-file {self.config_file()}"}
        with open(self.config_file(), "w") as f:
            f.write("# Written by the xen-vhd-tempest lab for its Cinder worker.\n")
            conf.write(f)

    def environment(self) -> dict:
        env = dict(os.environ)
        path = [self.cinder_src] if self.cinder_src else []
        path += [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(path)
        env["PATH"] = os.pathsep.join([str(self.home / "bin"), str(Path(sys.executable).parent),
                                       env.get("PATH", "/usr/bin:/bin")])
        env["PYTHONWARNINGS"] = "ignore"
        return env

    # -- life
    def start(self):
        self._prepare()
        t0 = time.monotonic()
        errlog = open(self.home / "worker.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "xen_vhd_tempest.lab.volume.cinder_worker",
                                      "--config-file", str(self.config_file())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog,
                                     env=self.environment(), cwd=self.home, text=True, start_new_session=True)
        errlog.close()
        line = _read_line(self.proc, START_TIMEOUT)
        try:
            ready = json.loads(line) if line else {}
        except ValueError:
            ready = {}
        if not ready.get("ready"):
            self.stop()
            where = f"Cinder from {self.cinder_src}" if self.cinder_src else "the installed cinder package"
            reason = ready.get("error") or f"the worker exited without answering; see {self.home / 'worker.log'}"
            raise CinderUnavailable(f"{where} cannot run: {_one_line(reason)}")
        ready["start_seconds"] = round(time.monotonic() - t0, 3)
        self.ready = ready
        self.log(f"cinder worker pid {ready['pid']}: Cinder {ready['cinder']} from {ready['path']}, "
                 f"imported in {ready['seconds']:.1f}s, ready in {ready['start_seconds']:.1f}s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.stdin.write(json.dumps({"op": "stop"}) + "\n")
                proc.stdin.flush()
                proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            proc.kill()
            proc.wait()
        finally:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    # -- requests
    def request(self, req: dict, timeout=3600.0) -> dict:
        with self._lock:
            if not self.alive():
                self.start()
            try:
                self.proc.stdin.write(json.dumps(req) + "\n")
                self.proc.stdin.flush()
            except OSError:
                self.stop()
                raise CinderUnavailable(f"the Cinder worker died; see {self.home / 'worker.log'}") from None
            line = _read_line(self.proc, timeout)
            if not line:
                self.stop()
                raise CinderUnavailable(f"the Cinder worker gave no answer; see {self.home / 'worker.log'}")
            return json.loads(line)

    def create_volume(self, *, volume, image_view, image_schema, image_path, dest, log_path) -> dict:
        """Cinder fills ``dest`` from the image; the reply, or CinderFailed with Cinder's message."""
        reply = self.request({"op": "create", "volume_id": volume["id"], "size_gb": volume["size"],
                              "project_id": volume["project_id"], "user_id": volume["user_id"],
                              "image": image_view, "image_schema": image_schema,
                              "image_path": str(image_path), "dest": str(dest), "log": str(log_path)})
        if not reply.get("ok"):
            raise CinderFailed(reply, log_path)
        return reply


def _privsep_helper() -> str:
    beside = Path(sys.executable).parent / "privsep-helper"
    return str(beside) if beside.exists() else (shutil.which("privsep-helper") or "privsep-helper")


def _read_line(proc, timeout) -> str:
    """A line from the worker, or '' when it exits or says nothing for ``timeout`` seconds."""
    import select
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], min(1.0, max(0.0, deadline - time.monotonic())))
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None or time.monotonic() > deadline:
            return ""

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

"""What a lab starting on the state of one that died (SIGKILL, OOM, power) finds and tidies.

Servers are not persistent (guests die with the lab), so at start every guest of a previous
lab is stopped and its instance directory removed, and a Cinder worker it left (still
converting, perhaps) is stopped with its children. Each guest already has a watchdog that kills
QEMU when the lab's process goes (``lab.hypervisor``); this sweep is the backstop for a
watchdog that died too. A guest belongs to this state directory when QEMU's command line
names a file under its ``instances`` directory (the config drive always does).

The records are tidied by the models as they load: Glance's uploads that were ``saving`` go
back to ``queued`` without data, Cinder's ``creating``/``downloading`` volumes go to ``error``
(cinder-volume's init_host), and backups that were being exported are deleted (nova's rule for
a snapshot that failed before its image became active).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path


def stale_guests(instances_dir: Path) -> list[int]:
    """Pids of QEMU processes whose command line names a file under ``instances_dir``."""
    needle = (str(Path(instances_dir).resolve()) + os.sep).encode()
    return [pid for pid, argv in _processes()
            if argv and b"qemu-system" in os.path.basename(argv[0]) and any(needle in a for a in argv[1:])]


def stop_stale_guests(instances_dir: Path, log=print, timeout=5.0) -> list[int]:
    """SIGKILL the previous lab's guests and wait until they are gone; returns their pids."""
    pids = stale_guests(instances_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log(f"stopped guest QEMU pid {pid} left by a previous lab")
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids_alive = [p for p in pids if os.path.exists(f"/proc/{p}")
                      and not _zombie(p)]
        if not pids_alive:
            break
        time.sleep(0.05)
    return pids


CINDER_WORKER = b"xen_vhd_tempest.lab.volume.cinder_worker"


def stale_cinder_workers(state_dir: Path) -> list[int]:
    """Pids of Cinder workers (``lab/volume/cinder.py``) serving ``state_dir``'s lab: once the lab
    is gone one may still be converting into a volume the new lab has put in ``error``."""
    conf = str(Path(state_dir).resolve() / "cinder" / "cinder.conf").encode()
    found = []
    for pid, argv in _processes():
        if any(CINDER_WORKER in a for a in argv) and conf in argv:
            found.append(pid)
    return found


def stop_stale_cinder_workers(state_dir: Path, log=print) -> list[int]:
    """SIGKILL each with its process group (it leads its own session: qemu-img, vhd-util)."""
    pids = stale_cinder_workers(state_dir)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log(f"stopped Cinder worker pid {pid} left by a previous lab")
    return pids


def _processes():
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                yield int(entry), f.read().split(b"\0")
        except OSError:
            continue


def _zombie(pid) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def after_crash(state_dir: Path, log=print):
    """Everything a dead lab's processes left, before the services load their records."""
    state_dir = Path(state_dir)
    stop_stale_guests(state_dir / "instances", log)
    stop_stale_cinder_workers(state_dir, log)
    clear_instances(state_dir / "instances", log)


def clear_instances(instances_dir: Path, log=print) -> list[str]:
    """Remove what the previous lab's servers left (disks, config drives, backup staging)."""
    removed = []
    for entry in sorted(Path(instances_dir).iterdir()):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    if removed:
        log(f"removed {len(removed)} instance director{'y' if len(removed) == 1 else 'ies'} "
            "left by a previous lab")
    return removed

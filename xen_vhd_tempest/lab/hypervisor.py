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

"""Real QEMU guests for the lab: boot a disk, reach it over SSH, pause, hot-plug, power off.

Each :class:`Guest` runs one ``qemu-system-x86_64`` under TCG (``/dev/kvm`` on this kind of
machine is a nested hypervisor that crashes or crawls; set ``XEN_VHD_TEMPEST_ACCEL=kvm`` to use
KVM anyway) with:

- the disk on virtio-blk, either through a qcow2 overlay with 512-byte clusters (guest writes
  stay in the overlay and :meth:`Guest.changed_extents` lists them per sector) or directly;
- user networking restricted to the guest (``restrict=on``), with the guest's port 22 forwarded
  from ``127.0.0.N:22`` (when running as root and the address is free) or ``127.0.0.1:<port>``;
- the serial console written to a file, QMP on a unix socket.

Cleanup: :meth:`Guest.stop` kills QEMU and removes its run directory (overlay, sockets, logs).
If the Python process dies without calling it, a watchdog (a tiny ``sh`` holding the read end of
a pipe whose write end only this process has) kills QEMU and removes the directory; ``atexit``
stops every guest still running at a normal exit.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import addresses
from .qemu_qmp import QMP, QMPError

QEMU = os.environ.get("XEN_VHD_TEMPEST_QEMU", "qemu-system-x86_64")
QEMU_IMG = "qemu-img"

# Console lines that mean the guest will never come up: fail at once, quoting the console.
FAILURE_PATTERNS = (
    (re.compile(r"Kernel panic - not syncing.*"), "kernel panic"),
    (re.compile(r"No bootable device.*"), "no bootable device"),
    (re.compile(r"Boot failed: .*"), "boot failed"),
    (re.compile(r"xen-vhd-tempest initramfs: cannot mount root.*"), "initramfs cannot mount root"),
    (re.compile(r"VFS: Unable to mount root fs.*"), "cannot mount root"),
    (re.compile(r"Gave up waiting for root.*"), "cannot find root"),
    (re.compile(r"Missing operating system.*"), "no operating system"),
    (re.compile(r"Operating system load error.*"), "operating system load error"),
    (re.compile(r"No active partition.*"), "no active partition"),
    (re.compile(r"Could not find kernel image.*"), "boot loader cannot find the kernel"),
    (re.compile(r"Boot error\b.*"), "boot loader error"),
)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc|\r")


class GuestError(Exception):
    """A guest failed to boot, stopped, or an operation on it failed.

    ``str(err)`` is one line; ``err.console_tail`` holds the last console lines."""

    def __init__(self, message: str, console_tail: str = ""):
        super().__init__(message)
        self.console_tail = console_tail


def _clean_console(text: str) -> str:
    return _ANSI.sub("", text)


def _tail(text: str, lines: int = 12) -> str:
    rows = [r for r in _clean_console(text).split("\n") if r.strip()]
    return "\n".join(rows[-lines:])


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise GuestError(f"{cmd[0]} not found: install qemu-utils / qemu-system-x86 "
                         "(bindep.txt, profile lab)") from None
    except subprocess.CalledProcessError as exc:
        msg = (exc.stderr or exc.stdout or "").strip().splitlines()
        last = msg[-1] if msg else f"exit status {exc.returncode}"
        raise GuestError(f"{Path(str(cmd[0])).name} {cmd[1]}: {last}") from None


def _opt(path) -> str:
    """A path inside a QEMU -option value (commas are doubled)."""
    return str(path).replace(",", ",,")


def image_format(path: Path) -> str:
    out = _run([QEMU_IMG, "info", "-U", "--output=json", path]).stdout
    return json.loads(out).get("format", "raw")


def qemu_available() -> str | None:
    """None when QEMU guests can run here, else the reason they cannot."""
    if not shutil.which(QEMU):
        return f"{QEMU} not found (install qemu-system-x86)"
    if not shutil.which(QEMU_IMG):
        return f"{QEMU_IMG} not found (install qemu-utils)"
    return None


# --- guests ------------------------------------------------------------------------------------

# Started guests, held until stop() (a dropped Guest must not leave QEMU running).
_live: "set[Guest]" = set()


@atexit.register
def _stop_all() -> None:
    for g in list(_live):
        try:
            g.stop()
        except Exception:
            pass


_WATCHDOG = (
    # stdin is the read end of a pipe only our Python process holds the write end of:
    # EOF means we are gone (or stop() ran) -> kill QEMU if it is still ours, remove the run dir.
    'read _ignored; '
    'if [ -r "/proc/$1/cmdline" ] && grep -qaF -- "$2" "/proc/$1/cmdline"; then kill -KILL "$1"; fi; '
    'sleep 0.2; rm -rf -- "$2" "$3"'
)


class Guest:
    """One QEMU virtual machine. See the module docstring."""

    def __init__(self, name, disk, *, workdir, overlay=True, memory_mb=192, config_drive=None,
                 ssh_host=None, ssh_port=None):
        self.name = str(name)
        self.disk = Path(disk)
        self.workdir = Path(workdir)
        self.overlay = bool(overlay)
        self.memory_mb = int(memory_mb)
        self.config_drive = Path(config_drive) if config_drive else None
        self._fixed_addr = (ssh_host, ssh_port) if (ssh_host or ssh_port) else None
        self.ssh_address: tuple[str, int] | None = None
        self.rundir: Path | None = None
        self.qmp_path: Path | None = None
        self._sockdir: Path | None = None
        self.overlay_path: Path | None = None
        self.console_path: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.qmp: QMP | None = None
        self._watchdog: subprocess.Popen | None = None
        self._watchdog_w: int | None = None
        self._started_at: float | None = None
        self._console_saved: str | None = None
        self._paused = False
        self._map_cache: list[dict] | None = None
        self._devices: dict[str, str] = {}     # device id -> node name
        self._dev_seq = 0
        self._lock = threading.RLock()
        self._base_format = "raw"
        self.boot_seconds: float | None = None

    def __repr__(self):
        return f"<Guest {self.name} {self.ssh_address} {'running' if self.running else 'stopped'}>"

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    def start(self) -> None:
        with self._lock:
            if self.proc is not None:
                raise GuestError(f"{self.name}: already started")
            reason = qemu_available()
            if reason:
                raise GuestError(f"{self.name}: cannot run guests: {reason}")
            if not self.disk.is_file():
                raise GuestError(f"{self.name}: disk {self.disk} not found")
            if self.config_drive is not None and not self.config_drive.is_file():
                raise GuestError(f"{self.name}: config drive {self.config_drive} not found")
            self.workdir.mkdir(parents=True, exist_ok=True)
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)[:40] or "guest"
            self.rundir = Path(tempfile.mkdtemp(prefix=f"qemu-{safe}-", dir=self.workdir))
            self.console_path = self.rundir / "console.log"
            self.qmp_path = self.rundir / "qmp.sock"
            if len(str(self.qmp_path)) > 100:      # AF_UNIX paths are limited to 108 bytes
                self._sockdir = Path(tempfile.mkdtemp(prefix="xvt-qmp-"))
                self.qmp_path = self._sockdir / "qmp.sock"
            self._base_format = image_format(self.disk)
            if self.overlay:
                self.overlay_path = self.rundir / "overlay.qcow2"
                _run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512",
                      "-b", self.disk.resolve(), "-F", self._base_format, self.overlay_path])
            _live.add(self)
            tried = []
            for attempt in range(4):
                if self._fixed_addr:
                    host, port = self._fixed_addr
                    addr = (host or "127.0.0.1", int(port or 22))
                else:
                    try:
                        addr = addresses.allocate(exclude=tried)
                    except addresses.NoFreeAddress as error:
                        self.stop()
                        raise GuestError(f"{self.name}: {error}") from None
                self.ssh_address = addr
                try:
                    self._launch()
                    return
                except _HostfwdBusy:
                    tried.append(addr)
                    if not self._fixed_addr:
                        addresses.release(addr)
                    if self._fixed_addr or attempt == 3:
                        err = GuestError(f"{self.name}: cannot forward SSH from {addr[0]}:{addr[1]} (address in use)",
                                         self._stderr_tail())
                        self.stop()
                        raise err
                except BaseException:
                    self.stop()
                    raise

    def _qemu_command(self) -> list[str]:
        accel = os.environ.get("XEN_VHD_TEMPEST_ACCEL", "tcg")
        host, port = self.ssh_address
        if self.overlay:
            drive = f"file={_opt(self.overlay_path)},if=none,id=disk0,format=qcow2,cache=writeback,discard=unmap"
        else:
            drive = f"file={_opt(self.disk.resolve())},if=none,id=disk0,format={self._base_format},cache=writeback"
        cmd = [
            QEMU, "-name", f"{self.name},debug-threads=off",
            "-accel", accel, "-cpu", "max" if accel == "tcg" else "host",
            "-m", str(self.memory_mb), "-smp", "1",
            "-nodefaults", "-no-user-config", "-nographic",
            "-chardev", f"file,id=serial0,path={_opt(self.console_path)}",
            "-serial", "chardev:serial0",
            "-qmp", f"unix:{_opt(self.qmp_path)},server=on,wait=off",
            "-pidfile", str(self.rundir / "qemu.pid"),
            "-drive", drive,
            "-device", "virtio-blk-pci,drive=disk0,id=vd-root,bootindex=0",
            "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:{host}:{port}-:22",
            "-device", "virtio-net-pci,netdev=net0,romfile=,id=nic0",
            "-boot", "strict=on",
            "-rtc", "base=utc",
        ]
        if self.config_drive is not None:
            cmd += ["-drive", f"file={_opt(self.config_drive.resolve())},if=none,id=config,format=raw,readonly=on",
                    "-device", "virtio-blk-pci,drive=config,id=vd-config"]
        return cmd

    def _launch(self) -> None:
        self.qmp_path.unlink(missing_ok=True)
        self.console_path.write_bytes(b"")
        stderr = open(self.rundir / "qemu.stderr", "wb")
        try:
            self.proc = subprocess.Popen(self._qemu_command(), stdin=subprocess.DEVNULL,
                                         stdout=stderr, stderr=stderr, start_new_session=True,
                                         close_fds=True)
        except FileNotFoundError:
            raise GuestError(f"{QEMU} not found (install qemu-system-x86)") from None
        finally:
            stderr.close()
        self._started_at = time.monotonic()
        self._start_watchdog()
        self.qmp = QMP(self.qmp_path)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                tail = self._stderr_tail()
                self.proc = None
                self._close_watchdog(remove=False)     # keep the run dir for a retry
                if "host forwarding" in tail or "hostfwd" in tail:
                    raise _HostfwdBusy()
                raise GuestError(f"{self.name}: qemu exited at start: {tail.splitlines()[-1] if tail else '?'}", tail)
            try:
                self.qmp.connect(deadline=min(deadline, time.monotonic() + 0.2))
                break
            except QMPError:
                if time.monotonic() >= deadline:
                    raise GuestError(f"{self.name}: qemu QMP socket did not come up", self._stderr_tail())

    def _start_watchdog(self) -> None:
        r, w = os.pipe()
        try:
            self._watchdog = subprocess.Popen(
                ["sh", "-c", _WATCHDOG, "xvt-qemu-watchdog", str(self.proc.pid), str(self.rundir),
                 str(self._sockdir or self.rundir)],
                stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                close_fds=True)
        finally:
            os.close(r)
        self._watchdog_w = w          # non-inheritable: children we start later do not hold it

    def _close_watchdog(self, remove: bool = True) -> None:
        """Let the watchdog go: it then removes the run dir (or, remove=False, just ends)."""
        if not remove and self._watchdog is not None:
            self._watchdog.kill()
        if self._watchdog_w is not None:
            os.close(self._watchdog_w)
            self._watchdog_w = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
            self._watchdog = None

    def _stderr_tail(self) -> str:
        try:
            return (self.rundir / "qemu.stderr").read_text(errors="replace").strip()[-2000:]
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        """Kill QEMU, remove the overlay, sockets and logs. Idempotent."""
        with self._lock:
            if self.rundir is not None and self.console_path is not None and self._console_saved is None:
                try:
                    self._console_saved = self.console_path.read_text(errors="replace")
                except OSError:
                    self._console_saved = ""
            if self.qmp is not None:
                self.qmp.close()
                self.qmp = None
            if self.proc is not None:
                if self.proc.poll() is None:
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except OSError:
                        try:
                            self.proc.kill()
                        except OSError:
                            pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            self._close_watchdog()
            if self.rundir is not None:
                shutil.rmtree(self.rundir, ignore_errors=True)
                self.rundir = None
            if self._sockdir is not None:
                shutil.rmtree(self._sockdir, ignore_errors=True)
                self._sockdir = None
            if self.ssh_address is not None and not self._fixed_addr:
                addresses.release(self.ssh_address)
            self._paused = False
            self._map_cache = None
            _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- console & boot -----------------------------------------------------------------------
    def console_log(self) -> str:
        if self._console_saved is not None and self.rundir is None:
            return self._console_saved
        if self.console_path is None:
            return ""
        try:
            return self.console_path.read_text(errors="replace")
        except OSError:
            return self._console_saved or ""

    def check_console(self) -> None:
        """Raise GuestError if the console shows a boot failure."""
        text = _clean_console(self.console_log())
        for pattern, what in FAILURE_PATTERNS:
            m = pattern.search(text)
            if m:
                tail = _tail(text)
                # Quote the failing line and what follows it (at most 3 lines), one line in all.
                after = [r.strip() for r in text[m.start():].split("\n") if r.strip()][:3]
                quote = " | ".join(after)
                raise GuestError(f"{self.name}: {what}: console: {quote}", tail)

    def wait_for_ssh(self, timeout: float = 180.0) -> float:
        """Wait until the guest's SSH server sends its banner; return seconds since start()."""
        if self._started_at is None:
            raise GuestError(f"{self.name}: not started")
        deadline = time.monotonic() + timeout
        while True:
            self.check_console()
            if not self.running:
                tail = _tail(self.console_log())
                code = self.proc.returncode if self.proc is not None else "?"
                err = self._stderr_tail().splitlines()
                raise GuestError(f"{self.name}: qemu exited (status {code}) before SSH came up"
                                 + (f": {err[-1]}" if err else ""), tail)
            if self._banner():
                self.boot_seconds = time.monotonic() - self._started_at
                return self.boot_seconds
            if time.monotonic() >= deadline:
                tail = _tail(self.console_log())
                quote = " | ".join(tail.splitlines()[-3:])
                raise GuestError(f"{self.name}: no SSH on {self.ssh_address[0]}:{self.ssh_address[1]} "
                                 f"after {timeout:.0f}s; console: {quote}", tail)
            time.sleep(0.25)

    def _banner(self) -> bool:
        try:
            with socket.create_connection(self.ssh_address, timeout=1.0) as s:
                s.settimeout(1.5)
                data = s.recv(64)
                return data.startswith(b"SSH-")
        except OSError:
            return False

    # -- QMP ------------------------------------------------------------------------------------
    def _qmp(self) -> QMP:
        if self.qmp is None or not self.running:
            raise GuestError(f"{self.name}: not running", _tail(self.console_log()))
        return self.qmp

    def _cmd(self, name, **args):
        try:
            return self._qmp().command(name, **args)
        except QMPError as exc:
            raise GuestError(f"{self.name}: {exc}") from None

    def pause(self) -> None:
        with self._lock:
            self._cmd("stop")
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._map_cache = None
            self._cmd("cont")
            self._paused = False

    def powerdown(self, timeout: float = 30.0) -> None:
        """Press the ACPI power button; kill QEMU if the guest has not powered off by ``timeout``."""
        with self._lock:
            if not self.running:
                return
            if self._paused:
                self.resume()
            try:
                self._qmp().command("system_powerdown")
            except (QMPError, GuestError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait(timeout=10)
            if self.qmp is not None:
                self.qmp.close()
                self.qmp = None

    def power_off(self, timeout: float = 30.0) -> None:
        """nova's stop: ACPI power-off (killed after ``timeout``); the disk (overlay) and the SSH
        address stay for :meth:`power_on`. Hot-plugged disks are gone with the QEMU process."""
        with self._lock:
            if self.rundir is None:
                raise GuestError(f"{self.name}: not started")
            self.powerdown(timeout)
            if self.proc is not None and self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait(timeout=10)
            self._console_saved = None
            self.proc = None
            self._close_watchdog(remove=False)     # the run dir holds the overlay: keep it
            self._devices.clear()
            self._paused = False
            self._map_cache = None

    def power_on(self) -> None:
        """nova's start: a new QEMU on the same disk, overlay and SSH address."""
        with self._lock:
            if self.rundir is None:
                raise GuestError(f"{self.name}: not started")
            if self.running:
                raise GuestError(f"{self.name}: already running")
            try:
                self._launch()
            except _HostfwdBusy:
                raise GuestError(f"{self.name}: cannot forward SSH from {self.ssh_address[0]}:"
                                 f"{self.ssh_address[1]} (address in use)", self._stderr_tail()) from None

    # -- disks ----------------------------------------------------------------------------------
    def attach_disk(self, path, *, read_only=False) -> str:
        """Hot-plug ``path`` as a virtio-blk disk; return its device id."""
        path = Path(path)
        if not path.is_file() and not path.is_block_device():
            raise GuestError(f"{self.name}: disk {path} not found")
        fmt = image_format(path)
        with self._lock:
            self._dev_seq += 1
            dev = f"vd-hot{self._dev_seq}"
            node = f"node-hot{self._dev_seq}"
            self._cmd("blockdev-add", **{
                "node-name": node, "driver": fmt, "read-only": bool(read_only),
                "file": {"driver": "file", "filename": str(path.resolve())}})
            try:
                self._cmd("device_add", driver="virtio-blk-pci", drive=node, id=dev)
            except GuestError:
                try:
                    self._cmd("blockdev-del", **{"node-name": node})
                except GuestError:
                    pass
                raise
            self._devices[dev] = node
            return dev

    @property
    def hotplugged(self) -> list[str]:
        """Device ids of the disks hot-plugged now, in the order they were attached."""
        with self._lock:
            return list(self._devices)

    def detach_disk(self, device_id, timeout: float = 30.0) -> None:
        with self._lock:
            node = self._devices.get(device_id)
            if node is None:
                raise GuestError(f"{self.name}: no hot-plugged disk {device_id}")
            self._cmd("device_del", id=device_id)
            ev = self._qmp().wait_event("DEVICE_DELETED", timeout,
                                        match=lambda e: e.get("data", {}).get("device") == device_id)
            if ev is None:
                raise GuestError(f"{self.name}: guest did not release disk {device_id} within {timeout:.0f}s")
            self._cmd("blockdev-del", **{"node-name": node})
            del self._devices[device_id]

    def _disk_file(self) -> Path:
        if self.rundir is None and self.overlay:
            raise GuestError(f"{self.name}: stopped; its overlay is gone")
        return self.overlay_path if self.overlay else self.disk

    @contextlib.contextmanager
    def quiesced(self):
        """The guest is paused inside (QEMU drains and flushes its block caches on stop)."""
        resume = False
        if self.running and not self._paused:
            self.pause()
            resume = True
        try:
            yield
        finally:
            if resume and self.running:
                self.resume()

    def _map(self) -> list[dict]:
        """``qemu-img map`` of the guest disk; cached while the guest cannot write (paused/off)."""
        frozen = self._paused or not self.running
        if frozen and self._map_cache is not None:
            return self._map_cache
        path = self._disk_file()
        out = _run([QEMU_IMG, "map", "-U", "--output=json", "-f",
                    "qcow2" if self.overlay else self._base_format, path]).stdout
        extents = json.loads(out)
        extents.sort(key=lambda e: int(e["start"]))
        self._map_cache = extents if frozen else None
        return extents

    def changed_extents(self) -> list[tuple[int, int]]:
        """(offset, length) of guest-disk ranges written since start (overlay mode), merged."""
        if not self.overlay:
            raise GuestError(f"{self.name}: changed_extents needs overlay=True")
        with self._lock, self.quiesced():
            extents = self._map()
        out: list[list[int]] = []
        for e in extents:
            if e.get("depth") != 0:
                continue
            start, length = int(e["start"]), int(e["length"])
            if out and out[-1][0] + out[-1][1] == start:
                out[-1][1] += length
            else:
                out.append([start, length])
        return [(a, b) for a, b in out]

    def read_disk(self, offset: int, length: int) -> bytes:
        """Bytes of the guest's disk as the guest sees it (overlay over base); pauses briefly
        if the guest is running."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        with self._lock, self.quiesced():
            if not self.overlay and self._base_format == "raw":
                with open(self.disk, "rb") as f:
                    f.seek(offset)
                    data = f.read(length)
                return data + b"\0" * (length - len(data))
            extents = self._map()
            starts = [int(e["start"]) for e in extents]
            top = self._disk_file()
            buf = bytearray(length)
            end = offset + length
            files = {}
            try:
                for e in extents[max(bisect.bisect_right(starts, offset) - 1, 0):]:
                    s, ln = int(e["start"]), int(e["length"])
                    if s >= end:
                        break
                    lo, hi = max(s, offset), min(s + ln, end)
                    if lo >= hi or not e.get("data") or e.get("zero"):
                        continue
                    if "offset" not in e:
                        raise GuestError(f"{self.name}: cannot read disk range {lo}+{hi - lo}: "
                                         f"no direct mapping (compressed or encrypted?)")
                    if e.get("depth", 0) > 1:
                        raise GuestError(f"{self.name}: backing chains deeper than one are not supported")
                    src = top if e.get("depth") == 0 else self.disk
                    f = files.get(src) or files.setdefault(src, open(src, "rb"))
                    f.seek(int(e["offset"]) + (lo - s))
                    chunk = f.read(hi - lo)
                    buf[lo - offset:lo - offset + len(chunk)] = chunk
            finally:
                for f in files.values():
                    f.close()
            return bytes(buf)


class _HostfwdBusy(Exception):
    pass

"""A minimal synchronous QMP client (QEMU Machine Protocol over a unix socket).

Thread-safe: one command at a time; asynchronous events are kept in a list that
:meth:`QMP.wait_event` consumes.
"""

from __future__ import annotations

import json
import socket
import threading
import time


class QMPError(Exception):
    """A QMP command failed, or the connection broke."""


class QMP:
    def __init__(self, path: str, timeout: float = 10.0):
        self.path = str(path)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = b""
        self._events: list[dict] = []
        self._lock = threading.RLock()

    # -- connection -------------------------------------------------------------------------
    def connect(self, deadline: float) -> None:
        """Connect (retrying until ``deadline``, a time.monotonic() value) and negotiate."""
        last = None
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(self.path)
                break
            except OSError as exc:
                s.close()
                last = exc
                if time.monotonic() >= deadline:
                    raise QMPError(f"cannot connect to QMP socket {self.path}: {last}") from None
                time.sleep(0.05)
        self.sock = s
        greeting = self._read_message()
        if "QMP" not in greeting:
            raise QMPError(f"unexpected QMP greeting: {greeting!r}")
        self.command("qmp_capabilities")

    def close(self) -> None:
        with self._lock:
            if self.sock is not None:
                try:
                    self.sock.close()
                except OSError:
                    pass
                self.sock = None

    # -- messages ---------------------------------------------------------------------------
    def _read_message(self, timeout: float | None = None) -> dict:
        if self.sock is None:
            raise QMPError("QMP connection closed")
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise
            except OSError as exc:
                raise QMPError(f"QMP connection lost: {exc}") from None
            if not chunk:
                raise QMPError("QMP connection closed by QEMU")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            raise QMPError(f"bad QMP message: {line[:200]!r}") from None

    def command(self, name: str, **arguments):
        """Run a command and return its ``return`` value; raise QMPError on ``error``."""
        with self._lock:
            if self.sock is None:
                raise QMPError("QMP connection closed")
            msg = {"execute": name}
            if arguments:
                msg["arguments"] = arguments
            try:
                self.sock.sendall(json.dumps(msg).encode() + b"\n")
            except OSError as exc:
                raise QMPError(f"QMP {name}: {exc}") from None
            while True:
                try:
                    reply = self._read_message()
                except socket.timeout:
                    raise QMPError(f"QMP {name}: no reply within {self.timeout:.0f}s") from None
                if "event" in reply:
                    self._events.append(reply)
                    continue
                if "error" in reply:
                    err = reply["error"]
                    raise QMPError(f"QMP {name}: {err.get('desc', err)}")
                return reply.get("return")

    def wait_event(self, name: str, timeout: float, match=None) -> dict | None:
        """Wait for event ``name`` (optionally with ``match(event)`` true); None on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for i, ev in enumerate(self._events):
                    if ev.get("event") == name and (match is None or match(ev)):
                        return self._events.pop(i)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    ev = self._read_message(timeout=left)
                except socket.timeout:
                    return None
                except QMPError:
                    return None
                if "event" in ev:
                    self._events.append(ev)

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

"""QMP (QEMU Machine Protocol) for the lab's guests, over the maintained ``qemu.qmp`` library.

``qemu.qmp`` is asyncio; the lab's callers are threads (HTTP handlers, build and backup
workers). One event loop in a daemon thread serves every connection, and :class:`QMP` offers
the blocking calls the hypervisor uses: ``connect``, ``command``, ``wait_event``, ``close``.
Events that arrive while nobody waits are kept for the next :meth:`QMP.wait_event`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time

from qemu.qmp import ConnectError, ExecuteError, QMPClient
from qemu.qmp import QMPError as _LibraryError

# qemu.qmp logs every disconnect of a killed QEMU as an error: the lab reports its own.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


class QMPError(Exception):
    """A QMP command failed, or the connection broke."""


def _quiet_disconnects(loop, context):
    """A QEMU that exits (power-off, kill) ends its reader task with EOF: not worth a report."""
    if not isinstance(context.get("exception"), (EOFError, ConnectionError)):
        loop.default_exception_handler(context)


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            _loop.set_exception_handler(_quiet_disconnects)
            threading.Thread(target=_loop.run_forever, name="lab-qmp", daemon=True).start()
        return _loop


def _run(coro, timeout: float):
    future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), _event_loop())
    try:
        return future.result()
    except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
        raise TimeoutError from None


class QMP:
    def __init__(self, path: str, timeout: float = 10.0):
        self.path = str(path)
        self.timeout = timeout
        self._client: QMPClient | None = None
        self._events: list[dict] = []
        self._lock = threading.RLock()

    def connect(self, deadline: float) -> None:
        """Connect (retrying until ``deadline``, a time.monotonic() value) and negotiate."""
        while True:
            client = QMPClient(self.path)
            try:
                _run(client.connect(self.path), max(deadline - time.monotonic(), 0.05))
                self._client = client
                return
            except (ConnectError, OSError, TimeoutError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise QMPError(f"cannot connect to QMP socket {self.path}: {last}") from None
            time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                _run(client.disconnect(), self.timeout)
            except (_LibraryError, OSError, EOFError, TimeoutError):
                pass

    def command(self, name: str, **arguments):
        """Run a command and return its ``return`` value; raise QMPError on ``error``."""
        with self._lock:
            if self._client is None:
                raise QMPError("QMP connection closed")
            try:
                return _run(self._client.execute(name, arguments or None), self.timeout)
            except ExecuteError as exc:
                raise QMPError(f"QMP {name}: {exc}") from None
            except TimeoutError:
                raise QMPError(f"QMP {name}: no reply within {self.timeout:.0f}s") from None
            except (_LibraryError, OSError, EOFError) as exc:
                raise QMPError(f"QMP {name}: {exc or type(exc).__name__}") from None

    def wait_event(self, name: str, timeout: float, match=None) -> dict | None:
        """Wait for event ``name`` (optionally with ``match(event)`` true); None on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for i, ev in enumerate(self._events):
                    if ev.get("event") == name and (match is None or match(ev)):
                        return self._events.pop(i)
                left = deadline - time.monotonic()
                if left <= 0 or self._client is None:
                    return None
                try:
                    self._events.append(dict(_run(self._client.events.get(), left)))
                except (TimeoutError, _LibraryError, OSError, EOFError):
                    return None

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

"""Loopback addresses for guests' forwarded SSH: the one allocator of the lab.

As root a guest gets ``127.0.0.N`` port 22 (N from ``first`` to 254, skipping addresses
something already listens on); otherwise ``127.0.0.1`` and a free high port. Addresses are
held process-wide until released, whoever asked (the compute driver, a bare ``Guest``).
"""

from __future__ import annotations

import os
import socket
import threading
import zlib
from typing import NamedTuple


class NoFreeAddress(RuntimeError):
    pass


class GuestAddress(NamedTuple):
    """Where a server's SSH is reached, and the MAC its address view shows."""
    host: str
    port: int
    mac: str


_lock = threading.Lock()
_in_use: set[tuple[str, int]] = set()


def _can_bind(host: str, port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def allocate(*, first: int = 2, seed: str = "", exclude=()) -> tuple[str, int]:
    """A free (host, port), held until :func:`release`.

    ``seed`` rotates where the search for ``127.0.0.N`` starts, so that labs running side by
    side (each seeds with its state dir) rarely probe the same address between allocation and
    QEMU's bind.
    """
    with _lock:
        if os.geteuid() == 0:
            span = list(range(first, 255))
            start = zlib.crc32(seed.encode()) % len(span) if seed else 0
            for n in span[start:] + span[:start]:
                addr = (f"127.0.0.{n}", 22)
                if addr not in _in_use and addr not in exclude and _can_bind(*addr):
                    _in_use.add(addr)
                    return addr
        for _ in range(50):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            addr = ("127.0.0.1", s.getsockname()[1])
            s.close()
            if addr not in _in_use and addr not in exclude:
                _in_use.add(addr)
                return addr
    raise NoFreeAddress("no free loopback address for a guest's SSH port")


def release(addr) -> None:
    with _lock:
        _in_use.discard(tuple(addr))


def mac_for(host: str, port: int) -> str:
    """A stable nova-style MAC (fa:16:3e prefix) for a guest address."""
    n = int(host.rsplit(".", 1)[1])
    return "fa:16:3e:%02x:%02x:%02x" % (n, port >> 8 & 0xFF, port & 0xFF)

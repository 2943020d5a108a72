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

"""Shared fixtures: deterministic disk content and synthetic XenServer images."""

import random

import pytest

MIB = 1 << 20


def disk_bytes(size, seed=0, density=0.6):
    """Disk-like content: runs of text, noise and zeros (compresses like real disks)."""
    rnd = random.Random(seed)
    out = bytearray(size)
    pos = 0
    while pos < size:
        run = min(rnd.choice((512, 4096, 65536, 300_000)), size - pos)
        kind = rnd.random()
        if kind < density / 2:
            out[pos:pos + run] = rnd.randbytes(run)
        elif kind < density:
            text = b"block %d of seed %d; " % (pos, seed)
            out[pos:pos + run] = (text * (run // len(text) + 1))[:run]
        pos += run
    return bytes(out)


@pytest.fixture
def make_disk():
    return disk_bytes

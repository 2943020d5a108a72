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

"""The lab guest's disk read and written in one place: the MBR partition table, and the facts
the lab reads off a disk before booting it (SSH host keys, the kernel).

The layout is ``build.build_disk``'s (FAT boot partition, then ext4 root); :func:`partitions`
reads any MBR disk. A new fact the lab learns from a guest disk goes here.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

SECTOR = 512
LINUX = 0x83
FAT_TYPES = (0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E)
HOST_KEY_FILES = ("/etc/dropbear/dropbear_ed25519_host_key", "/etc/dropbear/dropbear_ecdsa_host_key",
                  "/etc/dropbear/dropbear_rsa_host_key")


class Partition(NamedTuple):
    index: int          # 0..3, the MBR slot
    type: int           # MBR partition type (0x83 Linux, 0x0e FAT16 LBA, ...)
    offset: int         # bytes from the start of the disk
    sectors: int
    active: bool


# -- the partition table -------------------------------------------------------------------------
def _chs(lba: int) -> bytes:
    heads, spt = 255, 63
    c = lba // (heads * spt)
    if c > 1023:
        return b"\xfe\xff\xff"
    h = (lba // spt) % heads
    s = lba % spt + 1
    return bytes([h, ((c >> 2) & 0xC0) | s, c & 0xFF])


def mbr_bytes(code: bytes, partitions: list[tuple[int, int, int, bool]], signature: int) -> bytes:
    """Sector 0: boot ``code``, disk signature, partition table (start, sectors, type, active)."""
    sector = bytearray(SECTOR)
    sector[:len(code[:440])] = code[:440]
    struct.pack_into("<I", sector, 440, signature)
    for i, (start, count, ptype, active) in enumerate(partitions):
        entry = bytes([0x80 if active else 0]) + _chs(start) + bytes([ptype]) + _chs(start + count - 1) \
            + struct.pack("<II", start, count)
        sector[446 + 16 * i:446 + 16 * (i + 1)] = entry
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def partitions(disk) -> list[Partition]:
    """The used MBR slots of ``disk``; empty when it cannot be read or has no MBR signature."""
    try:
        with open(disk, "rb") as f:
            mbr = f.read(SECTOR)
    except OSError:
        return []
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        return []
    out = []
    for i in range(4):
        entry = mbr[446 + 16 * i:462 + 16 * i]
        start, count = struct.unpack("<II", entry[8:16])
        if entry[4] and start:
            out.append(Partition(i, entry[4], start * SECTOR, count, entry[0] == 0x80))
    return out


# -- facts read off the disk ---------------------------------------------------------------------
def host_keys(disk) -> list[str]:
    """The SSH host keys a guest disk will present (``type base64`` lines), read from its first
    Linux partition that holds dropbear keys (ext2/3/4 through debugfs) before it boots - what a
    cloud learns from cloud-init's console block. Empty when the disk holds none the lab can read."""
    keys: list[str] = []
    with tempfile.TemporaryDirectory(prefix="xvt-hostkeys-") as tmp:
        for part in partitions(disk):
            if part.type != LINUX:
                continue
            for path in HOST_KEY_FILES:
                out = Path(tmp) / Path(path).name
                try:
                    subprocess.run(["debugfs", "-R", f"dump {path} {out}", f"{disk}?offset={part.offset}"],
                                   capture_output=True, timeout=30, check=False)
                    if not out.is_file() or not out.stat().st_size:
                        continue
                    pub = subprocess.run(["dropbearkey", "-y", "-f", str(out)], capture_output=True, text=True,
                                         timeout=30, check=False).stdout
                except (OSError, subprocess.TimeoutExpired):
                    return keys
                keys += [" ".join(line.split()[:2]) for line in pub.splitlines()
                         if line.startswith(("ssh-", "ecdsa-"))]
            if keys:
                break
    return keys


def extract_kernel(disk, dest) -> bool:
    """Copy ``vmlinuz`` from the disk's FAT boot partition to ``dest``; False when there is none."""
    for part in partitions(disk):
        if part.type not in FAT_TYPES:
            continue
        proc = subprocess.run(["mcopy", "-o", "-i", f"{disk}@@{part.offset}", "::/vmlinuz", str(dest)],
                              capture_output=True, timeout=60)
        if proc.returncode == 0:
            return True
    return False

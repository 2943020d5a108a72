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

"""`xen-vhd-tempest demo`: the converter's story without a cloud.

Builds a XenServer backup-shaped image (a 40 MiB base with a partition table, a resize layer
to 1 GiB, a leaf holding 'somefile' written past the base's end with partial blocks), shuffles
its members as a real tar does, converts it in one pass and checks the result against the
disk the builder says it must be. Ends with PASS/FAIL.
"""

import hashlib
import os
import random
import struct
import tempfile
import time

from converter import scan
from converter.builder import ImageBuilder
from converter.check import check_image, format_report
from converter.convert import convert_image
from converter.errors import VhdError

MIB = 1 << 20


def _base_disk(size):
    """A 40 MiB 'cirros-like' disk: MBR with one bootable Linux partition, some filesystem-ish data."""
    rnd = random.Random(2012)
    disk = bytearray(size)
    start, count = 2048, size // 512 - 2048
    entry = struct.pack("<B3sB3sII", 0x80, b"\0\0\0", 0x83, b"\0\0\0", start, count)
    disk[446:462] = entry
    disk[510:512] = b"\x55\xaa"
    for i in range(0, 24 * MIB, 64 * 1024):          # 'files': compressible text and some noise
        off = start * 512 + i
        disk[off:off + 4096] = (b"cirros-0.3.0 block %08d " % i) * 128
        disk[off + 4096:off + 4608] = rnd.randbytes(512)
    return bytes(disk)


def run(args):
    steps = []

    def step(name, fn):
        t = time.monotonic()
        print(f"==> {name} ...", flush=True)
        try:
            out = fn()
            steps.append((name, "ok", time.monotonic() - t))
            return out
        except (VhdError, AssertionError) as exc:
            steps.append((name, "FAIL", time.monotonic() - t))
            print(f"    FAILED: {exc}", flush=True)
            raise

    with tempfile.TemporaryDirectory(prefix="xen-vhd-demo-", dir=args.workdir) as work:
        image = os.path.join(work, "snap.tgz")
        raw = os.path.join(work, "rawdisk")
        builder = ImageBuilder(_base_disk(40 * MIB))

        def build():
            builder.snapshot(size=1 << 30)                       # 1.vhd: instance disk grown to the flavor
            builder.snapshot()                                   # 0.vhd: the guest's writes since boot
            somefile = random.Random(7).randbytes(10000 * 1024)  # dd bs=1024 count=10000
            builder.write(45 * MIB + 512 * 3, somefile)          # past the base's end, unaligned
            builder.write(2048 * 512 + 700, b"somefile.md5")     # a partial sector over base data
            builder.write(30 * MIB, bytes(8192))                 # zeros over data
            builder.build(image, order="shuffle")
            print(f"    {image}: {os.path.getsize(image)} bytes")

        def inspect():
            print("    " + scan.format_tree(scan.scan_image(image)).replace("\n", "\n    "))
            report = check_image(image)
            print("    " + format_report(report).replace("\n", "\n    "))
            assert report.ok, "the reference checks reject the image"

        def convert():
            result = convert_image(image, raw)
            print(f"    {raw}: {result.virtual_size} bytes, "
                  f"{os.stat(raw).st_blocks * 512 // MIB} MiB allocated")
            return result

        def verify():
            got = hashlib.md5()
            with open(raw, "rb") as f:
                while piece := f.read(8 * MIB):
                    got.update(piece)
            want = builder.expected_md5()
            print(f"    md5 {got.hexdigest()} (expected {want})")
            assert got.hexdigest() == want, "converted disk differs from the expected disk"

        try:
            step("build a 3-member XenServer image (base, resize layer, leaf)", build)
            step("scan and check it like vhd-util", inspect)
            step("convert it to raw in one pass", convert)
            step("compare with the expected disk", verify)
            status = "PASS"
        except (VhdError, AssertionError):
            status = "FAIL"
    print()
    print(f"{'step':<62} {'status':<6} {'seconds':>8}")
    for name, st, secs in steps:
        print(f"{name:<62} {st:<6} {secs:8.2f}")
    print(f"\n{status}")
    return 0 if status == "PASS" else 1


def add_parser(subparsers):
    p = subparsers.add_parser("demo", help="build, inspect and convert a XenServer image locally (no cloud)")
    p.add_argument("--workdir", default=None, help="where to put the temporary files (default: $TMPDIR)")
    p.set_defaults(func=run)


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

"""Fuzzing the converter: mutated VHD members and archives must only ever raise VhdError.

The target feeds one input through every entry point that parses untrusted bytes (convert
to raw, check, scan, info dump, random-access read) with a time and memory budget; anything
else escaping - another exception, a hang, an allocation beyond the budget - is a bug.

    python -m tests.fuzzing --seconds 600            # long run (tox -e fuzz); atheris if installed
    python -m tests.fuzzing --replay tests/fuzz_regressions

Crashing inputs are saved to tests/fuzz_regressions/ and replayed by the test suite.
"""

import argparse
import hashlib
import io
import os
import random
import signal
import sys
import tarfile
import tempfile
import time
import tracemalloc

from converter import check, dump, scan
from converter.builder import ImageBuilder
from converter.chain import ChainReader
from converter.convert import convert_image
from converter.errors import VhdError

REGRESSIONS = os.path.join(os.path.dirname(__file__), "fuzz_regressions")
MEMORY_BUDGET = 256 << 20
TIME_BUDGET = 20


class Budget(Exception):
    pass


def seed_members(seed=0):
    """Three small members (base, resize layer, leaf with partial blocks and a batmap)."""
    rnd = random.Random(seed)
    text = b"".join(b"line %d of the base disk\n" % i for i in range(70000))
    base = bytearray(text[:3 * 512 * 1024 + 512])
    base[4096:4096 + 2048] = rnd.randbytes(2048)
    b = ImageBuilder(bytes(base), block_size=512 * 1024)
    b.snapshot(size=b.size + 700 * 1024)
    b.write(1000, rnd.randbytes(3000))
    b.snapshot()
    b.write(b.size - 5000, rnd.randbytes(4000))
    with tempfile.TemporaryDirectory() as d:
        paths = b.write_members(d, batmap=True)
        return [open(p, "rb").read() for p in paths]


def archive(members, *, names=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as t:
        for i, data in enumerate(members):
            info = tarfile.TarInfo(names[i] if names else f"./{i}.vhd")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def mutate(data, rnd, count):
    """Byte flips, interesting integers and splices, biased to metadata (first 4 KiB, last 512)."""
    data = bytearray(data)
    for _ in range(count):
        if not data:
            break
        region = rnd.random()
        if region < 0.5:
            pos = rnd.randrange(min(len(data), 4096))
        elif region < 0.7:
            pos = max(0, len(data) - 1 - rnd.randrange(min(len(data), 512)))
        else:
            pos = rnd.randrange(len(data))
        kind = rnd.random()
        if kind < 0.5:
            data[pos] ^= 1 << rnd.randrange(8)
        elif kind < 0.8:
            value = rnd.choice((0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 31, 512, 4096))
            size = rnd.choice((1, 2, 4, 8))
            data[pos:pos + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "big")
        elif kind < 0.9:
            del data[pos:pos + rnd.randrange(1, 2048)]
        else:
            data[pos:pos] = rnd.randbytes(rnd.randrange(1, 600))
    return bytes(data)


def mutated_input(rnd, members):
    """(kind, bytes): a mutated member set packed as a tgz, or a mutated tgz itself."""
    if rnd.random() < 0.75:
        chosen = [mutate(m, rnd, rnd.randrange(1, 8)) if rnd.random() < 0.6 else m for m in members]
        order = list(range(len(chosen)))
        rnd.shuffle(order)
        return archive([chosen[i] for i in order], names=[f"./{i}.vhd" for i in order])
    return mutate(archive(members), rnd, rnd.randrange(1, 6))


def _alarm(signum, frame):
    raise Budget(f"took longer than {TIME_BUDGET} s")


def run_one(data):
    """Feed one tgz through every parser. Returns None, or a description of the bug found."""
    with tempfile.TemporaryDirectory(prefix="xen-vhd-fuzz-") as d:
        image = os.path.join(d, "in.tgz")
        with open(image, "wb") as f:
            f.write(data)
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(TIME_BUDGET)
        tracemalloc.start()
        try:
            for fn in (lambda: convert_image(image, os.path.join(d, "out.raw")),
                       lambda: check.check_image(image),
                       lambda: scan.scan_image(image),
                       lambda: dump.dump_image(image),
                       lambda: _read_some(image)):
                try:
                    fn()
                except VhdError as exc:
                    if "\n" in str(exc):
                        return f"multi-line error message: {exc!r}"
                _, peak = tracemalloc.get_traced_memory()
                if peak > MEMORY_BUDGET:
                    return f"allocated {peak >> 20} MiB (budget {MEMORY_BUDGET >> 20} MiB)"
        except Budget as exc:
            return str(exc)
        except Exception as exc:            # noqa: BLE001 - anything but VhdError is the bug we hunt
            return f"{type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
            tracemalloc.stop()
        leftovers = [n for n in os.listdir(d) if n not in ("in.tgz", "out.raw")]
        if leftovers:
            return f"left files behind: {leftovers}"
    return None


def _read_some(image):
    with ChainReader(image) as reader:
        reader.read(0, 4096)
        reader.read(max(0, reader.size - 4096), 4096)


def save_regression(data, problem):
    os.makedirs(REGRESSIONS, exist_ok=True)
    name = hashlib.sha256(data).hexdigest()[:16] + ".tgz"
    with open(os.path.join(REGRESSIONS, name), "wb") as f:
        f.write(data)
    with open(os.path.join(REGRESSIONS, name + ".txt"), "w") as f:
        f.write(problem + "\n")
    return name


def fuzz(seconds, seed=None, stop_on_failure=False):
    """Random mutation for ``seconds``; returns (executions, failures)."""
    rnd = random.Random(seed)
    members = seed_members()
    deadline = time.monotonic() + seconds
    executions, failures = 0, []
    while time.monotonic() < deadline:
        data = mutated_input(rnd, members)
        problem = run_one(data)
        executions += 1
        if problem:
            failures.append((save_regression(data, problem), problem))
            if stop_on_failure:
                break
    return executions, failures


def _atheris_main(seconds):   # pragma: no cover - only with atheris installed
    import atheris

    members = seed_members()

    def one(buf):
        rnd = random.Random(buf)
        data = mutated_input(rnd, members)
        problem = run_one(data)
        if problem:
            save_regression(data, problem)
            raise RuntimeError(problem)

    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}"], one)
    atheris.Fuzz()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int)
    p.add_argument("--atheris", action="store_true", help="coverage-guided with atheris (if installed)")
    p.add_argument("--replay", metavar="DIR", help="run every saved input in DIR and report")
    args = p.parse_args(argv)
    if args.replay:
        bad = 0
        for name in sorted(os.listdir(args.replay)):
            if name.endswith(".tgz"):
                with open(os.path.join(args.replay, name), "rb") as f:
                    problem = run_one(f.read())
                print(f"{name}: {problem or 'ok'}")
                bad += bool(problem)
        return 1 if bad else 0
    if args.atheris:
        _atheris_main(int(args.seconds))
        return 0
    t = time.monotonic()
    executions, failures = fuzz(args.seconds, args.seed)
    took = time.monotonic() - t
    print(f"{executions} executions in {took:.0f} s ({executions / took:.1f}/s), {len(failures)} failures")
    for name, problem in failures:
        print(f"  {name}: {problem}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

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

"""Conversion benchmark: the project's converter against named baselines, as ratios, in one run.

    python -m benchmarks.convert_bench [--quick] [--runs 5] [--json out.json]

Builds realistic chains with the project's own writer (disk-like content that compresses like
real disks: text, noise and zeros; partial blocks; 1-5 members; 64 MiB to 4 GiB virtual, plus
a 2 TiB sparse chain for memory), caches them, byte-compiles the converter (as an install
would), then measures side by side, interleaved (median of ``--runs`` rounds; chains that
convert in under a second get 3x as many):

  ours tgz->raw            xen-vhd convert IMAGE.tgz OUT.raw
  isal -d                  python -m isal.igzip -d -c IMAGE.tgz > /dev/null  (decompression floor)
  gzip -dc                 gzip -dc IMAGE.tgz > /dev/null
  rapidgzip -P N -d        rapidgzip -P N -d -c IMAGE.tgz > /dev/null  (parallel decompression,
                           N = the cores; when the rapidgzip package is installed)
  ours tgz->raw rapidgzip  XEN_VHD_GZIP=rapidgzip xen-vhd convert IMAGE.tgz OUT.raw
  tar+qemu-img             tar -xzf SINGLE.tgz + qemu-img convert -f vpc -O raw 0.vhd  (the seed
                           pipeline minus vhd-util, on a single-member image of the same disk)
  ours tgz->vhd            xen-vhd convert -f vhd IMAGE.tgz OUT.vhd
  ours dir->raw            xen-vhd convert EXTRACTED_DIR OUT.raw
  qemu-img vhd->raw        qemu-img convert -f vpc -O raw SINGLE.vhd  (equally sized single VHD)
  cinder path              upstream Cinder's replace_xenserver_image_with_coalesced_vhd (tar, then
                           vhd-util modify/resize/coalesce per link, xen-vhd-util as vhd-util) +
                           qemu-img convert -f vpc -O raw, timed inside the process after
                           Cinder's imports; peak RSS includes them (when cinder is installed)
  ours +progress           xen-vhd convert --progress (stderr to /dev/null), run right after
                           tgz->raw; its cost is the median ratio of at least 9 such pairs,
                           in wall and in CPU time, and (the only figure precise to 1 %) the
                           share of a --progress conversion spent in progress reporting,
                           timed inside the process

and reports peak RSS (GNU time, else wait4), CPU seconds (in the JSON) and the output's
allocated bytes (st_blocks) against the data allocated in the chain; and the fixed start-up
cost of each command (``--version``, median of 30), which dominates the smallest chain.

Every case starts after the previous outputs are deleted and ``sync`` has run, so that one
case's writeback does not land on the next.
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid

from converter.writer import VhdWriter

MIB = 1 << 20
BLOCK = 2 * MIB


@dataclasses.dataclass
class Shape:
    name: str
    virtual: int        # bytes
    members: int
    allocated: int      # approximate bytes written across members


SHAPES = [
    Shape("64M x1", 64 * MIB, 1, 40 * MIB),
    Shape("1G x3", 1 << 30, 3, 300 * MIB),
    Shape("4G x5", 4 << 30, 5, 700 * MIB),
]
QUICK = [Shape("64M x1", 64 * MIB, 1, 40 * MIB), Shape("1G x3", 1 << 30, 3, 200 * MIB)]
SPARSE = Shape("2T sparse x3", 2040 << 30, 3, 8 * MIB)
SMALL_ROUNDS = 3            # conversions under 1 s: this many times --runs
PROGRESS_PAIRS = 9          # at least this many (tgz->raw, +progress) pairs per chain


def disk_content(n, seed):
    """Disk-like bytes: text runs, random runs (already-compressed files) and zeros."""
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        run = rnd.choice((4096, 65536, 262144))
        k = rnd.random()
        if k < 0.30:
            out += rnd.randbytes(run)
        elif k < 0.80:
            line = b"/usr/lib/python3/dist-packages/module_%06d.py: def function_%d(): return %d\n" % (
                len(out), len(out) % 977, len(out))
            out += (line * (run // len(line) + 1))[:run]
        else:
            out += bytes(run)
    return bytes(out[:n])


def build_chain(shape, directory, seed=1):
    """Members 0.vhd (leaf) .. n.vhd (base) written with the project's writer; returns paths and data bytes."""
    rnd = random.Random(seed)
    blob = disk_content(64 * MIB, seed)
    n = shape.members
    uuids = [uuid.uuid4() for _ in range(n)]
    base_size = shape.virtual if n == 1 else max(shape.virtual // 16 // BLOCK * BLOCK, 8 * MIB)
    paths = [os.path.join(directory, f"{i}.vhd") for i in range(n)]
    share = shape.allocated // n
    data_bytes = 0

    def piece(off, length):
        start = off % (len(blob) - length)
        return blob[start:start + length]

    # Base: contiguous data from the start, like an installed OS.
    with VhdWriter(paths[n - 1], size=base_size, uuid=uuids[n - 1], hidden=n > 1) as w:
        for off in range(0, min(share if n > 1 else shape.allocated, base_size), BLOCK):
            w.write(off, piece(off, min(BLOCK, base_size - off)))
            data_bytes += min(BLOCK, base_size - off)
    for i in range(n - 2, -1, -1):
        size = shape.virtual
        with VhdWriter(paths[i], disk_type="differencing", size=size,
                       original_size=base_size if i == n - 2 else size, parent_uuid=uuids[i + 1],
                       uuid=uuids[i], hidden=i > 0) as w:
            left = share
            while left > 0:
                block = rnd.randrange(size // BLOCK)
                length = rnd.choice((BLOCK, BLOCK, 512 * 37, 64 * 1024, 512 * 1000))
                start = block * BLOCK + (0 if length == BLOCK else rnd.randrange(0, BLOCK - length, 512))
                w.write(start, piece(start, length))
                data_bytes += length
                left -= length
    return paths, data_bytes


def pack(tgz, paths, arcnames):
    """tar -zc style archive (GNU tar, './' root, gzip level 6 like tar -z; isal when present)."""
    try:
        from isal import igzip as gz
    except ImportError:  # pragma: no cover
        import gzip as gz
    with gz.open(tgz, "wb", compresslevel=2) as f, tarfile.open(fileobj=f, mode="w|", format=tarfile.GNU_FORMAT) as t:
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        t.addfile(root)
        for p, name in zip(paths, arcnames):
            t.add(p, arcname=name)


def prepare(shape, cache):
    key = f"{shape.name.replace(' ', '_')}-{shape.virtual}-{shape.members}-{shape.allocated}-v1"
    d = os.path.join(cache, key)
    done = os.path.join(d, "ready.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "members"))
    t = time.monotonic()
    paths, data_bytes = build_chain(shape, os.path.join(d, "members"))
    order = list(range(shape.members))
    random.Random(2).shuffle(order)                         # tar keeps directory order
    image = os.path.join(d, "image.tgz")
    pack(image, [paths[i] for i in order], [f"./{i}.vhd" for i in order])
    # The same disk as one VHD (for the qemu-img baselines), made by our coalescing.
    single_vhd = os.path.join(d, "single.vhd")
    subprocess.run([sys.executable, "-m", "converter.cli", "convert", "-f", "vhd", image, single_vhd], check=True,
                   stdout=subprocess.DEVNULL)
    single_dir = os.path.join(d, "single")
    os.makedirs(single_dir)
    os.link(single_vhd, os.path.join(single_dir, "0.vhd"))
    single_tgz = os.path.join(d, "single.tgz")
    pack(single_tgz, [os.path.join(single_dir, "0.vhd")], ["./0.vhd"])
    info = {"image": image, "members_dir": os.path.join(d, "members"), "single_vhd": single_vhd,
            "single_tgz": single_tgz, "data_bytes": data_bytes, "tgz_bytes": os.path.getsize(image),
            "build_seconds": round(time.monotonic() - t, 1)}
    with open(done, "w") as f:
        json.dump(info, f)
    return info


GNU_TIME = shutil.which("time", path="/usr/bin:/bin")
RAPIDGZIP = shutil.which("rapidgzip", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def timed(cmd, *, stdout=subprocess.DEVNULL, env=None):
    """(seconds, peak RSS bytes) of one command.

    Peak RSS comes from GNU time when installed: wait4's ru_maxrss of our own child would
    include this (large) benchmark process, whose pages the child has until it execs.
    """
    fd, report = tempfile.mkstemp(prefix="bench-rss-")
    os.close(fd)
    wrapped = [GNU_TIME, "-q", "-o", report, "-f", "%M", *cmd] if GNU_TIME else cmd
    t = time.monotonic()
    p = subprocess.Popen(wrapped, stdout=stdout, stderr=subprocess.DEVNULL,
                         env=None if env is None else {**os.environ, **env})
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.monotonic() - t
    code = os.waitstatus_to_exitcode(status)
    with open(report) as f:
        text = f.read().strip()
    os.unlink(report)
    if code:
        raise SystemExit(f"benchmark command failed ({code}): {' '.join(map(str, cmd))}")
    rss = int(text.splitlines()[-1]) * 1024 if GNU_TIME and text else usage.ru_maxrss * 1024
    timed.cpu = usage.ru_utime + usage.ru_stime      # of the last command, for the JSON
    return elapsed, rss


def xen_vhd(*args):
    """The installed command, as users run it (its console script, not ``python -m``)."""
    script = os.path.join(os.path.dirname(sys.executable), "xen-vhd")
    return [script, *args] if os.path.exists(script) else [sys.executable, "-m", "converter.cli", *args]


def measure(shape, info, work, runs):
    out_raw = os.path.join(work, "out.raw")
    out_vhd = os.path.join(work, "out.vhd")

    def clean():
        """Remove the last outputs and let the disk settle: the writeback of a previous case's
        output (and the discard of its freed blocks) must not slow the next case down."""
        for p in (out_raw, out_vhd):
            if os.path.exists(p):
                os.unlink(p)
        shutil.rmtree(os.path.join(work, "x"), ignore_errors=True)
        os.sync()

    def tar_qemu():
        x = os.path.join(work, "x")
        os.makedirs(x)
        a, rss_a = timed(["tar", "-xzf", info["single_tgz"], "-C", x])
        cpu_a = timed.cpu
        b, rss_b = timed(["qemu-img", "convert", "-f", "vpc", "-O", "raw", os.path.join(x, "0.vhd"), out_raw])
        timed.cpu += cpu_a
        return a + b, max(rss_a, rss_b)

    def cinder():
        return cinder_path(info["image"], work, out_raw)

    cases = {
        "ours tgz->raw": lambda: timed(xen_vhd("convert", info["image"], out_raw)),
        # Right after tgz->raw: the progress cost is the median of these pairs' ratios.
        "ours +progress": lambda: timed(xen_vhd("convert", "--progress", info["image"], out_raw)),
        "isal -d": lambda: timed([sys.executable, "-m", "isal.igzip", "-d", "-c", info["image"]]),
        "gzip -dc": lambda: timed(["gzip", "-dc", info["image"]]),
        "rapidgzip -P N -d": lambda: timed([RAPIDGZIP, "-P", str(CORES), "-d", "-c", info["image"]]),
        "ours tgz->raw rapidgzip": lambda: timed(xen_vhd("convert", info["image"], out_raw),
                                                 env={"XEN_VHD_GZIP": "rapidgzip"}),
        "tar+qemu-img": tar_qemu,
        "ours tgz->vhd": lambda: timed(xen_vhd("convert", "-f", "vhd", info["image"], out_vhd)),
        "ours dir->raw": lambda: timed(xen_vhd("convert", info["members_dir"], out_raw)),
        "qemu-img vhd->raw": lambda: timed(["qemu-img", "convert", "-f", "vpc", "-O", "raw", info["single_vhd"],
                                            out_raw]),
        "cinder path": cinder,
    }
    if not shutil.which("qemu-img"):
        for k in ("tar+qemu-img", "qemu-img vhd->raw", "cinder path"):
            cases.pop(k)
    if not CINDER:
        cases.pop("cinder path", None)
    if not RAPIDGZIP:
        for k in ("rapidgzip -P N -d", "ours tgz->raw rapidgzip"):
            cases.pop(k)
    samples = {k: [] for k in cases}
    cpu = {k: [] for k in cases}
    rss = {k: 0 for k in cases}
    allocated = None
    # Sub-second conversions are noisier in relative terms: they get more rounds (still
    # interleaved), decided after the first round.
    rounds = runs
    done = 0
    while done < rounds:
        done += 1
        for name, fn in cases.items():          # interleaved: drift hits every case alike
            clean()
            secs, peak = fn()
            samples[name].append(secs)
            cpu[name].append(timed.cpu)
            rss[name] = max(rss[name], peak)
            if name == "ours tgz->raw":
                allocated = os.stat(out_raw).st_blocks * 512
        if done == 1 and samples["ours tgz->raw"][0] < 1.0:
            rounds = runs * SMALL_ROUNDS
    # A 2% effect needs more than 3 samples: extra adjacent pairs for the progress cost only
    # (kept out of the medians above, which every case has the same number of).
    pairs = [p / o for o, p in zip(samples["ours tgz->raw"], samples["ours +progress"])]
    cpu_pairs = [p / o for o, p in zip(cpu["ours tgz->raw"], cpu["ours +progress"])]
    for _ in range(max(0, PROGRESS_PAIRS - rounds)):
        clean()
        plain, _ = cases["ours tgz->raw"]()
        plain_cpu = timed.cpu
        clean()
        with_bar, _ = cases["ours +progress"]()
        pairs.append(with_bar / plain)
        cpu_pairs.append(timed.cpu / plain_cpu)
    clean()
    med = {k: statistics.median(v) for k, v in samples.items()}
    ours = med["ours tgz->raw"]
    share = statistics.median(progress_share(info, work) for _ in range(3))
    ratios = {
        "tgz->raw / isal -d": ours / med["isal -d"],
        "tgz->raw / gzip -dc": ours / med["gzip -dc"],
        "tgz->vhd / isal -d": med["ours tgz->vhd"] / med["isal -d"],
        "+progress / tgz->raw": statistics.median(pairs),
        "+progress / tgz->raw (cpu)": statistics.median(cpu_pairs),   # less noisy on a shared machine
        "+progress in-process": 1 + share,       # time inside progress reporting, measured where it runs
    }
    if "rapidgzip -P N -d" in med:
        # The goal: <= 0.8 on 2 cores for chains >= 1 GiB.
        ratios["tgz->raw rapidgzip / isal -d"] = med["ours tgz->raw rapidgzip"] / med["isal -d"]
        ratios["rapidgzip -d / isal -d"] = med["rapidgzip -P N -d"] / med["isal -d"]
    if "cinder path" in med:
        ratios["cinder path / tgz->raw"] = med["cinder path"] / ours
    if "tar+qemu-img" in med:
        ratios["tgz->raw / tar+qemu-img"] = ours / med["tar+qemu-img"]
        ratios["dir->raw / qemu-img vhd->raw"] = med["ours dir->raw"] / med["qemu-img vhd->raw"]
    return {"shape": shape.name, "virtual_bytes": shape.virtual, "members": shape.members,
            "tgz_bytes": info["tgz_bytes"], "chain_data_bytes": info["data_bytes"],
            "output_allocated_bytes": allocated,
            "allocated_over_data": allocated / info["data_bytes"] if info["data_bytes"] else None,
            "median_seconds": med, "median_cpu_seconds": {k: statistics.median(v) for k, v in cpu.items()},
            "seconds": samples, "progress_ratios": pairs,
            "peak_rss_bytes": rss, "ratios": ratios, "runs": rounds, "progress_pairs": len(pairs)}


CINDER = importlib.util.find_spec("cinder") is not None

# Cinder's XenServer path as cinder-volume runs it for an image-backed volume: the tgz replaced
# in place by one coalesced VHD (tar, then vhd-util modify/resize/coalesce per link), then
# qemu-img to raw. Timed inside the process, after Cinder's imports (~4 s, paid once per
# cinder-volume, not per volume).
_CINDER_PATH = """
import os, subprocess, sys, time
from cinder.image import image_utils
image_utils.CONF.set_override("image_conversion_dir", sys.argv[2])
def cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
t, c = time.perf_counter(), cpu()
image_utils.replace_xenserver_image_with_coalesced_vhd(sys.argv[1])
subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", sys.argv[1], sys.argv[3]], check=True)
print(time.perf_counter() - t, cpu() - c)
"""


def cinder_path(image, work, out_raw):
    """(seconds, peak RSS) of Cinder's XenServer path on a copy of ``image``, with
    ``xen-vhd-util`` as its ``vhd-util``; the copy and Cinder's imports are not timed."""
    scratch = os.path.join(work, "cinder")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(os.path.join(scratch, "bin"))
    tool = os.path.join(os.path.dirname(sys.executable), "xen-vhd-util")
    with open(os.path.join(scratch, "bin", "vhd-util"), "w") as f:
        f.write(f"#!/bin/sh\nexec {tool if os.path.exists(tool) else sys.executable + ' -m converter.vhdutil'} "
                "\"$@\"\n")
    os.chmod(os.path.join(scratch, "bin", "vhd-util"), 0o755)
    copy = os.path.join(scratch, "image.tgz")
    shutil.copyfile(image, copy)
    os.sync()
    said = os.path.join(scratch, "said")
    try:
        with open(said, "w") as out:            # timed() gives the peak RSS; the script its own times
            _, rss = timed([sys.executable, "-c", _CINDER_PATH, copy, scratch, out_raw], stdout=out,
                           env={"PATH": os.path.join(scratch, "bin") + os.pathsep + os.environ.get("PATH", "")})
        with open(said) as f:
            seconds, timed.cpu = map(float, f.read().split()[-2:])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return seconds, rss


_PROGRESS_SHARE = """
import os, sys, time
from converter import cli, convert
spent = 0.0
report = convert.Progress.__call__
def timed(self, done):
    global spent
    t = time.perf_counter()
    report(self, done)
    spent += time.perf_counter() - t
convert.Progress.__call__ = timed          # the adapter, and the bar it calls
sys.stderr = open(os.devnull, "w")
t = time.perf_counter()
cli.main(["convert", "--progress", sys.argv[1], sys.argv[2]])
print(spent / (time.perf_counter() - t))
"""


def progress_share(info, work):
    """Share of a --progress conversion's wall time spent in progress reporting, timed inside
    the process: the wall-clock pairs above cannot resolve 2 % on a noisy machine."""
    out = os.path.join(work, "share.raw")
    try:
        run = subprocess.run([sys.executable, "-c", _PROGRESS_SHARE, info["image"], out], check=True,
                             capture_output=True, text=True)
    finally:
        if os.path.exists(out):
            os.unlink(out)
    return float(run.stdout.strip().splitlines()[-1])


def sparse_memory(cache, work):
    """Peak RSS converting a 2 TiB chain with a few MiB of data (memory must not follow the size)."""
    info = prepare(SPARSE, cache)
    out = os.path.join(work, "sparse.raw")
    secs, peak = timed(xen_vhd("convert", info["image"], out))
    os.unlink(out)
    return {"shape": SPARSE.name, "virtual_bytes": SPARSE.virtual, "seconds": secs, "peak_rss_bytes": peak}


def startup_costs(samples=30):
    """Median wall seconds of commands that do nothing: the fixed cost in every conversion."""
    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                "xen-vhd --version": xen_vhd("--version"),
                "python -m isal.igzip --help": [sys.executable, "-m", "isal.igzip", "--help"]}
    if shutil.which("qemu-img"):
        commands["qemu-img --version"] = ["qemu-img", "--version"]
    out = {}
    for name, cmd in commands.items():
        times = []
        for _ in range(samples):
            t = time.monotonic()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times.append(time.monotonic() - t)
        out[name] = statistics.median(times)
    return out


def compile_package():
    """Byte-compile the converter as pip does at install time. Without it, a run under
    PYTHONDONTWRITEBYTECODE (set here) compiles every module at each start (~30 ms), which
    an installed xen-vhd never does; the baselines' own Python modules are compiled already."""
    import converter

    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.dirname(converter.__file__)], check=True,
                   stdout=subprocess.DEVNULL)


def machine():
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "gzip_backend": __import__("converter.gzstream", fromlist=["BACKEND"]).BACKEND,
            "load_average_at_end": os.getloadavg()}     # other work on the machine skews every ratio


def print_table(results, sparse, startup):
    print(f"\n{'chain':<14}{'tgz MiB':>9}{'data MiB':>10}{'ours s':>8}{'isal s':>8}{'gzip s':>8}"
          f"{'tar+qemu s':>11}{'vhd s':>7}{'dir s':>7}{'qemu s':>8}{'cinder s':>9}{'RSS MiB':>9}{'alloc/data':>11}")
    nan = float("nan")
    for r in results:
        m = r["median_seconds"]
        print(f"{r['shape']:<14}{r['tgz_bytes'] / MIB:9.0f}{r['chain_data_bytes'] / MIB:10.0f}"
              f"{m['ours tgz->raw']:8.2f}{m['isal -d']:8.2f}{m['gzip -dc']:8.2f}"
              f"{m.get('tar+qemu-img', nan):11.2f}{m['ours tgz->vhd']:7.2f}{m['ours dir->raw']:7.2f}"
              f"{m.get('qemu-img vhd->raw', nan):8.2f}{m.get('cinder path', nan):9.2f}"
              f"{r['peak_rss_bytes']['ours tgz->raw'] / MIB:9.0f}"
              f"{r['allocated_over_data']:11.3f}")
    print("\nratios (median of runs; lower is better for ours):")
    names = list(results[0]["ratios"])
    widths = [len(n) + 3 for n in names]
    print(f"{'':<14}" + "".join(f"{n:>{w}}" for n, w in zip(names, widths)))
    for r in results:
        print(f"{r['shape']:<14}" + "".join(f"{r['ratios'][n]:{w}.2f}" for n, w in zip(names, widths)))
    print("\nstart-up (median of 30, ms): " + ", ".join(f"{k} {v * 1000:.0f}" for k, v in startup.items()))
    if sparse:
        print(f"\n{sparse['shape']}: {sparse['seconds']:.2f} s, peak RSS {sparse['peak_rss_bytes'] / MIB:.0f} MiB")
    print("load average at the end (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smaller chains (CI-sized)")
    p.add_argument("--cache", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                                   "xen-vhd-tempest", "bench"))
    p.add_argument("--work", default=None, help="scratch directory for outputs (default: next to the cache)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    os.makedirs(args.cache, exist_ok=True)
    work = args.work or os.path.join(args.cache, "work")
    os.makedirs(work, exist_ok=True)
    shapes = QUICK if args.quick else SHAPES
    compile_package()
    results = []
    for shape in shapes:
        print(f"[bench] {shape.name}: preparing", file=sys.stderr, flush=True)
        info = prepare(shape, args.cache)
        print(f"[bench] {shape.name}: measuring ({args.runs} runs)", file=sys.stderr, flush=True)
        results.append(measure(shape, info, work, args.runs))
    sparse = sparse_memory(args.cache, work)
    startup = startup_costs()
    doc = {"machine": machine(), "results": results, "sparse": sparse, "startup_seconds": startup}
    print_table(results, sparse, startup)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

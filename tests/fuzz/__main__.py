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

"""Runner: each target in its own libFuzzer process; executions, time, execs/s, cov and ft."""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

REGRESSIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fuzz_regressions")
_DONE = re.compile(rb"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)")
_STAT = re.compile(rb"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)")


def run_target(name, runs=None, seconds=None, timeout=5, rss_mb=1024):
    """Fuzz ``name``; returns dict(target, execs, seconds, rate, cov, ft, rc, crashes)."""
    from tests.fuzz.targets import TARGETS
    _, seeds = TARGETS[name]
    crash_dir = os.path.join(REGRESSIONS, name)
    os.makedirs(crash_dir, exist_ok=True)
    before = set(os.listdir(crash_dir))
    with tempfile.TemporaryDirectory(prefix=f"xen-vhd-fuzz-{name}-") as corpus:
        for i, seed in enumerate(seeds()):
            with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
                f.write(seed)
        args = [sys.executable, "-m", "tests.fuzz.worker", name, corpus, f"-timeout={timeout}",
                f"-rss_limit_mb={rss_mb}", f"-artifact_prefix={crash_dir}/", "-print_final_stats=1",
                "-max_len=131072"]
        if runs is not None:
            args.append(f"-runs={runs}")
        if seconds is not None:
            args.append(f"-max_total_time={int(seconds)}")
        t = time.monotonic()
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        took = time.monotonic() - t
    err = proc.stderr
    m = _DONE.search(err) or (list(_STAT.finditer(err)) or [None])[-1]
    execs, cov, ft = (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (0, 0, 0)
    crashes = sorted(set(os.listdir(crash_dir)) - before)
    if not os.listdir(crash_dir):
        os.rmdir(crash_dir)
    return {"target": name, "execs": execs, "seconds": took, "rate": execs / took if took else 0,
            "cov": cov, "ft": ft, "rc": proc.returncode, "crashes": crashes,
            "tail": err.decode(errors="replace").splitlines()[-25:] if proc.returncode else []}


def main(argv=None):
    from tests.fuzz.targets import TARGETS
    p = argparse.ArgumentParser(description="coverage-guided fuzzing of the converter (atheris)")
    p.add_argument("--target", default="all", help="one of: all, " + ", ".join(TARGETS))
    p.add_argument("--runs", type=int, help="executions per target")
    p.add_argument("--seconds", type=float, help="time per target")
    p.add_argument("--total-runs", type=int, help="executions over all targets (split evenly)")
    args = p.parse_args(argv)
    names = list(TARGETS) if args.target == "all" else [args.target]
    if any(n not in TARGETS for n in names):
        p.error(f"unknown target {args.target!r}")
    runs = args.runs
    if args.total_runs:
        runs = -(-args.total_runs // len(names))
    if runs is None and args.seconds is None:
        args.seconds = 10
    total, bad = 0, 0
    for name in names:
        r = run_target(name, runs, args.seconds)
        total += r["execs"]
        bad += bool(r["rc"] or r["crashes"])
        print(f"{name:14} {r['execs']:>9} execs {r['seconds']:7.1f} s {r['rate']:8.0f}/s "
              f"cov {r['cov']:5} ft {r['ft']:6}  {'CRASH ' + ' '.join(r['crashes']) if r['rc'] else 'ok'}",
              flush=True)
        for line in r["tail"]:
            print("    " + line)
    print(f"total {total} executions, {bad} target(s) failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

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

"""Each coverage-guided fuzz target for a few seconds, and every crasher it ever saved."""

import os
import signal

import pytest

from converter.errors import VhdError
from tests.fuzz import __main__ as runner  # noqa: E402
from tests.fuzz.targets import TARGETS  # noqa: E402


def saved_crashers(name):
    d = os.path.join(runner.REGRESSIONS, name)
    return [os.path.join(d, f) for f in sorted(os.listdir(d))] if os.path.isdir(d) else []


def _alarm(signum, frame):
    raise TimeoutError("a saved fuzz input hangs")


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_and_saved_crashers_only_raise_vhd_errors(name):
    """Replays the builder's seeds and every crasher a fuzz run ever kept for this target."""
    inputs = [(f"seed {i}", data) for i, data in enumerate(TARGETS[name][1]())]
    for path in saved_crashers(name):
        with open(path, "rb") as f:
            inputs.append((path, f.read()))
    assert inputs, f"{name} has no seed corpus"
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for label, data in inputs:
            signal.alarm(5)
            try:
                TARGETS[name][0](data)
            except VhdError as exc:
                assert "\n" not in str(exc), label
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_only_raises_vhd_errors(name, monkeypatch, tmp_path):
    # New crashers land in a scratch directory during the suite; tox -e fuzz keeps them.
    monkeypatch.setattr(runner, "REGRESSIONS", str(tmp_path))
    r = runner.run_target(name, seconds=float(os.environ.get("XEN_VHD_FUZZ_TARGET_SECONDS", "3")))
    assert r["rc"] == 0 and not r["crashes"], "\n".join(r["tail"])
    assert r["execs"] > 100 and r["cov"] > 0

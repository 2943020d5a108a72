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

"""How the story polls and which md5sum the guest runs (the scenario's time goes here)."""

from __future__ import annotations

import itertools
import shutil
import subprocess

import pytest

from xen_vhd_tempest.scenario import story, waiters


def test_polls_come_quickly_first_then_every_interval():
    assert list(itertools.islice(waiters.poll_delays(2.0), 6)) == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert list(itertools.islice(waiters.poll_delays(0.1), 3)) == [0.1, 0.1, 0.1]


def test_a_quick_transition_costs_a_quarter_second_not_a_full_interval(monkeypatch):
    slept = []
    monkeypatch.setattr(waiters.time, "sleep", slept.append)
    states = iter(["creating", "available"])
    got = waiters.wait_for("volume v", lambda: next(states), ready=lambda s: s == "available", timeout=60)
    assert got == "available"
    assert slept == [0.25]


def test_a_wait_still_times_out(monkeypatch):
    monkeypatch.setattr(waiters.time, "sleep", lambda s: None)
    clock = itertools.count(0, 10)
    monkeypatch.setattr(waiters.time, "monotonic", lambda: next(clock))
    with pytest.raises(waiters.WaitTimeout, match="still creating after 30s"):
        waiters.wait_for("volume v", lambda: "creating", ready=lambda s: False, timeout=30)


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox not installed")
def test_the_guest_runs_an_installed_md5sum_by_path_under_busybox_sh():
    # busybox sh prefers its applet for a bare `md5sum`; the story names the file.
    out = subprocess.run(["busybox", "sh", "-c", story.MD5SUM + 'echo "$m"; $m --version | head -1'],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] in ("/usr/bin/md5sum", "/bin/md5sum")
    assert "GNU coreutils" in out[1]
    bare = subprocess.run(["busybox", "sh", "-c", "md5sum --help 2>&1 | head -1"],
                          capture_output=True, text=True).stdout
    assert "BusyBox" in bare, "busybox sh ran a bare md5sum from PATH: the by-path choice is moot here"

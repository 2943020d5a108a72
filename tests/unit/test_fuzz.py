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

"""A bounded fuzz run in every test session, and every input fuzzing ever broke us with."""

import os

import pytest

from tests import fuzzing


def regression_inputs():
    if not os.path.isdir(fuzzing.REGRESSIONS):
        return []
    return sorted(n for n in os.listdir(fuzzing.REGRESSIONS) if n.endswith(".tgz"))


@pytest.mark.parametrize("name", regression_inputs())
def test_saved_crashers_stay_fixed(name):
    with open(os.path.join(fuzzing.REGRESSIONS, name), "rb") as f:
        assert fuzzing.run_one(f.read()) is None


def test_mutated_images_only_raise_vhd_errors(monkeypatch, tmp_path):
    # New crashers go to a scratch directory during the suite; the long run (tox -e fuzz) keeps them.
    monkeypatch.setattr(fuzzing, "REGRESSIONS", str(tmp_path))
    executions, failures = fuzzing.fuzz(seconds=float(os.environ.get("XEN_VHD_FUZZ_SECONDS", "20")), seed=1234)
    assert executions > 20
    assert not failures, failures[:3]

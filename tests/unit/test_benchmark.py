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

"""The shipped benchmark runs end to end on a tiny chain and reports what the issue asks for
(no timing is asserted here: speed lives in the benchmark's own ratios)."""

import json

from benchmarks import convert_bench as bench


def test_tiny_chain_measures_every_case(tmp_path, capsys):
    shape = bench.Shape("8M x2", 8 << 20, 2, 4 << 20)
    info = bench.prepare(shape, str(tmp_path / "cache"))
    assert bench.prepare(shape, str(tmp_path / "cache")) == info          # cached
    work = tmp_path / "work"
    work.mkdir()
    result = bench.measure(shape, info, str(work), runs=1)
    assert set(result["median_seconds"]) == {"ours tgz->raw", "ours +progress", "isal -d", "gzip -dc",
                                             "tar+qemu-img", "ours tgz->vhd", "ours dir->raw",
                                             "qemu-img vhd->raw"} | (
        {"rapidgzip -P N -d", "ours tgz->raw rapidgzip"} if bench.RAPIDGZIP else set()) | {"cinder path"}
    assert bench.CINDER and "cinder path / tgz->raw" in result["ratios"]   # the test extra installs it
    if bench.RAPIDGZIP:
        assert "tgz->raw rapidgzip / isal -d" in result["ratios"]
    assert all(r > 0 for r in result["ratios"].values())
    # The output holds no more than the chain's data (zero runs even become holes).
    assert 0 < result["output_allocated_bytes"] <= result["chain_data_bytes"] * 1.01
    assert 0 < result["peak_rss_bytes"]["ours tgz->raw"] < 100 << 20
    assert result["progress_pairs"] >= bench.PROGRESS_PAIRS
    assert isinstance(result["ratios"]["+progress in-process"], float)    # timed; its cost is the benchmark's
    assert not list(work.iterdir())                                        # outputs cleaned up
    bench.print_table([result], None, {"python -c pass": 0.01})
    out = capsys.readouterr().out
    assert "8M x2" in out and "dir->raw / qemu-img vhd->raw" in out
    json.dumps(result)

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

"""Coverage-guided in-process fuzz targets (atheris/libFuzzer), one per parser and operation.

Each target takes bytes and may only raise ``converter.errors.VhdError``; libFuzzer counts any
other exception, a hang (``-timeout``) or an RSS beyond ``-rss_limit_mb`` as a crash and saves
the input under tests/fuzz_regressions/<target>/, which tests/unit/test_fuzz_targets.py replays.

    python -m tests.fuzz --target all --seconds 60
    python -m tests.fuzz --target footer --runs 100000
"""

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

"""One libFuzzer process: ``python -m tests.fuzz.worker NAME CORPUS [libFuzzer flags]``."""

import sys

import atheris

with atheris.instrument_imports(include=["converter"]):
    from converter.errors import VhdError
    from tests.fuzz.targets import TARGETS


def main():
    name = sys.argv[1]
    target = TARGETS[name][0]

    def one(data):
        try:
            target(data)
        except VhdError as exc:
            if "\n" in str(exc):
                raise AssertionError(f"multi-line error message: {exc!r}") from None

    atheris.Setup([sys.argv[0]] + sys.argv[3:] + [sys.argv[2]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

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

"""One error family: every input the converter rejects raises a VhdError.

The message is one line that names where (file, member), what (field) and why, so the CLI can
print it as is and exit 1 without a traceback.
"""


class VhdError(Exception):
    """Base of every rejection of user input. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, where, detail=None, *, field=None):
        self.where = where
        self.field = field
        self.detail = detail
        parts = [str(p) for p in (where, field, detail) if p]
        super().__init__(": ".join(parts))


class FormatError(VhdError):
    """A VHD structure is malformed (cookie, checksum, offsets, sizes)."""


class ChainError(VhdError):
    """Members do not form a valid chain (gaps, types, parent UUIDs, loops)."""


class ArchiveError(VhdError):
    """The container is not a usable XenServer image (gzip, tar, member names and types)."""


class OutputError(VhdError):
    """The output cannot be written where the user asked."""


class UsageError(VhdError):
    """The command line is wrong."""

    exit_code = 2

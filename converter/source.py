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

"""Byte sources a VHD member is read from: a file (random access) or a tar stream (forward only).

Both offer ``read_at(offset, n)``; a forward-only source refuses to go back, which is what
makes single-pass conversion of a tgz possible without extracting members.
"""

import os

from converter.errors import FormatError

SKIP_CHUNK = 1 << 20


class FileSource:
    """A VHD file (or block device) on disk, read with pread."""

    streaming = False

    def __init__(self, path, where=None):
        self.path = os.fspath(path)
        self.where = where or self.path
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise FormatError(self.where, f"cannot open: {exc.strerror}") from None
        self.size = os.lseek(self.fd, 0, os.SEEK_END)

    def read_at(self, offset, n):
        if offset < 0 or offset + n > self.size:
            raise FormatError(self.where, f"file ends at byte {self.size}; {n} bytes at {offset} are missing "
                              "(truncated file?)")
        data = os.pread(self.fd, n, offset)
        if len(data) != n:
            raise FormatError(self.where, f"short read of {n} bytes at {offset}")
        return data

    def read_into(self, offset, view):
        """Fill the writable buffer ``view`` from ``offset`` (no new allocation)."""
        n = len(view)
        if offset < 0 or offset + n > self.size:
            raise FormatError(self.where, f"file ends at byte {self.size}; {n} bytes at {offset} are missing "
                              "(truncated file?)")
        if os.preadv(self.fd, [view], offset) != n:
            raise FormatError(self.where, f"short read of {n} bytes at {offset}")

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StreamSource:
    """A member of a tar stream: ``size`` bytes readable once, in increasing offsets."""

    streaming = True

    def __init__(self, read, size, where, readinto=None):
        self._read = read          # read(n) -> up to n bytes of this member's data
        self._readinto = readinto  # readinto(view) -> count, the same without a new buffer
        self.size = size
        self.where = where
        self.pos = 0

    def _take(self, n):
        parts = []
        want = n
        while want:
            piece = self._read(want)
            if not piece:
                raise FormatError(self.where, f"archive ends {want} bytes early inside this member "
                                  "(truncated archive?)")
            parts.append(piece)
            want -= len(piece)
        self.pos += n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def read_at(self, offset, n):
        self._seek(offset, n)
        return self._take(n)

    def _seek(self, offset, n):
        """Skip forward to ``offset``, refusing to go back or past the member's end."""
        if offset < self.pos:
            raise FormatError(self.where, f"needs bytes at {offset} after reading up to {self.pos}: its "
                              "metadata is not in file order, so it cannot be converted from a stream; "
                              "extract the archive and convert the directory")
        if offset + n > self.size:
            raise FormatError(self.where, f"member is {self.size} bytes; {n} bytes at {offset} are missing "
                              "(truncated member?)")
        self.skip_to(offset)

    def read_into(self, offset, view):
        """Fill the writable buffer ``view`` with the bytes at ``offset`` (read_at without a new buffer)."""
        n = len(view)
        if self._readinto is None:
            view[:] = self.read_at(offset, n)
            return
        self._seek(offset, n)
        done = 0
        while done < n:
            got = self._readinto(view[done:])
            if not got:
                raise FormatError(self.where, f"archive ends {n - done} bytes early inside this member "
                                  "(truncated archive?)")
            done += got
        self.pos += n

    def skip_to(self, offset):
        while self.pos < offset:
            self._take(min(SKIP_CHUNK, offset - self.pos))

    def drain(self):
        self.skip_to(self.size)

    def close(self):
        pass

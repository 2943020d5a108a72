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

    def __init__(self, read, size, where):
        self._read = read          # read(n) -> up to n bytes of this member's data
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
        if offset < self.pos:
            raise FormatError(self.where, f"needs bytes at {offset} after reading up to {self.pos}: its "
                              "metadata is not in file order, so it cannot be converted from a stream; "
                              "extract the archive and convert the directory")
        if offset + n > self.size:
            raise FormatError(self.where, f"member is {self.size} bytes; {n} bytes at {offset} are missing "
                              "(truncated member?)")
        self.skip_to(offset)
        return self._take(n)

    def skip_to(self, offset):
        while self.pos < offset:
            self._take(min(SKIP_CHUNK, offset - self.pos))

    def drain(self):
        self.skip_to(self.size)

    def close(self):
        pass

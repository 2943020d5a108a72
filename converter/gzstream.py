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

"""A gzip decompressing reader for tgz streams.

ISA-L (package ``isal``) is used when installed: it decompresses ~3x faster than zlib.
Decompression runs inline: a reader thread was measured slower here (the GIL and the copies
to hand pieces across cost more than the overlap gained). Multi-member gzip files are read
whole; every library error becomes an ArchiveError naming the file.

``XEN_VHD_GZIP`` chooses the decoder: ``isal`` / ``zlib`` (one thread, in this process) or
``rapidgzip`` (package ``rapidgzip``: one gzip stream decoded by ``XEN_VHD_GZIP_THREADS``
threads, default all cores). The default is the one-thread decoder: measured on 2 cores,
a conversion through rapidgzip's Python file API took 1.49x isal's decompression time
(through isal: 1.16x) and its chunk buffers took peak RSS to 169-200 MiB (see README).
"""

import os

from converter.errors import ArchiveError

try:                                  # pragma: no cover - depends on the environment
    from isal import igzip as _gzip
    from isal.isal_zlib import error as _InflateError
    BACKEND = "isal"
except ImportError:                   # pragma: no cover
    import gzip as _gzip
    from zlib import error as _InflateError
    BACKEND = "zlib"

GZIP_MAGIC = b"\x1f\x8b"
DECODERS = ("auto", "isal", "zlib", "rapidgzip")
# rapidgzip's unit of parallel work; its memory is a few of these per thread (4 MiB, its
# default, measured 490 MiB peak; 1 MiB 190 MiB; 512 KiB 135 MiB and slower).
PARALLEL_CHUNK = 1 << 20


def choose_decoder(where, environ=os.environ):
    """(decoder, threads) from XEN_VHD_GZIP / XEN_VHD_GZIP_THREADS; ArchiveError on bad values."""
    name = environ.get("XEN_VHD_GZIP", "auto").strip().lower() or "auto"
    if name not in DECODERS:
        raise ArchiveError(where, f"XEN_VHD_GZIP={name!r} is not one of {', '.join(DECODERS)}")
    raw = environ.get("XEN_VHD_GZIP_THREADS", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ArchiveError(where, f"XEN_VHD_GZIP_THREADS={raw!r} is not a positive number of threads")
        threads = int(raw)
    else:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if name == "zlib" and BACKEND != "zlib":
        return "zlib", 1
    if name in ("auto", "isal", "zlib"):
        return BACKEND, 1               # isal asked for but absent: zlib, the same bytes
    return "rapidgzip", threads


def open_reader(fileobj, where, environ=os.environ):
    """The decompressing reader ``XEN_VHD_GZIP`` asks for (see the module docstring)."""
    decoder, threads = choose_decoder(where, environ)
    if decoder == "rapidgzip":
        return ParallelGzipReader(fileobj, where, threads)
    if decoder == "zlib" and BACKEND != "zlib":
        import gzip
        import zlib
        return GzipReader(fileobj, where, gzip, zlib.error)
    return GzipReader(fileobj, where)


def _readinto(gz):
    """GzipFile.readinto is io.BufferedIOBase's: read() a new bytes object, then copy it. The
    file's own BufferedReader (``_buffer``, what read() uses too) reads large requests straight
    into the caller's buffer; fall back to the public method should it ever go."""
    inner = getattr(gz, "_buffer", None)
    return inner.readinto if hasattr(inner, "readinto") else gz.readinto


def _check_magic(file, where):
    head = file.read(2)
    if not head:
        raise ArchiveError(where, "empty file: not a gzip-compressed XenServer image")
    if head != GZIP_MAGIC:
        raise ArchiveError(where, "not gzip data (a XenServer image is a .tgz: tar -zc of the VHDs)")
    file.seek(-2, 1)


class GzipReader:
    """``read(n)`` returns up to n decompressed bytes; b"" at the end of the gzip data."""

    def __init__(self, fileobj, where, library=None, inflate_error=None):
        self.where = where
        self._file = fileobj
        self._gz = None
        self._produced = 0
        self._lib = library or _gzip
        self._inflate_error = inflate_error or _InflateError

    def _open(self):
        _check_magic(self._file, self.where)
        return self._lib.GzipFile(fileobj=self._file, mode="rb")

    def _inflate(self, step):
        """``step(gzipfile)`` with the library's errors turned into ArchiveErrors."""
        if self._gz is None:
            self._gz = self._open()
        try:
            return step(self._gz)
        except self._lib.BadGzipFile as exc:
            if self._produced and "Not a gzipped file" in str(exc):
                # gzip -d warns "trailing garbage ignored" and exits 2; the reader has already
                # dropped that call's data, so the only honest answer is to refuse.
                raise ArchiveError(self.where, "unexpected bytes after the end of the gzip stream "
                                   "(trailing garbage appended to the .tgz)") from None
            raise ArchiveError(self.where, f"corrupt gzip data: {exc}") from None
        except EOFError:
            raise ArchiveError(self.where, "the gzip stream is truncated (the file ends inside it)") from None
        except (OSError, ValueError, self._inflate_error) as exc:   # inflate errors, bad CRC
            raise ArchiveError(self.where, f"corrupt gzip data: {exc}") from None

    def read(self, n):
        piece = self._inflate(lambda gz: gz.read(n))
        self._produced += len(piece)
        return piece

    def readinto(self, view):
        """Fill ``view`` with decompressed bytes; returns how many (fewer only at the end).
        No new buffer per call: conversion reads every block into the same one."""
        n = self._inflate(lambda gz: _readinto(gz)(view))
        self._produced += n
        return n

    def close(self):
        if self._gz is not None:
            self._gz.close()


class ParallelGzipReader:
    """GzipReader's interface over rapidgzip: one gzip stream decoded by ``threads`` threads.

    rapidgzip reads the file itself (by descriptor: no Python call per read). Its threads
    must be joined before the interpreter exits, so ``close`` is always called (archive's
    open_source does). A truncated stream is not an error to rapidgzip (it returns what it
    decoded); the tar layer then refuses the short archive.
    """

    def __init__(self, fileobj, where, threads):
        self.where = where
        self._file = fileobj
        self._threads = threads
        self._gz = None
        self._produced = 0

    def _inflate(self, step):
        if self._gz is None:
            _check_magic(self._file, self.where)
            import rapidgzip  # here: only parallel tgz conversions pay for its import (~2 ms)

            try:
                self._gz = rapidgzip.RapidgzipFile(self._file.fileno(), parallelization=self._threads,
                                                   chunk_size=PARALLEL_CHUNK)
            except Exception as exc:      # rapidgzip raises ValueError/RuntimeError with C++ text
                raise ArchiveError(self.where, f"corrupt gzip data: {_first_line(exc)}") from None
        try:
            return step(self._gz)
        except Exception as exc:
            if "gzip/zlib header" in str(exc):
                # rapidgzip finds it reading ahead, before the data in front is handed out: the
                # file began with a gzip magic, so a later member header, or garbage after the end.
                raise ArchiveError(self.where, "a gzip member header does not parse: unexpected bytes after "
                                   "the end of the gzip stream (trailing garbage appended to the .tgz?)") from None
            raise ArchiveError(self.where, f"corrupt gzip data: {_first_line(exc)}") from None

    def read(self, n):
        piece = self._inflate(lambda gz: gz.read(n))
        self._produced += len(piece)
        return piece

    def readinto(self, view):
        n = self._inflate(lambda gz: gz.readinto(view))
        self._produced += n
        return n

    def close(self):
        if self._gz is not None:
            self._gz.close()
            self._gz = None


def _first_line(exc):
    """rapidgzip's messages carry thread ids and internal offsets after the reason."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.split("] ")[-1] if text.startswith("[") else text
    return text[:160]

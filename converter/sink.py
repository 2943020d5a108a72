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

"""Where converted bytes go.

A sink takes ``write(offset, data)``, ``zero(offset, length, prev)`` and ``finish(size)``.
``zero`` with ``prev`` false is a region nothing was written to: a new file leaves a hole; a
block device (whose old contents are not zero) must really zero it, so it sets
``needs_zeroing`` and the compositor also hands it every range no layer supplied.

``Output`` (``with Output(path) as out``) picks the sink for a path (``FileSink``, or
``DeviceSink`` for a block device) and makes the result appear only when complete: a regular
file is written under a temporary name in the same directory and renamed at the end; on failure
the temporary file is removed and an existing file is left as it was.
"""

import contextlib
import errno
import fcntl
import os
import stat
import struct
import sys
import threading
from collections import deque

from converter.errors import OutputError
from converter.fsutil import make_temp, umask_mode

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_ZERO_CHUNK = bytes(1 << 20)

_fallocate = False                    # not looked up yet; None: unavailable


def _libc_fallocate():
    """libc's fallocate, looked up on first use: ctypes and find_library (which runs
    ldconfig) would otherwise cost every conversion ~15 ms of start-up."""
    global _fallocate
    if _fallocate is False:
        import ctypes
        import ctypes.util

        try:
            try:
                libc = ctypes.CDLL("libc.so.6", use_errno=True)
            except OSError:             # pragma: no cover - non-glibc platforms
                libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            _fallocate = libc.fallocate
            _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        except (OSError, AttributeError, TypeError):   # pragma: no cover
            _fallocate = None
    return _fallocate


def write_zeros(fd, offset, length):
    while length:
        n = min(length, len(_ZERO_CHUNK))
        os.pwrite(fd, _ZERO_CHUNK[:n], offset)
        offset += n
        length -= n


_BLKZEROOUT = 0x127F


def zero_device_range(fd, offset, length):
    """Zero a block device range: BLKZEROOUT where the device supports it, else write zeros."""
    try:
        fcntl.ioctl(fd, _BLKZEROOUT, struct.pack("QQ", offset, length))
        return
    except OSError:
        pass
    write_zeros(fd, offset, length)


def punch_hole(fd, offset, length):
    """Deallocate a range of a regular file (reads as zero); write zeros where unsupported."""
    fallocate = _libc_fallocate()
    if fallocate is not None and fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return
    write_zeros(fd, offset, length)


class FileSink:
    """A new regular file: zero runs become holes, the size is set at the end."""

    needs_zeroing = False

    def __init__(self, fd, where):
        self.fd = fd
        self.where = where
        self.bytes_written = 0
        self.reserved = 0

    def write(self, offset, data):
        try:
            os.pwrite(self.fd, data, offset)
        except OSError as exc:
            raise OutputError(self.where, f"write failed: {exc.strerror}") from None
        self.bytes_written += len(data)

    def zero(self, offset, length, prev):
        if prev:
            punch_hole(self.fd, offset, length)

    def reserve(self, size):
        """The result will be at least ``size`` bytes: set the file size now, because writes
        that extend a file cost ext4 several times more than writes inside it (measured)."""
        if size > self.reserved:
            os.ftruncate(self.fd, size)
            self.reserved = size

    def finish(self, size):
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise OutputError(self.where, f"cannot set the size to {size}: {exc.strerror}") from None


class DeviceSink(FileSink):
    """A block device (or any target whose unwritten bytes are not zero)."""

    needs_zeroing = True

    def __init__(self, fd, where, capacity):
        super().__init__(fd, where)
        self.capacity = capacity

    def write(self, offset, data):
        if offset + len(data) > self.capacity:
            raise OutputError(self.where, f"the disk needs at least {offset + len(data)} bytes but the device "
                              f"holds {self.capacity}")
        super().write(offset, data)

    def zero(self, offset, length, prev):
        end = min(offset + length, self.capacity)
        if end > offset:
            zero_device_range(self.fd, offset, end - offset)

    def reserve(self, size):
        pass                                  # a device has its size

    def finish(self, size):
        if size > self.capacity:
            raise OutputError(self.where, f"the disk is {size} bytes but the device holds {self.capacity}")


class WriteBehind:
    """A FileSink whose writes run on a second thread, in the order they were made.

    pwrite into the page cache costs a third of converting extracted files; on its own thread
    (the GIL is released during the call) it overlaps with the pread of the next blocks, which
    releases the GIL too. Blocks are read into ``buffer(n)``: a ring of DEPTH buffers, each
    reused only once every write made from it is done, so no block is copied or allocated
    afresh. Errors surface on the next call, and at ``finish``.
    """

    DEPTH = 4                          # buffers in the ring: ~8 MiB for 2 MiB blocks
    BIG = 8 << 20                      # larger blocks: only 2 buffers

    def __init__(self, sink):
        self.sink = sink
        self.needs_zeroing = sink.needs_zeroing
        self._ops = deque()
        self._cond = threading.Condition()
        self._submitted = 0            # operations queued so far
        self._done = 0                 # ... and carried out
        self._error = None
        self._stop = False
        self._ring = [None] * self.DEPTH
        self._tickets = [0] * self.DEPTH   # per buffer: operations to wait for before reuse
        self._slot = 0
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
        self._thread.start()

    # -- the sink interface ----------------------------------------------------------------
    def write(self, offset, data):
        self._submit(self.sink.write, offset, data)

    def zero(self, offset, length, prev):
        if prev or self.needs_zeroing:      # a new file's unwritten ranges are holes already
            self._submit(self.sink.zero, offset, length, prev)

    def reserve(self, size):
        self._submit(self.sink.reserve, size)

    def finish(self, size):
        self._submit(self.sink.finish, size)
        self._wait(self._submitted)

    @property
    def bytes_written(self):
        return self.sink.bytes_written

    def buffer(self, n):
        """A writable view of ``n`` bytes to read the next block into; the block composed from
        the previous one has queued all its writes by now."""
        self._tickets[self._slot] = self._submitted
        depth = self.DEPTH if n <= self.BIG else 2
        self._slot = (self._slot + 1) % depth
        self._wait(self._tickets[self._slot])
        buf = self._ring[self._slot]
        if buf is None or len(buf) < n:
            buf = self._ring[self._slot] = bytearray(n)   # never resized: views may be alive
        return memoryview(buf)[:n]

    # -- the thread ------------------------------------------------------------------------
    def _submit(self, fn, *args):
        if self._error is not None:
            raise self._error
        with self._cond:
            self._ops.append((fn, args))
            self._submitted += 1
            self._cond.notify_all()

    def _wait(self, ticket):
        with self._cond:
            while self._done < ticket and self._error is None:
                self._cond.wait()
        if self._error is not None:
            raise self._error

    def _run(self):
        while True:
            with self._cond:
                while not self._ops and not self._stop:
                    self._cond.wait()
                if not self._ops:
                    return
                fn, args = self._ops.popleft()
            try:
                fn(*args)
            except BaseException as exc:       # handed to the converting thread
                with self._cond:
                    self._error = exc
                    self._ops.clear()
                    self._cond.notify_all()
                return
            with self._cond:
                self._done += 1
                self._cond.notify_all()

    def close(self):
        """Stop the thread; operations still queued (after a failure elsewhere) are dropped."""
        with self._cond:
            self._stop = True
            self._ops.clear()
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        try:
            if exc_type is None:
                self._wait(self._submitted)     # e.g. zeroing queued after finish
        finally:
            self.close()


def write_behind(sink, overlap=True):
    """``sink`` with its writes on a second thread when ``overlap`` and it is a new regular
    file; as it is otherwise (devices check capacity at each call; memory sinks have nothing
    to overlap). Both readers release the GIL while they work: pread of extracted files, and
    isal's gzip reader (two inflates on two threads take the wall time of one), so the page
    cache copy of the writes runs alongside."""
    if overlap and (type(sink) is FileSink or getattr(sink, "overlappable", False)):
        return WriteBehind(sink)
    return contextlib.nullcontext(sink)


class MemorySink:
    """A window [start, start + length) of the result, in memory (random-access reads)."""

    needs_zeroing = False

    def __init__(self, start, length):
        self.start = start
        self.buf = bytearray(length)

    def _clip(self, offset, length):
        a = max(offset, self.start)
        b = min(offset + length, self.start + len(self.buf))
        return a, b

    def write(self, offset, data):
        a, b = self._clip(offset, len(data))
        if a < b:
            self.buf[a - self.start:b - self.start] = data[a - offset:b - offset]

    def zero(self, offset, length, prev):
        a, b = self._clip(offset, length)
        if a < b and prev:
            self.buf[a - self.start:b - self.start] = bytes(b - a)

    def reserve(self, size):
        pass

    def finish(self, size):
        if self.start + len(self.buf) > size:
            keep = max(size - self.start, 0)
            self.buf[keep:] = bytes(len(self.buf) - keep)


class Output:
    """A conversion target that becomes visible only when complete.

    ``with Output(path) as out: ... out.sink ...`` - on an exception the partial result is
    removed (regular files) or its first MiB zeroed (devices, so it cannot pass for a disk).
    ``path`` "-" is standard output: used directly if it is a regular file, otherwise the
    result is assembled in a temporary sparse file and then copied out.
    """

    def __init__(self, path, *, tmpdir=None, sync=False):
        self.path = path
        self.tmpdir = tmpdir
        self.sync = sync
        self.tmp_path = None
        self.fd = None
        self.sink = None
        self.pipe_fd = None
        self.final_path = None

    def __enter__(self):
        if self.path == "-":
            fd = sys.stdout.buffer.fileno() if hasattr(sys.stdout, "buffer") else 1
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                os.ftruncate(fd, 0)
                self.fd = fd
                self.sink = FileSink(fd, "standard output")
                return self
            self.pipe_fd = fd
            handle, self.tmp_path = make_temp(self.tmpdir, "xen-vhd-", ".raw")
            self.fd = handle
            self.sink = FileSink(handle, "standard output")
            return self
        path = os.path.abspath(os.fspath(self.path))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise OutputError(self.path, f"cannot use as output: {exc.strerror}") from None
        if st is not None and stat.S_ISBLK(st.st_mode):
            try:
                self.fd = os.open(path, os.O_WRONLY)
            except OSError as exc:
                raise OutputError(self.path, f"cannot open the device: {exc.strerror}") from None
            self.sink = DeviceSink(self.fd, self.path, os.lseek(self.fd, 0, os.SEEK_END))
            return self
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise OutputError(self.path, "exists and is neither a regular file nor a block device")
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise OutputError(self.path, f"directory {directory} does not exist")
        try:
            self.fd, self.tmp_path = make_temp(directory, "." + os.path.basename(path) + ".", ".partial")
        except OSError as exc:
            raise OutputError(self.path, f"cannot create a file in {directory}: {exc.strerror}") from None
        umask_mode(self.fd)
        self.final_path = path
        self.sink = FileSink(self.fd, self.path)
        return self

    def __exit__(self, exc_type, exc, tb):
        ok = exc_type is None
        try:
            if ok:
                self._complete()
        except BaseException:
            ok = False
            raise
        finally:
            if not ok:
                self._discard()
        return False

    def _complete(self):
        if self.pipe_fd is not None:
            copy_sparse_to_pipe(self.fd, self.pipe_fd)
        elif isinstance(self.sink, DeviceSink) or self.sync:
            os.fsync(self.fd)
        if self.fd is not None and self.fd > 2:
            os.close(self.fd)
        self.fd = None
        if self.final_path:
            os.replace(self.tmp_path, self.final_path)
            self.tmp_path = None
        elif self.tmp_path:
            os.unlink(self.tmp_path)
            self.tmp_path = None

    def _discard(self):
        if isinstance(self.sink, DeviceSink) and self.fd is not None:
            try:
                write_zeros(self.fd, 0, min(1 << 20, self.sink.capacity))
            except OSError:
                pass
        if self.fd is not None and self.fd > 2:
            os.close(self.fd)
        self.fd = None
        if self.tmp_path:
            try:
                os.unlink(self.tmp_path)
            except FileNotFoundError:
                pass
            self.tmp_path = None


def copy_sparse_to_pipe(src_fd, dst_fd):
    """Copy a sparse file to a pipe, generating zeros for holes without reading them."""
    size = os.fstat(src_fd).st_size
    pos = 0
    while pos < size:
        try:
            data_at = os.lseek(src_fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            data_at = size
        _write_all(dst_fd, None, data_at - pos)
        if data_at >= size:
            break
        hole_at = os.lseek(src_fd, data_at, os.SEEK_HOLE)
        pos = data_at
        while pos < hole_at:
            chunk = os.pread(src_fd, min(1 << 20, hole_at - pos), pos)
            _write_all(dst_fd, chunk, len(chunk))
            pos += len(chunk)


def _write_all(fd, data, length):
    if data is None:
        while length:
            n = min(length, len(_ZERO_CHUNK))
            _write_all(fd, _ZERO_CHUNK[:n], n)
            length -= n
        return
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]

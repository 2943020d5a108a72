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

"""Making outputs appear only when complete."""

import contextlib
import os


def make_temp(directory, prefix, suffix):
    """(fd, path) of a new file (mode 0600, opened read-write) in ``directory`` (None: the
    system's temporary directory), as ``tempfile.mkstemp``; not imported for it because
    ``tempfile`` imports ``shutil`` and ``random``, ~5 ms of every conversion's start."""
    if directory is None:
        import tempfile

        directory = tempfile.gettempdir()
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for _ in range(100):
        path = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path next to ``path`` that replaces it only if the block succeeds."""
    path = os.path.abspath(os.fspath(path))
    fd, tmp = make_temp(os.path.dirname(path), "." + os.path.basename(path) + ".", ".partial")
    umask_mode(fd)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def umask_mode(fd):
    """Give a mkstemp file (0600) the mode a plain open() would have: 0666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)

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

"""Stories' progress from pytest-xdist workers, live on the controller's terminal.

An xdist worker's terminal goes nowhere, so a scenario running there would show nothing until
the end. Each worker writes its progress lines to a file of its own in a directory the
controller creates and hands over in ``workerinput``; a controller thread follows those files
and prints every complete line as ``[gw0] line`` while the tests run. The step tables and
diagnoses come back with the test reports (``user_properties``) for the final summary.
"""

import os
import tempfile
import threading
from pathlib import Path

WORKERINPUT_KEY = "xvt_progress_dir"
SUMMARY_PROPERTY = "xvt_story_summary"


def worker_stream(config):
    """A line-buffered file for this xdist worker's progress, or None outside a worker."""
    where = getattr(config, "workerinput", {}).get(WORKERINPUT_KEY)
    if not where:
        return None
    worker = config.workerinput.get("workerid", "gw?")
    return open(Path(where) / f"{worker}.log", "a", buffering=1, encoding="utf-8")


class Follower:
    """Follows ``*.log`` in a directory, writing each new complete line with its worker's name."""

    def __init__(self, write, interval=0.2):
        self.dir = Path(tempfile.mkdtemp(prefix="xvt-progress-"))
        self._write = write
        self._interval = interval
        self._offsets = {}
        self._partial = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="xvt-progress")

    def start(self):
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self._interval):
            self.drain()

    def drain(self):
        for path in sorted(self.dir.glob("*.log")):
            with open(path, encoding="utf-8", errors="replace") as f:
                f.seek(self._offsets.get(path, 0))
                text = self._partial.get(path, "") + f.read()
                self._offsets[path] = f.tell()
            *lines, self._partial[path] = text.split("\n")
            for line in lines:
                self._write(f"[{path.stem}] {line}")

    def stop(self):
        """Print what is left and remove the directory; a second call does nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.drain()
        for path in self.dir.glob("*.log"):
            os.unlink(path)
        os.rmdir(self.dir)

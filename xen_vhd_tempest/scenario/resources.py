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

"""Everything the scenario creates is registered here and deleted in reverse order - on
success, on failure and on Ctrl-C/SIGTERM - unless the user asked to keep it for debugging."""

import contextlib
import signal
import time


class Resources:
    def __init__(self, reporter, *, keep=False):
        self.reporter = reporter
        self.keep = keep
        self.stack = []              # (description, delete callable), creation order

    def add(self, description, delete):
        self.stack.append((description, delete))
        return len(self.stack) - 1

    def forget(self, handle):
        """The resource is gone already (deleted by the story itself)."""
        if handle is not None and handle < len(self.stack):
            self.stack[handle] = (self.stack[handle][0], None)

    def release_from(self, handle):
        """Delete now what was registered at ``handle`` and after it (newest first, e.g. the
        server booted from a volume before the volume); the rest stays registered. Returns the
        list of failures."""
        if handle is None or handle >= len(self.stack):
            return []
        rest, self.stack = self.stack[:handle], self.stack[handle:]
        try:
            return self.cleanup()
        finally:
            self.stack = rest + self.stack

    def cleanup(self, retry_after=2.0):
        """Delete everything left, newest first; what failed is tried once more at the end (a
        delete is safe to repeat, and a failed one may have been a passing cloud error). Returns
        the list of failures (descriptions)."""
        failed = []
        while self.stack:
            description, delete = self.stack.pop()
            if delete is None:
                continue
            if self.keep:
                self.reporter.progress(f"keeping {description}")
                continue
            try:
                delete()
                self.reporter.progress(f"deleted {description}")
            except Exception as exc:              # keep going: leak nothing we can delete
                failed.append((description, delete))
                self.reporter.progress(f"could not delete {description}: {exc}; will try again")
        failures = []
        if failed:
            time.sleep(retry_after)
        for description, delete in failed:
            try:
                delete()
                self.reporter.progress(f"deleted {description} (second attempt)")
            except Exception as exc:
                failures.append(f"{description}: {exc}")
                self.reporter.progress(f"could not delete {description}: {exc}")
        return failures


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (CI timeouts, kill) unwinds like Ctrl-C, so cleanup runs."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:                 # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""Everything the scenario creates is registered here and deleted in reverse order - on
success, on failure and on Ctrl-C/SIGTERM - unless the user asked to keep it for debugging."""

import contextlib
import signal


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

    def cleanup(self):
        """Delete everything left, newest first. Returns the list of failures (descriptions)."""
        failures = []
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

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

"""Progress lines while the scenario runs, and the summary it ends with."""

import contextlib
import dataclasses
import sys
import time


@dataclasses.dataclass
class StepResult:
    name: str
    status: str = "running"        # ok | FAIL | skipped | running
    seconds: float = 0.0
    detail: str = ""


def all_passed(steps):
    """A run passed when it ran steps and none failed (skipped ones count as passed)."""
    return bool(steps) and all(s.status in ("ok", "skipped") for s in steps)


class Reporter:
    """Writes '==> step' headers and indented progress to ``stream``; keeps step results."""

    def __init__(self, stream=None, *, prefix=""):
        self.stream = stream if stream is not None else sys.stdout
        self.prefix = prefix
        self.steps = []
        self.started = time.monotonic()

    def say(self, text):
        self.stream.write(f"{self.prefix}{text}\n")
        self.stream.flush()

    def progress(self, text):
        self.say(f"    {text}")

    @contextlib.contextmanager
    def step(self, name):
        result = StepResult(name)
        self.steps.append(result)
        self.say(f"==> {name}")
        t = time.monotonic()
        try:
            yield result
            result.status = "ok"
        except BaseException as exc:
            result.status = "FAIL"
            result.detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise
        finally:
            result.seconds = time.monotonic() - t

    def skip(self, name, why):
        self.steps.append(StepResult(name, "skipped", 0.0, why))

    @property
    def passed(self):
        return all_passed(self.steps)

    def summary(self, title="", diagnosis=None):
        width = max([len(s.name) for s in self.steps] + [20])
        lines = ["", f"{title}" if title else "", f"{'step':<{width}}  {'status':<7} {'seconds':>8}"]
        for s in self.steps:
            lines.append(f"{s.name:<{width}}  {s.status:<7} {s.seconds:8.1f}")
        lines.append(f"{'total':<{width}}  {'':<7} {time.monotonic() - self.started:8.1f}")
        failed = [s for s in self.steps if s.status == "FAIL"]
        if failed:
            lines.append("")
            lines.append(f"failed at: {failed[0].name}: {failed[0].detail}")
            if diagnosis:
                lines.append(f"diagnosis: {diagnosis}")
        lines.append("")
        lines.append("PASS" if self.passed else "FAIL")
        text = "\n".join(x for x in lines if x is not None)
        self.say(text)
        return text

    def results(self):
        """The steps so far, as a snapshot (``outcome.Outcome.steps``)."""
        return tuple(dataclasses.replace(s) for s in self.steps)

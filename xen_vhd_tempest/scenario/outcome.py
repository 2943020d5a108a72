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

"""What a story's run comes to, as data both front ends assert on (never parsed from its log).

``Outcome``: the steps (name, status, seconds, detail), the diagnosis, the known-wrong
conversion it names (``fault``) and the summary table. ``Outcome.verdict(expected_fault)`` is
the one judgement: None when the run is what was expected, else the failure message.
"""

import dataclasses

from xen_vhd_tempest.scenario.report import StepResult, all_passed


@dataclasses.dataclass(frozen=True)
class Outcome:
    title: str
    steps: tuple                   # report.StepResult, in the order they ran
    diagnosis: object = None       # diagnose.Diagnosis, a str, or None
    summary: str = ""              # the table the reporter printed

    @property
    def passed(self):
        return all_passed(self.steps)

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.status == "FAIL"), None)

    @property
    def fault(self):
        """The known-wrong conversion the diagnosis names ('leaf-only', ...), or None."""
        return getattr(self.diagnosis, "variant", None)

    def verdict(self, expected_fault="none"):
        """None when the run came out as expected, else why not (one message, the summary after it).

        ``expected_fault`` 'none': every step must pass. A fault name: the run must fail with a
        diagnosis naming that fault (a sensitivity run against a cloud known to convert wrongly)."""
        failed = self.failed_step
        if expected_fault in (None, "none"):
            if self.passed:
                return None
            message = f"{self.title}: failed at '{failed.name}': {failed.detail}" if failed else \
                f"{self.title}: no step ran"
            if self.diagnosis:
                message += f"\ndiagnosis: {self.diagnosis}"
            return f"{message}\n{self.summary}"
        if self.passed:
            return (f"expected fault {expected_fault}, but the volume matched the reference conversion: the "
                    f"cloud is not converting that wrong way")
        if self.fault != expected_fault:
            named = f"diagnosed {self.fault!r}" if self.fault else "failed without naming a known fault"
            return f"expected fault {expected_fault}, but the scenario {named}:\n{self.summary}"
        return None

    def to_json(self):
        return {"title": self.title, "passed": self.passed, "fault": self.fault,
                "diagnosis": str(self.diagnosis) if self.diagnosis else None,
                "steps": [dataclasses.asdict(s) for s in self.steps]}

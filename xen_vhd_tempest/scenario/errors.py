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

"""The scenario's errors: every failure a step can meet, with the why a Cinder developer acts on."""


class ScenarioError(Exception):
    """A step failed. ``diagnosis`` says why, in a Cinder developer's terms (a str, or a
    ``diagnose.Diagnosis`` when the volume matches a known-wrong conversion); ``console`` is the
    tail of a guest console worth quoting."""

    def __init__(self, message, *, diagnosis=None, console=None):
        super().__init__(message)
        self.diagnosis = diagnosis
        self.console = console


class CloudError(ScenarioError):
    """A cloud call failed or a resource reached an error state."""


class WaitTimeout(ScenarioError):
    """A resource did not reach the wanted state in time."""


class SshError(ScenarioError):
    """A command in a guest could not be run, or failed."""

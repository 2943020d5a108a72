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

"""The seed scenario, written once, driven by two front ends through one explicit contract.

What a front end provides and receives (the contract):
  cloud      -- ``Cloud``: every call the story makes, waiters and ``guest_shell`` included;
                ``Shell`` (commands in a guest); the records calls return
  options    -- ``SETTINGS``: the story's options, one table both front ends build theirs from;
                ``Options``
  outcome    -- ``Outcome``: what a run comes to (steps, statuses, seconds, diagnosis, named
                fault) and ``verdict``, the judgement both front ends assert
  errors     -- ``ScenarioError`` and its kinds, each with a diagnosis

The story itself (front-end neutral):
  story      -- the steps: boot, write, backup, inspect, volume, byte-exact, boot from volume
  waiters    -- polling with progress, explicit timeouts and fail-fast (the default ``Cloud.wait_*``)
  reference  -- the reference converter's verdict on a backup image: checks, raw, md5s
  diagnose   -- why a volume differs from the reference, in a Cinder developer's terms
  report     -- progress lines, step timings, the summary table
  resources  -- cleanup in reverse order, on success, failure and Ctrl-C

The front ends: ``xen_vhd_tempest.harness`` (pytest, python-*clients, paramiko) and
``xen_vhd_tempest.tempest_plugin`` (tempest's clients and RemoteClient).
"""

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

"""xen-vhd-tempest: prove OpenStack turns XenServer images into correct Cinder volumes.

Where things are (the reference converter is the top-level ``converter`` package):
  scenario/        the story once, and the contract a front end implements (cloud, options, outcome)
  harness/         front end 1: pytest plugin, ``xen-vhd-tempest run``, python-*clients cloud, paramiko
  tempest_plugin/  front end 2: tempest plugin, [xen_vhd] options, manager, tempest cloud, tests
  lab/             the embedded OpenStack on loopback with XenServer semantics and QEMU guests
  cli.py           the ``xen-vhd-tempest`` command (subcommands live in the modules that own them)
  demo.py          ``xen-vhd-tempest demo``: the converter's story without a cloud
  paths.py         the cache directory
"""

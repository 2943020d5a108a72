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

"""The embedded lab: an OpenStack on loopback with XenServer image semantics and QEMU guests.

Map (one room per job; ``README.md`` says where a change goes):

- ``cloud.py`` wires it: services on one ``httpd`` server, bootstrap, the default image;
  ``client_files.py`` writes clouds.yaml / accounts.yaml / tempest.conf / lab.json;
  ``commands.py`` is the ``lab`` CLI; ``recovery.py`` tidies what a lab that died left.
- per service (``identity/``, ``compute/``, ``image/``, ``volume/``, ``admin/``): ``urls.py``
  (the route table), ``responses.py`` (HTTP in and out), ``models.py`` (state and behaviour).
- ``httpd.py`` HTTP plumbing; ``errors.py`` the one error type and each service's error body;
  ``store.py`` db.json; ``config.py`` the state directory and runtime settings; ``util.py``
  times, ids, microversions.
- ``compute/driver.py`` runs servers as ``hypervisor.Guest`` QEMU guests (``qemu_qmp.py``),
  on ``addresses.py``'s loopback addresses, with XenServer's import
  (``compute/xenserver_images.py``) and backup export (``compute/xenserver_backup.py``).
- ``guest/`` builds the guest disk and reads facts off guest disks (``guest/disk.py``).
- ``fault_injection.py``: injected API and guest faults.
- ``volume/conversion.py``: image-to-volume by ``conversion_mode``: the reference converter,
  the known-wrong conversions (``volume/known_wrong.py``) or upstream Cinder's own code in a
  worker process (``volume/cinder.py``, ``volume/cinder_worker.py``).
"""

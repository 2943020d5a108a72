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

"""Where the project keeps things it builds once and reuses (guest images, kernels)."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: $XEN_VHD_TEMPEST_CACHE, else $XDG_CACHE_HOME/xen-vhd-tempest."""
    explicit = os.environ.get("XEN_VHD_TEMPEST_CACHE")
    if explicit:
        root = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "xen-vhd-tempest"
    root.mkdir(parents=True, exist_ok=True)
    return root

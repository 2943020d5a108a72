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

"""Where a lab keeps its state and the knobs that can change while it runs.

State directory layout::

    lab.json        how to reach the running lab (pid, url, credentials); absent when down
    db.json         persistent records: images, volumes, flavors, keypairs, ids
    secret          the key tokens are signed with (tokens survive a lab restart)
    settings.json   runtime settings, read on every use (conversion mode, Cinder tree, token lifetime)
    images/ID       image data as uploaded
    volumes/ID.raw  volume data (sparse raw files)
    volumes/ID.cinder.log   Cinder's log of that volume's creation (conversion mode cinder)
    cinder/         the Cinder worker's config, vhd-util, scratch and log (lab/volume/cinder.py)
    instances/ID/   per-server disks, overlays, config drive, console log
    clouds.yaml, tempest.conf, lab.log
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .volume.conversion import MODES

# How volume-from-image converts: the reference converter, a known-wrong variant, or real Cinder.
CONVERSION_MODES = MODES

DEFAULT_SETTINGS = {
    "conversion_mode": "reference",
    "cinder_src": None,    # conversion mode cinder: a Cinder source tree (None: the installed package)
    "vhd_util": None,      # ... and the vhd-util it runs (None: xen-vhd-util)
    "token_ttl": 3600,
    "faults": [],          # fault injection rules: see lab/fault_injection.py
}

DEFAULT_PORT = 8780
REGION = "RegionOne"


@dataclass
class LabConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    admin_password: str = "labadmin"
    demo_password: str = "labdemo"
    # guests get SSH on 127.0.0.N:22 for N from this base (root) or a high port otherwise
    guest_address_base: int = 10
    guest_memory_mb: int = 192
    default_image: bool = True

    def __post_init__(self):
        self.state_dir = Path(self.state_dir).absolute()

    def path(self, *parts) -> Path:
        return self.state_dir.joinpath(*parts)


class Settings:
    """``settings.json`` in the state dir, re-read when its mtime changes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime = None
        self._cache = dict(DEFAULT_SETTINGS)

    def current(self) -> dict:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                self._mtime = None
                self._cache = dict(DEFAULT_SETTINGS)
                return dict(self._cache)
            if mtime != self._mtime:
                try:
                    data = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    data = {}
                merged = dict(DEFAULT_SETTINGS)
                merged.update({k: v for k, v in data.items() if k in DEFAULT_SETTINGS})
                self._cache, self._mtime = merged, mtime
            return dict(self._cache)

    def get(self, key):
        return self.current()[key]

    def update(self, **changes) -> dict:
        changes = validate_settings(changes)

        def apply(data):
            data.update(changes)
            return True
        self.modify(apply)
        return self.current()

    def modify(self, change) -> bool:
        """``change(data)`` edits the stored settings in place (under the lock, atomically for
        this process); it returns False to leave the file untouched."""
        with self._lock:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = {}
            if not change(data):
                return False
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
            self._mtime = None
            return True


def validate_settings(changes: dict) -> dict:
    changes = dict(changes)
    for key, value in changes.items():
        if key not in DEFAULT_SETTINGS:
            raise ValueError(f"unknown lab setting {key!r}; known: {', '.join(sorted(DEFAULT_SETTINGS))}")
        if key == "conversion_mode" and value not in CONVERSION_MODES:
            raise ValueError(f"conversion_mode {value!r} is not one of {', '.join(CONVERSION_MODES)}")
        if key == "cinder_src" and value is not None:
            from .volume.cinder import validate_cinder_src
            changes[key] = validate_cinder_src(value)
        if key == "vhd_util" and value is not None:
            from .volume.cinder import validate_vhd_util
            changes[key] = validate_vhd_util(value)
        if key == "token_ttl" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError("token_ttl must be a positive integer (seconds)")
        if key == "faults":
            from .fault_injection import validate
            changes[key] = validate(value)
    return changes

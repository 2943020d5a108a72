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

"""Persistent records of the lab (``db.json``), shared by the service models.

Records are plain dicts in named collections; every mutation happens under
``store.lock`` and is followed by ``store.save()``, which rewrites the file
atomically. Small and boring on purpose: a lab holds tens of records.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock = threading.RLock()
        self.data: dict[str, dict] = {}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    def collection(self, name: str) -> dict:
        with self.lock:
            return self.data.setdefault(name, {})

    def save(self):
        with self.lock:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)

    def snapshot(self, name: str, key: str):
        """A deep copy of one record (or None), safe to read outside the lock."""
        with self.lock:
            record = self.data.get(name, {}).get(key)
            return copy.deepcopy(record)

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

"""Small helpers shared by the lab services (time formats, ids, microversions, sparse copies)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from datetime import datetime, timezone

from .errors import LabError


def now() -> float:
    return time.time()


def iso(ts: float | None, *, micro=False, z=True) -> str | None:
    """Nova/Cinder style ``2026-11-21T09:55:11Z`` (or with microseconds, Cinder's ``.000000``)."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S.%f" if micro else "%Y-%m-%dT%H:%M:%S")
    return text + ("Z" if z else "")


def cinder_time(ts):
    return None if ts is None else iso(ts, micro=True, z=False)


def glance_time(ts):
    return iso(ts)


def new_id() -> str:
    return str(uuid.uuid4())


def hex_id() -> str:
    return uuid.uuid4().hex


_VERSION = re.compile(r"^([1-9]\d*)\.(0|[1-9]\d*)$")


def parse_version(text: str) -> tuple[int, int]:
    m = _VERSION.match(text.strip())
    if not m:
        raise ValueError(text)
    return int(m.group(1)), int(m.group(2))


def requested_microversion(headers, service: str, legacy_header: str | None,
                           minimum: str, maximum: str) -> tuple[int, int]:
    """The microversion a request asks for, like oslo/nova: default minimum, ``latest`` = max.

    An unparsable or unsupported version gets 400 / 406 as nova and cinder answer.
    """
    text = None
    for value in headers.get_all("OpenStack-API-Version") or []:
        for part in value.split(","):
            words = part.strip().split(None, 1)
            if len(words) == 2 and words[0].lower() == service:
                text = words[1].strip()
    if text is None and legacy_header:
        text = headers.get(legacy_header)
    lo, hi = parse_version(minimum), parse_version(maximum)
    if text is None:
        return lo
    if text.strip().lower() == "latest":
        return hi
    try:
        wanted = parse_version(text)
    except ValueError:
        raise LabError(400, f"API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum.",
                        kind="badRequest") from None
    if not lo <= wanted <= hi:
        raise LabError(406 if service == "compute" else 404,
                        f"Version {text} is not supported by the API. Minimum is {minimum} and maximum is {maximum}.",
                        kind="computeFault" if service == "compute" else "itemNotFound")
    return wanted


def sparse_copy(src, dst, size):
    """Copy ``src`` to ``dst`` keeping holes, then set the length to ``size``."""
    try:
        subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(src), str(dst)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        f.truncate(size)

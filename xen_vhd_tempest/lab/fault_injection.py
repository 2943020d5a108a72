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

"""Injected faults: the lab's API and guests misbehave on purpose, so a harness can prove it copes.

(Not to be confused with the known-wrong *conversions* of ``conversion_mode``: those are
Cinder doing the wrong thing to an image; these are the cloud failing around it.)

Faults are a runtime setting (``faults``: a list of rules, changed with ``PUT /lab/settings``
or ``xen-vhd-tempest lab settings --fault SPEC``, admin only). Each rule has a ``kind`` and a
``count`` (how many times it fires, default 1; spent rules disappear from the setting):

``api``           the next ``count`` API calls matching ``service`` (path prefix: identity,
                  compute, image, volume), ``method`` and ``path`` (a regular expression searched
                  in the service-relative path, e.g. ``/servers$``) answer ``status`` (default
                  500) with the service's error body - or, with ``delay`` (seconds), get no
                  answer at all: the lab holds the request that long, then closes the connection
                  without doing anything (a timeout for any client whose timeout is shorter).
``guest``         the next ``count`` servers never boot: ``variant`` ``silent`` (the virtual CPU
                  never starts: empty console, no SSH) or ``panic`` (the guest's kernel is booted
                  without a root device and really panics: ``Kernel panic - not syncing``).
``ssh-drop``      an SSH connection to a guest that has been open ``after`` seconds (default 3,
                  counted from when the rule first sees it) is reset, as a flaky network would
                  (``ss -K`` on the guest's forwarded socket; needs the lab to run as root).
``volume-error``  the next ``count`` volumes created go to ``error`` with a user message
                  (``message``, default a backend failure) instead of being filled.
``image-saving``  the next ``count`` image uploads (including createBackup's export) stop in
                  ``saving`` forever; the data is discarded.

``guest``, ``volume-error`` and ``image-saving`` rules may carry ``name``, a regular
expression the resource's name must match. CLI spelling: ``--fault kind=api,service=compute,
method=POST,path=/servers$,status=500`` (or the rule as JSON); ``--clear-faults``.

The hooks are small and in one place each: ``api_fault`` for ``httpd`` (before dispatch),
``guest_variant`` for the compute driver, ``volume_error`` for Cinder's build, ``image_stuck``
for Glance's upload, and the SSH watcher thread.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from typing import NamedTuple

KINDS = ("api", "guest", "ssh-drop", "volume-error", "image-saving")
SERVICES = ("identity", "compute", "image", "volume")   # never the lab's own admin API
GUEST_VARIANTS = ("silent", "panic")
FIELDS = {
    "api": {"service", "method", "path", "status", "delay"},
    "guest": {"variant", "name"},
    "ssh-drop": {"after"},
    "volume-error": {"message", "name"},
    "image-saving": {"name"},
}
DEFAULT_VOLUME_MESSAGE = "Volume creation failed: the storage backend returned an error (lab fault injection)."


class FaultSpecError(ValueError):
    pass


class ApiFault(NamedTuple):
    """What an ``api`` rule does to one call: answer ``status``, or hold it ``hang`` seconds."""
    status: int | None = None
    hang: float | None = None


def validate(rules) -> list:
    """The rules, normalised (count filled in); ValueError naming the bad field otherwise."""
    if not isinstance(rules, list):
        raise FaultSpecError("faults must be a list of rules")
    out = []
    for i, rule in enumerate(rules):
        where = f"faults[{i}]"
        if not isinstance(rule, dict):
            raise FaultSpecError(f"{where}: a rule is an object with a 'kind'")
        kind = rule.get("kind")
        if kind not in KINDS:
            raise FaultSpecError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        unknown = set(rule) - FIELDS[kind] - {"kind", "count"}
        if unknown:
            raise FaultSpecError(f"{where}: {kind} rules take no {', '.join(sorted(unknown))}")
        rule = dict(rule)
        count = rule.setdefault("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise FaultSpecError(f"{where}: count must be a positive integer")
        for key in ("path", "name"):
            if key in rule:
                try:
                    re.compile(str(rule[key]))
                except re.error as error:
                    raise FaultSpecError(f"{where}: {key} is not a regular expression: {error}") from None
        if kind == "api":
            if rule.get("service") is not None and rule["service"] not in SERVICES:
                raise FaultSpecError(f"{where}: service {rule['service']!r} is not one of {', '.join(SERVICES)}")
            if "method" in rule:
                rule["method"] = str(rule["method"]).upper()
            status = rule.get("status", 500)
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise FaultSpecError(f"{where}: status must be an HTTP error status (400-599)")
            if "delay" in rule and (not isinstance(rule["delay"], (int, float)) or rule["delay"] <= 0):
                raise FaultSpecError(f"{where}: delay must be a positive number of seconds")
        elif kind == "guest":
            if rule.get("variant", "silent") not in GUEST_VARIANTS:
                raise FaultSpecError(f"{where}: variant must be one of {', '.join(GUEST_VARIANTS)}")
        elif kind == "ssh-drop":
            after = rule.get("after", 3)
            if not isinstance(after, (int, float)) or after < 0:
                raise FaultSpecError(f"{where}: after must be a number of seconds")
        out.append(rule)
    return out


def parse_spec(text: str) -> dict:
    """A CLI ``--fault`` value: a JSON object, or ``key=value,key=value`` (numbers become numbers)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            rule = json.loads(text)
        except ValueError as error:
            raise FaultSpecError(f"--fault {text!r}: not valid JSON: {error}") from None
    else:
        rule = {}
        for part in filter(None, text.split(",")):
            key, sep, value = part.partition("=")
            if not sep:
                raise FaultSpecError(f"--fault {text!r}: {part!r} is not key=value")
            for convert in (int, float):
                try:
                    value = convert(value)
                    break
                except ValueError:
                    continue
            rule[key.strip()] = value
    validate([rule])
    return rule


class Faults:
    """The lab's fault injector over its ``Settings`` (the rules live in settings.json)."""

    def __init__(self, settings, log=print):
        self.settings = settings
        self.log = log
        self._stop = threading.Event()
        self._watcher = None

    # -- rules
    def _take(self, kind, matches) -> dict | None:
        """The first rule of ``kind`` that ``matches``, its count spent by one (atomically)."""
        if not any(r.get("kind") == kind for r in self.settings.get("faults")):
            return None
        taken = []

        def spend(data):
            rules = list(data.get("faults") or [])
            for i, rule in enumerate(rules):
                if rule.get("kind") == kind and matches(rule):
                    taken.append(dict(rule))
                    if rule.get("count", 1) <= 1:
                        del rules[i]
                    else:
                        rules[i] = dict(rule, count=rule["count"] - 1)
                    data["faults"] = rules
                    return True
            return False
        self.settings.modify(spend)
        if taken:
            self.log(f"fault injected: {json.dumps(taken[0], sort_keys=True)}")
            return taken[0]
        return None

    @staticmethod
    def _name_matches(rule, name):
        return "name" not in rule or re.search(str(rule["name"]), name or "") is not None

    # -- hooks
    def api_fault(self, service: str, method: str, path: str) -> ApiFault | None:
        """For httpd, before dispatch: the fault this call gets, if any."""
        if service not in SERVICES:
            return None

        def matches(rule):
            return ((rule.get("service") in (None, service))
                    and (rule.get("method") in (None, method))
                    and (rule.get("path") is None or re.search(str(rule["path"]), path) is not None))
        rule = self._take("api", matches)
        if rule is None:
            return None
        if "delay" in rule:
            return ApiFault(hang=float(rule["delay"]))
        return ApiFault(status=int(rule.get("status", 500)))

    def guest_variant(self, server_name: str) -> str | None:
        rule = self._take("guest", lambda r: self._name_matches(r, server_name))
        return rule.get("variant", "silent") if rule else None

    def volume_error(self, volume_name: str) -> str | None:
        rule = self._take("volume-error", lambda r: self._name_matches(r, volume_name))
        return rule.get("message", DEFAULT_VOLUME_MESSAGE) if rule else None

    def image_stuck(self, image_name: str) -> bool:
        return self._take("image-saving", lambda r: self._name_matches(r, image_name)) is not None

    # -- SSH drops
    def start_ssh_watcher(self, guest_addresses, interval=0.5):
        """Reset guests' SSH connections per ``ssh-drop`` rules; ``guest_addresses()`` ->
        the (host, port) pairs guests' SSH is forwarded from."""
        def loop():
            seen: dict = {}
            while not self._stop.wait(interval):
                try:
                    rules = [r for r in self.settings.get("faults") if r.get("kind") == "ssh-drop"]
                    if not rules:
                        seen.clear()
                        continue
                    now = time.monotonic()
                    current = set(_established(set(guest_addresses())))
                    seen = {c: seen.get(c, now) for c in current}
                    after = float(rules[0].get("after", 3))
                    for conn, since in seen.items():
                        if now - since >= after and self._take("ssh-drop", lambda r: True):
                            _reset(conn)
                            self.log(f"fault injected: SSH connection {conn[0][0]}:{conn[0][1]} <- "
                                     f"{conn[1][0]}:{conn[1][1]} reset")
                            break
                except Exception as error:          # never let the watcher die silently
                    self.log(f"ssh-drop watcher: {error}")
        self._watcher = threading.Thread(target=loop, name="lab-ssh-drop", daemon=True)
        self._watcher.start()

    def stop(self):
        self._stop.set()


def _established(local_addresses: set):
    """(local, peer) address pairs of established TCP connections whose local end is in the set."""
    if not local_addresses:
        return []
    try:
        out = subprocess.run(["ss", "-Htn", "state", "established"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local, peer = _addr(parts[-2]), _addr(parts[-1])
        if local in local_addresses and peer is not None:
            found.append((local, peer))
    return found


def _addr(text):
    host, _, port = text.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def _reset(conn):
    (lhost, lport), (phost, pport) = conn
    subprocess.run(["ss", "-K", "-tn", "state", "established", "src", lhost, "sport", "=", str(lport),
                    "dst", phost, "dport", "=", str(pport)], capture_output=True, timeout=10)


# -- guests that never boot -----------------------------------------------------------------------
def broken_guest_class(variant: str):
    """A ``hypervisor.Guest`` that does not boot: ``silent`` (QEMU started with its CPU stopped:
    nothing on the console, no SSH) or ``panic`` (the disk's own kernel booted with a root
    device that does not exist and no initramfs: a real ``Kernel panic - not syncing``)."""
    from .guest.disk import extract_kernel
    from .hypervisor import Guest, GuestError

    class BrokenGuest(Guest):
        def start(self):
            self._kernel = None
            if variant == "panic":
                self.workdir.mkdir(parents=True, exist_ok=True)
                self._kernel = self.workdir / "fault-vmlinuz"
                if not extract_kernel(self.disk, self._kernel):
                    raise GuestError(f"{self.name}: fault injection: no kernel found on the boot partition")
            super().start()

        def _qemu_command(self):
            cmd = super()._qemu_command()
            if variant == "silent":
                return cmd + ["-S"]
            cmd = [arg.replace(",bootindex=0", "") for arg in cmd]     # -kernel boots first
            return cmd + ["-kernel", str(self._kernel),
                          "-append", "console=ttyS0,115200n8 root=/dev/xvt-fault-no-root panic=0"]

    return BrokenGuest

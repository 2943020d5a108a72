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

"""Waiting for cloud resources, apart from the calls that change them (as tempest does).

``wait_for`` polls, reports progress (what it waits for, the status seen, elapsed time) and
fails fast on error states with the resource's own reason. ``Cloud``'s waiters
(``cloud.Cloud.wait_*``) are these over the cloud's own calls, each with an explicit timeout.
"""

import time

from xen_vhd_tempest.scenario.errors import CloudError, WaitTimeout

# What a guest's console shows when waiting for SSH is pointless (the seed's failure modes).
CONSOLE_FAILURES = (
    ("Kernel panic", "the guest kernel panicked"),
    ("No bootable device", "the disk has no boot sector (no bootable device)"),
    ("Boot failed", "the firmware found nothing to boot"),
    ("Could not find root", "the initramfs could not find the root filesystem"),
    ("unable to mount root", "the initramfs could not mount the root filesystem"),
    ("VFS: Unable to mount root", "the kernel could not mount the root filesystem"),
    ("Gave up waiting for root", "the initramfs gave up waiting for the root device"),
)


def console_failure(console):
    """(reason, quoted line) when the console shows a boot failure, else None."""
    for line in console.splitlines():
        for needle, reason in CONSOLE_FAILURES:
            if needle.lower() in line.lower():
                return reason, line.strip()
    return None


def console_tail(console, lines=12):
    return "\n".join(console.rstrip().splitlines()[-lines:])


FIRST_POLL_DELAY = 0.25


def poll_delays(interval):
    """Seconds between polls: 0.25, 0.5, 1, ... up to ``interval``.

    Most transitions the story waits for take well under a second on the lab and a few on a
    cloud; a fixed 2 s poll made every wait cost up to 2 s (about 8 s of a 50 s scenario).
    """
    delay = min(FIRST_POLL_DELAY, interval)
    while True:
        yield delay
        delay = min(delay * 2, interval)


def wait_for(description, poll, *, ready, failed=None, timeout, interval=2.0, progress=None, check=None):
    """Poll until ``ready(value)``; ``failed(value)`` returns a message to stop with CloudError.

    ``poll()`` -> value; ``progress(text)`` is told the state every poll; ``check()`` runs every
    poll and may raise to fail fast (e.g. a console showing a kernel panic). Polls come quickly
    first, then every ``interval`` seconds (``poll_delays``).
    """
    start = time.monotonic()
    last = None
    delays = poll_delays(interval)
    while True:
        value = poll()
        elapsed = time.monotonic() - start
        state = getattr(value, "status", value)
        if progress and state != last:
            progress(f"{description}: {state} ({elapsed:.0f}s)")
            last = state
        if ready(value):
            return value
        message = failed(value) if failed else None
        if message:
            raise CloudError(f"{description}: {message}")
        if check:
            check()
        if elapsed > timeout:
            raise WaitTimeout(f"{description}: still {state} after {timeout:.0f}s")
        time.sleep(next(delays))


def server_status(cloud, server_id, status, *, timeout, progress=None):
    def failed(server):
        if server.status == "ERROR":
            return f"server went to ERROR: {server.fault or 'no fault message'}"
        return None
    return wait_for(f"server {server_id}", lambda: cloud.get_server(server_id),
                    ready=lambda s: s.status == status, failed=failed, timeout=timeout, progress=progress)


def image_active(cloud, image_id, *, timeout, progress=None):
    def failed(image):
        if image.status in ("killed", "deleted", "deactivated"):
            return f"image went to {image.status}"
        return None
    return wait_for(f"image {image_id}", lambda: cloud.get_image(image_id),
                    ready=lambda i: i.status == "active", failed=failed, timeout=timeout, progress=progress)


def volume_status(cloud, volume_id, status, *, timeout, progress=None):
    def failed(volume):
        if volume.status in ("error", "error_restoring", "error_extending"):
            return f"volume went to {volume.status}" + (f": {volume.reason}" if volume.reason else "")
        return None
    return wait_for(f"volume {volume_id}", lambda: cloud.get_volume(volume_id),
                    ready=lambda v: v.status == status, failed=failed, timeout=timeout, progress=progress)


def gone(description, exists, *, timeout, progress=None):
    return wait_for(description, lambda: "present" if exists() else "gone", ready=lambda s: s == "gone",
                    timeout=timeout, progress=progress, interval=1.0)

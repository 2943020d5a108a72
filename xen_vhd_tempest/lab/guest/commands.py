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

"""``xen-vhd-tempest guest build`` and ``xen-vhd-tempest guest boot DISK``."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("guest", help="build and boot the lab's tiny guest image",
                              description="Build and boot the lab's tiny cirros-like guest image.")
    sub = p.add_subparsers(dest="guest_command", metavar="ACTION")
    sub.required = True

    b = sub.add_parser("build", help="build (or find in the cache) the guest disk image",
                       description="Build the guest disk (raw) and its XenServer export (0.vhd in a tgz).")
    b.add_argument("--kernel", type=Path, metavar="PATH",
                   help="kernel to use: a linux-image .deb, an unpacked package tree, or a bzImage "
                        "(default: Debian's linux-image-cloud-amd64, fetched with apt-get download)")
    b.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="cache directory (default: $XEN_VHD_TEMPEST_CACHE or ~/.cache/xen-vhd-tempest)")
    b.add_argument("--quiet", "-q", action="store_true", help="print only the raw disk path")
    b.set_defaults(func=_build)

    s = sub.add_parser("boot", help="boot a disk under QEMU and wait for SSH; Ctrl-C stops it",
                       description="Boot DISK under QEMU (TCG), wait for SSH, print how to log in. "
                                   "Ctrl-C powers the guest off.")
    s.add_argument("disk", type=Path, metavar="DISK", help="disk image to boot (raw or qcow2)")
    s.add_argument("--write", action="store_true",
                   help="let the guest write DISK itself (default: writes go to a throw-away overlay)")
    s.add_argument("--key", type=Path, metavar="PUBKEY", action="append", default=[],
                   help="SSH public key file to give the guest through a config drive (repeatable)")
    s.add_argument("--memory", type=int, default=192, metavar="MB", help="guest memory (default 192)")
    s.add_argument("--timeout", type=float, default=180.0, metavar="S", help="SSH wait (default 180 s)")
    s.add_argument("--name", default="lab-guest", help="guest name (its hostname, via the config drive)")
    s.set_defaults(func=_boot)


def _err(msg: str) -> int:
    print(f"xen-vhd-tempest guest: {msg}", file=sys.stderr)
    return 1


def _build(args) -> int:
    from . import GuestBuildError, build_guest_image
    if args.kernel is not None and not args.kernel.exists():
        return _err(f"{args.kernel}: kernel not found")
    if args.cache_dir is not None and args.cache_dir.exists() and not args.cache_dir.is_dir():
        return _err(f"{args.cache_dir}: not a directory")
    progress = None if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr))
    try:
        img = build_guest_image(cache_dir=args.cache_dir, kernel=args.kernel, progress=progress)
    except GuestBuildError as exc:
        return _err(str(exc))
    except OSError as exc:
        return _err(f"{exc.filename or ''}: {exc.strerror or exc}")
    if args.quiet:
        print(img.raw_path)
        return 0
    print(f"raw disk:        {img.raw_path}")
    print(f"xenserver image: {img.xenserver_image_path}")
    print(f"virtual size:    {img.virtual_size} bytes")
    print(f"kernel:          {img.kernel_version}")
    print(f"login:           {img.ssh_user} / {img.password}")
    print(f"time:            {img.build_seconds:.1f}s ({'cached' if img.cached else 'built'})")
    return 0


def _boot(args) -> int:
    from ..hypervisor import Guest, GuestError, qemu_available
    from . import GuestBuildError, make_config_drive
    if not args.disk.is_file():
        return _err(f"{args.disk}: disk not found")
    reason = qemu_available()
    if reason:
        return _err(reason)
    keys = {}
    for i, kf in enumerate(args.key):
        try:
            text = kf.read_text().strip()
        except OSError as exc:
            return _err(f"{kf}: {exc.strerror}")
        if not text.startswith(("ssh-", "ecdsa-", "sk-")):
            return _err(f"{kf}: not an SSH public key")
        keys[f"key{i}"] = text
    with tempfile.TemporaryDirectory(prefix="xvt-guest-") as work:
        cd = None
        try:
            cd = make_config_drive(Path(work) / "config-2.img", uuid=str(uuid.uuid4()),
                                   hostname=f"{args.name}.novalocal", public_keys=keys)
        except GuestBuildError as exc:
            return _err(str(exc))
        guest = Guest(args.name, args.disk, workdir=work, overlay=not args.write,
                      memory_mb=args.memory, config_drive=cd)
        def interrupt(*_):
            raise KeyboardInterrupt()
        old = signal.signal(signal.SIGTERM, interrupt)
        old_int = signal.signal(signal.SIGINT, interrupt)   # also when started with SIGINT ignored
        try:
            guest.start()
            print(f"booting {args.disk} ({'writing it' if args.write else 'overlay'}), "
                  f"console {guest.console_path}", file=sys.stderr)
            secs = guest.wait_for_ssh(args.timeout)
            host, port = guest.ssh_address
            print(f"ssh: {host}:{port}  (ssh -p {port} cirros@{host}, password gocubsgo)")
            print(f"boot to SSH: {secs:.1f}s")
            print("Ctrl-C to power off", file=sys.stderr)
            sys.stdout.flush()
            while guest.running:
                time.sleep(0.5)
            print("guest powered off", file=sys.stderr)
            return 0
        except GuestError as exc:
            return _err(str(exc))
        except KeyboardInterrupt:
            print("powering off", file=sys.stderr)
            try:
                guest.powerdown(timeout=20)
            except GuestError:
                pass
            return 0
        finally:
            signal.signal(signal.SIGTERM, old)
            signal.signal(signal.SIGINT, old_int)
            guest.stop()

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

"""Real QEMU guests: boot to SSH, the seed's dd/md5 round trip across a power-off and a disk grown
to 1 GiB, hot-plug, changed extents, pause, early boot-failure errors, cleanup."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from xen_vhd_tempest.lab.hypervisor import Guest, GuestError

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("need_qemu")]

MiB = 1024 * 1024
GiB = 1024 * MiB
ROOT_DISK = ("p=$(awk '$2==\"/\" {print $1}' /proc/mounts); p=${p#/dev/}; "
             "echo /dev/$(basename $(readlink -f /sys/class/block/$p/..))")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    dst.chmod(0o644)
    return dst


def _root_offset(raw: Path) -> int:
    with open(raw, "rb") as f:
        mbr = f.read(512)
    return int.from_bytes(mbr[446 + 16 + 8:446 + 16 + 12], "little") * 512


def test_boot_md5_roundtrip_on_grown_disk(guest_image, config_drive, ssh_keypair, guests, ssh_to, tmp_path):
    pkey, _ = ssh_keypair
    volume = _copy(guest_image.raw_path, tmp_path / "volume.raw")
    g1 = guests("vm1", volume, overlay=False, config_drive=config_drive)
    g1.start()
    boot1 = g1.wait_for_ssh(120)
    assert "xen-vhd-tempest guest ready" in g1.console_log()

    with ssh_to(g1, pkey=pkey) as s:                      # key from the config drive
        assert s.check("hostname").strip() == "labguest"
        assert s.check("id -un").strip() == "cirros"
        assert s.check("sudo id -u").strip() == "0"
        disk = s.check(ROOT_DISK).strip()
        assert disk.startswith("/dev/") and disk[-1].isalpha()
        s.check(f"sudo dd if={disk} of=somefile bs=1024 count=10000 && md5sum somefile > somefile.md5 && sync")
        md5_guest = s.check("cat somefile.md5").split()[0]
    with ssh_to(g1, password=guest_image.password) as s:  # password login works too
        assert s.check("whoami").strip() == "cirros"
    assert md5_guest == hashlib.md5(guest_image.raw_path.read_bytes()[:10000 * 1024]).hexdigest()

    t0 = time.monotonic()
    g1.powerdown(timeout=30)
    down = time.monotonic() - t0
    assert not g1.running
    assert "filesystems clean" in g1.console_log()
    assert down < 25, f"power-off took {down:.1f}s (power button not handled?)"
    fsck = subprocess.run(["e2fsck", "-fn", f"{volume}?offset={_root_offset(volume)}"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    g1.stop()

    # A copy of the disk, grown to 1 GiB, boots again (overlay mode) and still has somefile;
    # a second guest from the pristine image runs at the same time on its own address.
    grown = _copy(volume, tmp_path / "grown.raw")
    with open(grown, "r+b") as f:
        f.truncate(GiB)
    g2 = guests("vm2", grown, config_drive=config_drive)
    g3 = guests("vm3", guest_image.raw_path)
    g2.start()
    g3.start()
    assert g2.ssh_address != g3.ssh_address
    boot2 = g2.wait_for_ssh(120)
    boot3 = g3.wait_for_ssh(120)
    with ssh_to(g2, pkey=pkey) as s:
        assert s.check("md5sum -c somefile.md5").strip() == "somefile: OK"
        assert s.check("cat /sys/block/$(basename $(%s))/size" % ROOT_DISK).strip() == str(GiB // 512)
    with ssh_to(g3, password=guest_image.password) as s:
        assert s.run("test -e somefile")[0] != 0
    print(f"boot-to-SSH: {boot1:.1f}s (volume), {boot2:.1f}s / {boot3:.1f}s (two at once), power-off {down:.1f}s")


def test_hotplug_changed_extents_read_disk_pause(guest_image, guests, ssh_to, tmp_path):
    g = guests("vm-hot", guest_image.raw_path)
    g.start()
    g.wait_for_ssh(120)
    with ssh_to(g, password=guest_image.password) as s:
        disk = s.check(ROOT_DISK).strip()
        before = set(s.check("ls /sys/block").split())

        # A second disk with a known pattern: the guest reads what we wrote.
        extra = tmp_path / "extra.raw"
        pattern = hashlib.sha256(b"lab").digest() * (2 * MiB // 32)
        extra.write_bytes(pattern)
        dev = g.attach_disk(extra, read_only=True)
        new = set()
        for _ in range(60):
            new = set(s.check("ls /sys/block").split()) - before
            if new:
                break
            time.sleep(0.25)
        assert len(new) == 1, f"no new block device after attach ({new})"
        name = new.pop()
        got = s.check(f"sudo dd if=/dev/{name} bs=1M count=1 2>/dev/null | md5sum").split()[0]
        assert got == hashlib.md5(pattern[:MiB]).hexdigest()
        # The guest's host tools: coreutils' md5sum by path (the story's fast whole-volume hash),
        # util-linux's lsblk and blkid (tempest's RemoteClient and scenarios call them).
        assert "GNU coreutils" in s.check("/bin/md5sum --version")
        assert s.check(f"sudo /bin/md5sum /dev/{name}").split()[0] == hashlib.md5(pattern).hexdigest()
        assert name in s.check("lsblk -lb --nodeps -o NAME,SIZE").split()
        assert f"{2 * MiB}" in s.check(f"lsblk -lb --nodeps -n -o SIZE /dev/{name}")
        assert "/dev/vd" in s.check('sudo blkid -t LABEL="config-2" -o device || sudo blkid -o device')
        g.detach_disk(dev)
        for _ in range(40):
            if name not in s.check("ls /sys/block").split():
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"/dev/{name} still present after detach")

        # The guest writes 8 sectors at 100 KiB on its disk (the gap before partition 1).
        s.check(f"sudo dd if=/dev/urandom of=/tmp/blob bs=512 count=8 2>/dev/null && "
                f"sudo dd if=/tmp/blob of={disk} bs=512 seek=200 conv=notrunc,fsync 2>/dev/null")
        blob_md5 = s.check("md5sum /tmp/blob").split()[0]

    extents = g.changed_extents()
    assert any(o <= 200 * 512 and 200 * 512 + 4096 <= o + n for o, n in extents), extents
    assert all(o % 512 == 0 and n % 512 == 0 and n > 0 for o, n in extents)
    assert all(a[0] + a[1] < b[0] for a, b in zip(extents, extents[1:])), "extents not merged/sorted"

    g.pause()
    assert g.running and g.paused
    assert hashlib.md5(g.read_disk(200 * 512, 4096)).hexdigest() == blob_md5
    assert g.read_disk(0, 440) == guest_image.raw_path.read_bytes()[:440]   # from the base
    g.resume()
    with ssh_to(g, password=guest_image.password) as s:
        assert s.check("echo alive").strip() == "alive"
    g.stop()
    g.stop()                                                                 # idempotent
    assert not g.running and g.rundir is None


def test_zeroed_first_mib_fails_early(guest_image, guests, tmp_path):
    broken = _copy(guest_image.raw_path, tmp_path / "zeroed.raw")
    with open(broken, "r+b") as f:
        f.write(b"\0" * MiB)
    g = guests("vm-nomb", broken, overlay=False)
    g.start()
    t0 = time.monotonic()
    with pytest.raises(GuestError) as info:
        g.wait_for_ssh(180)
    took = time.monotonic() - t0
    msg = str(info.value)
    assert "\n" not in msg
    assert "No bootable device" in msg or "Boot failed" in msg
    assert "not a bootable disk" in info.value.console_tail or "No bootable device" in info.value.console_tail
    assert took < 20, f"boot failure noticed after {took:.1f}s"


def test_missing_root_fails_early(guest_image, guests, tmp_path):
    broken = _copy(guest_image.raw_path, tmp_path / "noroot.raw")
    with open(broken, "r+b") as f:
        f.seek(_root_offset(broken))
        f.write(b"\0" * (64 * 1024))                                      # no ext4 superblock
    g = guests("vm-noroot", broken, overlay=False)
    g.start()
    t0 = time.monotonic()
    with pytest.raises(GuestError) as info:
        g.wait_for_ssh(180)
    assert "initramfs cannot mount root" in str(info.value)
    assert "LABEL=cirros-rootfs" in info.value.console_tail
    assert time.monotonic() - t0 < 60


def test_qemu_dies_with_its_parent(guest_image, tmp_path):
    """A caller killed with SIGKILL leaves no QEMU and no run directory behind (here with a long
    workdir holding a comma: the QMP socket moves to a short directory, QEMU options are escaped)."""
    repo = Path(__file__).resolve().parents[2]
    workdir = tmp_path / ("with,comma-" + "x" * 90)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(repo)!r})
        from xen_vhd_tempest.lab.hypervisor import Guest
        g = Guest("orphan", {str(guest_image.raw_path)!r}, workdir={str(workdir)!r})
        g.start()
        g.pause()
        g.resume()
        print(g.proc.pid, g.rundir, g.qmp_path.parent, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == -signal.SIGKILL, res.stderr
    pid, rundir, sockdir = res.stdout.split()
    assert sockdir != rundir
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            alive = b"qemu" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            alive = False
        if not alive and not Path(rundir).exists() and not Path(sockdir).exists():
            break
        time.sleep(0.2)
    else:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
        pytest.fail(f"qemu {pid} or {rundir} survived its parent")


def test_errors_are_one_line(guest_image, tmp_path):
    with pytest.raises(GuestError, match="not found"):
        Guest("x", tmp_path / "missing.raw", workdir=tmp_path).start()
    g = Guest("y", guest_image.raw_path, workdir=tmp_path)
    with pytest.raises(GuestError, match="not started"):
        g.wait_for_ssh(1)
    with pytest.raises(GuestError, match="not running"):
        g.pause()
    g.stop()


def test_busy_address_is_retried(guest_image, tmp_path, monkeypatch):
    """An address taken between the free check and QEMU's bind: QEMU fails, the guest retries."""
    import socket

    from xen_vhd_tempest.lab import addresses
    orig = addresses.allocate
    held = []

    def allocate(**kw):
        addr = orig(**kw)
        if not held:
            s = socket.socket()
            # As the allocator's probe and QEMU do: a TIME_WAIT left by an earlier guest's SSH
            # session on this address must not make the test's own bind fail.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
            s.listen()
            held.append(s)
        return addr

    monkeypatch.setattr(addresses, "allocate", allocate)
    g = Guest("retry", guest_image.raw_path, workdir=tmp_path)
    try:
        g.start()
        assert g.running
        assert g.ssh_address != held[0].getsockname()
        assert g.overlay_path.exists()
    finally:
        g.stop()
        held[0].close()
    assert list(tmp_path.iterdir()) == []

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

"""The guest image builder: layout, contents, cache, config drive, CLI errors (no QEMU boot)."""

from __future__ import annotations

import json
import struct
import subprocess
import tarfile
import time

import pytest

from xen_vhd_tempest.lab.guest import build as buildmod
from xen_vhd_tempest.lab.guest import build_guest_image, make_config_drive
from xen_vhd_tempest.lab.guest import kernel as kernelmod

pytestmark = pytest.mark.lab

MiB = 1024 * 1024


def _partitions(raw: bytes):
    parts = []
    for i in range(4):
        e = raw[446 + 16 * i:446 + 16 * (i + 1)]
        start, count = struct.unpack_from("<II", e, 8)
        if count:
            parts.append((e[0], e[4], start * 512, count * 512))
    return parts


def test_image_layout(guest_image):
    raw = guest_image.raw_path.read_bytes()
    assert guest_image.virtual_size == len(raw) == 64 * MiB
    assert raw[510:512] == b"\x55\xaa"
    assert raw[:440] == buildmod.MBR_BIN.read_bytes()[:440]          # syslinux MBR
    (act1, type1, start1, size1), (act2, type2, start2, size2) = _partitions(raw)
    assert (act1, type1, start1) == (0x80, 0x0E, MiB)
    assert (act2, type2) == (0, 0x83)
    assert start1 + size1 == start2 and start2 + size2 == len(raw)
    boot = raw[start1:start1 + 512]
    assert b"SYSLINUX" in boot[:16] and boot[510:512] == b"\x55\xaa"
    assert struct.unpack_from("<I", boot, 28)[0] == start1 // 512     # hidden sectors = partition start
    sb = raw[start2 + 1024:start2 + 2048]
    assert struct.unpack_from("<H", sb, 0x38)[0] == 0xEF53              # ext4 magic
    assert sb[0x78:0x88].rstrip(b"\0") == b"cirros-rootfs"
    assert guest_image.ssh_user == "cirros" and guest_image.password == "gocubsgo"


def test_boot_partition_files(guest_image):
    raw = guest_image.raw_path
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    listing = subprocess.run(["mdir", "-a", "-b", "-i", f"{raw}@@{MiB}", "::/"], check=True,
                             capture_output=True, text=True, env=env).stdout
    names = {line.rsplit("/", 1)[-1].lower() for line in listing.split()}
    assert {"ldlinux.sys", "ldlinux.c32", "syslinux.cfg", "vmlinuz", "initrd.img"} <= names
    cfg = subprocess.run(["mtype", "-i", f"{raw}@@{MiB}", "::/syslinux.cfg"], check=True,
                         capture_output=True, text=True, env=env).stdout
    assert "root=LABEL=cirros-rootfs" in cfg and "console=ttyS0" in cfg and "SERIAL 0" in cfg


def test_root_filesystem_contents(guest_image, tmp_path):
    raw = guest_image.raw_path.read_bytes()
    start2 = _partitions(raw)[1][2]

    def debugfs(req):
        return subprocess.run(["debugfs", "-R", req, f"{guest_image.raw_path}?offset={start2}"],
                              capture_output=True, text=True, check=True).stdout

    sudo = debugfs("stat /bin/sudo")
    assert "Mode:  04750" in sudo and "User:     0   Group:    27" in sudo
    shadow = debugfs("cat /etc/shadow")
    assert shadow.startswith("root:$6$") and "\ncirros:$6$" in shadow
    assert "cirros" in debugfs("cat /etc/group").split("sudo:x:27:")[1].splitlines()[0]
    assert "dropbear_ed25519_host_key" in debugfs("ls -l /etc/dropbear")
    assert "xen-vhd-tempest guest ready" in debugfs("cat /etc/init.d/rcS")
    home = debugfs("stat /home/cirros")
    assert "User:  1000   Group:  1000" in home
    fsck = subprocess.run(["e2fsck", "-fn", f"{guest_image.raw_path}?offset={start2}"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_xenserver_export(guest_image):
    with tarfile.open(guest_image.xenserver_image_path) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        assert names == ["./0.vhd"]
        head = tar.extractfile("./0.vhd").read(512)
    assert head[:8] == b"conectix" and head[28:32] == b"tap\0"
    assert struct.unpack_from(">Q", head, 48)[0] == guest_image.virtual_size


def test_xenserver_export_converts_back(guest_image, tmp_path):
    with tarfile.open(guest_image.xenserver_image_path) as tar:
        tar.extract("./0.vhd", tmp_path, filter="data")
    back = tmp_path / "back.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", tmp_path / "0.vhd", back], check=True)
    assert back.read_bytes() == guest_image.raw_path.read_bytes()


def test_cache_hit_and_warm_rebuild(guest_build, tmp_path):
    img = guest_build["image"]
    assert not img.cached
    t0 = time.monotonic()
    again = build_guest_image(cache_dir=guest_build["cache"], kernel=guest_build["kernel_tree"])
    assert again.cached and again.raw_path == img.raw_path
    assert time.monotonic() - t0 < 5
    # A different cache (a new key for the builder) with a warm kernel: a full rebuild, fast.
    t0 = time.monotonic()
    other = build_guest_image(cache_dir=tmp_path / "other", kernel=guest_build["kernel_tree"])
    rebuild = time.monotonic() - t0
    assert not other.cached
    assert rebuild <= 10, f"warm rebuild took {rebuild:.1f}s"
    print(f"cold build {guest_build['seconds']:.1f}s, warm rebuild {rebuild:.1f}s")


def test_module_order(guest_kernel):
    names = [p.name[:-3] for p in kernelmod.module_load_order(guest_kernel)]
    for needed in ("virtio_pci", "virtio_blk", "virtio_net", "button", "evdev", "vfat"):
        assert needed in names
    assert names.index("virtio") < names.index("virtio_pci")
    assert names.index("failover") < names.index("net_failover") < names.index("virtio_net")
    assert "ext4" not in names                                   # built in
    assert kernelmod.bzimage_version(guest_kernel.vmlinuz) == guest_kernel.version


def test_user_kernel_forms(guest_kernel, tmp_path):
    tree = guest_kernel.vmlinuz.parent.parent
    as_tree = kernelmod.user_kernel(tree, tmp_path)
    as_file = kernelmod.user_kernel(guest_kernel.vmlinuz, tmp_path)      # modules found beside boot/
    assert as_tree.version == as_file.version == guest_kernel.version
    assert as_tree.modules_dir == as_file.modules_dir == guest_kernel.modules_dir
    assert as_tree.identity != as_file.identity
    with pytest.raises(kernelmod.GuestBuildError, match="not a bzImage"):
        kernelmod.user_kernel(tmp_path / "x", tmp_path) if (tmp_path / "x").write_text("x") else None


def test_config_drive(tmp_path):
    path = make_config_drive(tmp_path / "cd.img", uuid="u-1", hostname="h1.novalocal",
                             public_keys={"a": "ssh-ed25519 AAAA a@b", "b": "ssh-rsa BBBB c@d"})
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    label = subprocess.run(["mlabel", "-i", path, "-s", "::"], capture_output=True, text=True, env=env).stdout
    assert "CONFIG-2" in label.upper()
    meta = json.loads(subprocess.run(["mtype", "-i", path, "::/openstack/latest/meta_data.json"],
                                     check=True, capture_output=True, text=True, env=env).stdout)
    assert meta["uuid"] == "u-1" and meta["hostname"] == "h1.novalocal"
    assert meta["public_keys"] == {"a": "ssh-ed25519 AAAA a@b\n", "b": "ssh-rsa BBBB c@d\n"}


@pytest.mark.parametrize("argv,code,text", [
    (["guest", "build", "--kernel", "/nonexistent/vmlinuz"], 1, "/nonexistent/vmlinuz: kernel not found"),
    (["guest", "build", "--kernel", "/etc/hostname"], 1, "not a bzImage"),
    (["guest", "boot", "/nonexistent.raw"], 1, "/nonexistent.raw: disk not found"),
    (["guest", "boot"], 2, "required"),
])
def test_cli_errors(argv, code, text):
    import os
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    # Only this module's commands (the full CLI also loads colleagues' modules).
    main = ("import argparse, sys\n"
            "from xen_vhd_tempest.lab.guest import commands\n"
            "p = argparse.ArgumentParser(prog='xen-vhd-tempest')\n"
            "sub = p.add_subparsers(dest='command')\n"
            "commands.add_parser(sub)\n"
            "a = p.parse_args(sys.argv[1:])\n"
            "sys.exit(a.func(a))\n")
    res = subprocess.run([sys.executable, "-c", main, *argv], capture_output=True, text=True, cwd=repo, env=env)
    assert res.returncode == code
    assert text in res.stderr
    assert "Traceback" not in res.stderr
    if code == 1:
        assert len(res.stderr.strip().splitlines()) == 1

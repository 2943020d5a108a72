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

"""Build the lab guest: a 64 MiB raw disk that boots by itself under QEMU, with no root-only step.

Layout (MBR, 512-byte sectors)::

    0            syslinux mbr.bin, partition table
    1 MiB        partition 1, FAT16, active: ldlinux.sys, syslinux.cfg, vmlinuz, initrd.img
    1+B MiB      partition 2, ext4 label cirros-rootfs (mke2fs -d at an offset, under fakeroot)

The initramfs (a newc cpio written here, no cpio tool needed) loads the virtio / ACPI button /
config-drive modules, finds ``root=LABEL=cirros-rootfs`` and switch_roots. The root holds
static busybox, dropbear, coreutils' md5sum and util-linux's lsblk/blkid with their libraries,
a tiny setuid ``sudo`` (C, compiled with ``gcc -static``), users cirros/root (password gocubsgo), and boot scripts (see ``files/``).
Nothing per instance is baked in except the host keys, generated at build time.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

from . import kernel as kernelmod
from .disk import mbr_bytes
from .errors import GuestBuildError

MiB = 1024 * 1024
SECTOR = 512
DISK_SIZE = 64 * MiB
BOOT_START = 1 * MiB
ROOT_LABEL = "cirros-rootfs"
BOOT_LABEL = "XVTBOOT"
READY_LINE = "xen-vhd-tempest guest ready"
SSH_USER = "cirros"
PASSWORD = "gocubsgo"
# openssl passwd -6 -salt xenvhdtempest gocubsgo
PASSWORD_HASH = ("$6$xenvhdtempest$9l34EJxiv1GHvlmUhJyC0yWClqd9PbrDIPGZk045f6Z0."
                 "tIq0uuIybEdEoMYsQy5KhZqaMh/n9Tv/mxEPspFh0")
CIRROS_UID = 1000
SUDO_GID = 27
FORMAT_VERSION = "2"   # bump when the image layout changes in a way the source hash would not show

FILES = Path(__file__).resolve().parent / "files"
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
DROPBEAR = Path("/usr/sbin/dropbear")
DROPBEARKEY = Path("/usr/bin/dropbearkey")
# Dynamically linked host tools the guest carries (with their libraries) in place of busybox's
# applets, as cirros and distribution images carry util-linux: name in /bin -> (host path, package).
# md5sum: coreutils' hashes 1 GiB about twice as fast as busybox's under TCG (the scenario's
# byte compare is one md5sum over the volume; on cirros it stays busybox's, which is correct,
# only slower). lsblk/blkid: what tempest's RemoteClient and scenarios call.
HOST_TOOLS = {
    "dropbear": (DROPBEAR, "dropbear-bin"),
    "md5sum": (Path("/usr/bin/md5sum"), "coreutils"),
    "lsblk": (Path("/usr/bin/lsblk"), "util-linux"),
    "blkid": (Path("/usr/sbin/blkid"), "util-linux"),
}

KERNEL_CMDLINE = f"root=LABEL={ROOT_LABEL} ro console=tty0 console=ttyS0,115200n8 panic=0"


@dataclass
class BuildResult:
    raw_path: Path
    xenserver_image_path: Path
    virtual_size: int
    cached: bool
    timings: dict = field(default_factory=dict)
    kernel_version: str = ""
    key: str = ""


# --- small helpers -----------------------------------------------------------------------------

def _run(cmd, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, **kw)
    except FileNotFoundError:
        raise GuestBuildError(f"{cmd[0]} not found: install it (see bindep.txt, profile lab)") from None
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        raise GuestBuildError(
            f"{Path(str(cmd[0])).name} failed: {lines[-1] if lines else f'exit status {exc.returncode}'}") from None


def _sha256_file(path: Path, h=None):
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def _is_static_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", ident, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", ident, 0x36)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", ph, i * phentsize)[0] != 3 for i in range(phnum))  # PT_INTERP


def find_busybox() -> Path:
    for p in BUSYBOX_CANDIDATES:
        if p.is_file() and _is_static_elf(p):
            return p
    raise GuestBuildError("no static busybox at /bin/busybox: install busybox-static (bindep.txt, profile lab)")


def _shared_libs(binary: Path) -> list[Path]:
    """The ELF interpreter and libraries ``binary`` loads (from ldd)."""
    out = _run(["ldd", binary]).stdout.decode()
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" (", 1)[0].strip()
            if target and target != "not found" and target.startswith("/"):
                libs.append(Path(target))
            elif target == "not found":
                raise GuestBuildError(f"{binary}: library {line.split()[0]} not found (ldd)")
        elif line.startswith("/"):
            libs.append(Path(line.split(" (", 1)[0]))
    return libs


def _host_inputs() -> dict[str, Path]:
    """Host files that go into the image (their content is part of the cache key)."""
    inputs = {"busybox": find_busybox(), "mbr.bin": MBR_BIN}
    for name, (p, package) in {**HOST_TOOLS, "dropbearkey": (DROPBEARKEY, "dropbear-bin")}.items():
        if not p.is_file():
            raise GuestBuildError(f"{p} not found: install {package} (bindep.txt, profile lab)")
        inputs[name] = p
    if not MBR_BIN.is_file():
        raise GuestBuildError(f"{MBR_BIN} not found: install syslinux-common (bindep.txt, profile lab)")
    for tool, _package in HOST_TOOLS.values():
        for lib in _shared_libs(tool):
            inputs["lib:" + str(lib)] = lib
    return inputs


def _tool_versions() -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package}=${Version}\n",
             "syslinux", "syslinux-common", "mtools", "e2fsprogs", "busybox-static",
             *sorted({package for _tool, package in HOST_TOOLS.values()})],
            capture_output=True, text=True).stdout
    except FileNotFoundError:
        out = ""
    return out


def _source_digest(h) -> None:
    here = Path(__file__).resolve().parent
    for p in sorted([here / "build.py", here / "kernel.py", *FILES.iterdir()]):
        if p.is_file():
            h.update(p.name.encode() + b"\0")
            _sha256_file(p, h)


# --- sudo helper -------------------------------------------------------------------------------

def compile_sudo(cache_dir: Path) -> Path:
    src = FILES / "sudo.c"
    digest = _sha256_file(src).hexdigest()[:16]
    out = cache_dir / "tools" / f"sudo-{digest}"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise GuestBuildError("no C compiler for the guest's sudo helper: install gcc and libc6-dev (bindep.txt)")
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    _run([cc, "-static", "-Os", "-s", "-o", tmp, src])
    if not _is_static_elf(tmp):
        tmp.unlink()
        raise GuestBuildError(f"{cc} -static did not produce a static binary for sudo")
    tmp.rename(out)
    return out


# --- initramfs (newc cpio) ---------------------------------------------------------------------

class Cpio:
    def __init__(self):
        self.parts: list[bytes] = []
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev=(0, 0), nlink=1):
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0))
        self.ino += 1
        blob = hdr.encode() + nb
        blob += b"\0" * (-len(blob) % 4)
        blob += data + b"\0" * (-len(data) % 4)
        self.parts.append(blob)

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name, data: bytes, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self.ino = 0
        self._entry("TRAILER!!!", 0)
        return b"".join(self.parts)


def make_initramfs(busybox: Path, modules: list[Path]) -> bytes:
    c = Cpio()
    for d in ("bin", "dev", "etc", "lib", "lib/modules", "newroot", "proc", "sys", "run", "tmp"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in _busybox_applets(busybox):
        if applet != "busybox":
            c.symlink(f"bin/{applet}", "busybox")
    c.file("init", (FILES / "init").read_bytes(), 0o755)
    names = []
    for m in modules:
        name = m.name[:-3]
        names.append(name)
        c.file(f"lib/modules/{name}.ko", m.read_bytes())
    c.file("etc/modules", ("\n".join(names) + "\n").encode())
    return gzip.compress(c.finish(), compresslevel=6, mtime=0)


def _busybox_applets(busybox: Path) -> list[str]:
    out = _run([busybox, "--list"]).stdout.decode()
    return [a for a in out.split() if a and "/" not in a]


# --- root filesystem ---------------------------------------------------------------------------

def _write(path: Path, text: str | bytes, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    path.chmod(mode)


def make_root_tree(root: Path, *, busybox: Path, sudo: Path, workdir: Path) -> list[str]:
    """Populate ``root``; return the shell commands (run under fakeroot) that set ownership."""
    for d in ("bin", "dev", "etc/dropbear", "etc/init.d", "etc/acpi/PWRF", "home/cirros", "lib",
              "lib64", "mnt", "proc", "root", "run", "sys", "tmp", "var/log", "var/run", "usr"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "root").chmod(0o700)
    (root / "home/cirros").chmod(0o755)
    (root / "sbin").symlink_to("bin")
    (root / "usr/bin").symlink_to("../bin")
    (root / "usr/sbin").symlink_to("../bin")

    shutil.copyfile(busybox, root / "bin/busybox")
    (root / "bin/busybox").chmod(0o755)
    for applet in _busybox_applets(busybox):
        if applet not in ("busybox", "sudo", *HOST_TOOLS):
            (root / "bin" / applet).symlink_to("busybox")

    for name, (tool, _package) in HOST_TOOLS.items():
        shutil.copyfile(tool, root / "bin" / name)
        (root / "bin" / name).chmod(0o755)
        for lib in _shared_libs(tool):
            dest = root / str(lib).lstrip("/")
            if str(lib).startswith("/usr/lib/"):
                dest = root / str(lib)[len("/usr/"):]
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(lib.resolve(), dest)
                dest.chmod(0o755)

    shutil.copyfile(sudo, root / "bin/sudo")

    keys = root / "etc/dropbear"
    for kind, extra in (("ed25519", []), ("ecdsa", []), ("rsa", ["-s", "2048"])):
        _run([DROPBEARKEY, "-t", kind, *extra, "-f", keys / f"dropbear_{kind}_host_key"])

    etc = root / "etc"
    _write(etc / "passwd", "root:x:0:0:root:/root:/bin/sh\n"
                           f"cirros:x:{CIRROS_UID}:{CIRROS_UID}:cirros:/home/cirros:/bin/sh\n")
    _write(etc / "group", "root:x:0:\ntty:x:5:\n"
                          f"sudo:x:{SUDO_GID}:cirros\ncirros:x:{CIRROS_UID}:\n")
    _write(etc / "shadow", f"root:{PASSWORD_HASH}:19000:0:99999:7:::\n"
                           f"cirros:{PASSWORD_HASH}:19000:0:99999:7:::\n", 0o600)
    _write(etc / "shells", "/bin/sh\n/bin/ash\n")
    _write(etc / "hostname", "cirros\n")
    _write(etc / "hosts", "127.0.0.1 localhost\n")
    _write(etc / "nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n")
    _write(etc / "resolv.conf", "")
    _write(etc / "fstab", f"LABEL={ROOT_LABEL} / ext4 defaults 0 1\n")
    _write(etc / "xen-vhd-tempest-guest", f"format {FORMAT_VERSION}\n")
    shutil.copyfile(FILES / "profile", etc / "profile")
    shutil.copyfile(FILES / "inittab", etc / "inittab")
    shutil.copyfile(FILES / "udhcpc.script", etc / "udhcpc.script")
    for name in ("rcS", "rcK", "config-drive"):
        shutil.copyfile(FILES / name, etc / "init.d" / name)
    shutil.copyfile(FILES / "power-button", etc / "acpi/PWRF/00000080")
    for p in (etc / "udhcpc.script", etc / "init.d/rcS", etc / "init.d/rcK", etc / "init.d/config-drive",
              etc / "acpi/PWRF/00000080"):
        p.chmod(0o755)
    for p in keys.iterdir():
        p.chmod(0o600)
    return [
        "chown -hR 0:0 root",
        f"chown -hR {CIRROS_UID}:{CIRROS_UID} root/home/cirros",
        f"chown 0:{SUDO_GID} root/bin/sudo",
        "chmod 4750 root/bin/sudo",
    ]


# --- disk --------------------------------------------------------------------------------------

def _syslinux_cfg() -> str:
    return (
        "SERIAL 0 115200\n"
        "DEFAULT linux\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "SAY xen-vhd-tempest guest: syslinux loading the kernel\n"
        "LABEL linux\n"
        "  KERNEL /vmlinuz\n"
        "  INITRD /initrd.img\n"
        f"  APPEND {KERNEL_CMDLINE}\n"
    )


def build_disk(out: Path, *, vmlinuz: Path, initrd: bytes, root_tree: Path, ownership: list[str],
               key: str, workdir: Path) -> None:
    boot_bytes = vmlinuz.stat().st_size + len(initrd) + 256 * 1024
    boot_mib = max(8, -(-int(boot_bytes * 1.1) // MiB) + 1)
    root_start = BOOT_START + boot_mib * MiB
    root_size = DISK_SIZE - root_start
    if root_size < 16 * MiB:
        raise GuestBuildError(f"{vmlinuz}: kernel and initramfs ({boot_bytes // MiB} MiB) leave no room "
                              f"for the root filesystem in a {DISK_SIZE // MiB} MiB disk")
    seed = hashlib.sha256(key.encode()).digest()
    with open(out, "wb") as f:
        f.truncate(DISK_SIZE)
        f.write(mbr_bytes(MBR_BIN.read_bytes(), [(BOOT_START // SECTOR, boot_mib * MiB // SECTOR, 0x0E, True),
                           (root_start // SECTOR, root_size // SECTOR, 0x83, False)],
                          int.from_bytes(seed[:4], "little")))

    img_at = f"{out}@@{BOOT_START}"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLS_NO_VFAT="0")
    _run(["mformat", "-i", img_at, "-T", boot_mib * MiB // SECTOR, "-h", "64", "-s", "32",
          "-H", BOOT_START // SECTOR, "-N", seed[4:8].hex(), "-v", BOOT_LABEL, "::"], env=env)
    (workdir / "syslinux.cfg").write_text(_syslinux_cfg())
    (workdir / "initrd.img").write_bytes(initrd)
    _run(["mcopy", "-i", img_at, "-m", vmlinuz, "::/vmlinuz"], env=env)
    _run(["mcopy", "-i", img_at, workdir / "initrd.img", "::/initrd.img"], env=env)
    _run(["mcopy", "-i", img_at, workdir / "syslinux.cfg", "::/syslinux.cfg"], env=env)
    _run(["syslinux", "--offset", BOOT_START, "--install", out], env=env)

    fs_uuid = str(uuidlib.UUID(bytes=seed[8:24]))
    script = " && ".join([*ownership,
        f"mke2fs -q -F -t ext4 -L {ROOT_LABEL} -U {fs_uuid} -m 0 -N 2048 "
        f"-E offset={root_start},hash_seed={fs_uuid},root_owner=0:0 -d root {out} {root_size // 1024}k"])
    fakeroot = shutil.which("fakeroot")
    cmd = ["sh", "-ec", script]
    if os.geteuid() != 0:
        if not fakeroot:
            raise GuestBuildError("fakeroot not found: install it (bindep.txt, profile lab)")
        cmd = [fakeroot, "--", *cmd]
    env2 = dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000")
    _run(cmd, cwd=root_tree.parent, env=env2)
    if out.stat().st_size != DISK_SIZE:
        raise GuestBuildError(f"{out}: disk grew to {out.stat().st_size} bytes while building")


# --- the whole thing ---------------------------------------------------------------------------

def build(cache_dir: Path, kernel_path: Path | None = None, progress=None) -> BuildResult:
    t0 = time.monotonic()
    timings = {}
    say = progress or (lambda msg: None)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)

    if kernel_path is None:
        kern = kernelmod.debian_cloud_kernel(cache_dir, say)
    else:
        kern = kernelmod.user_kernel(Path(kernel_path), cache_dir, say)
    timings["kernel"] = time.monotonic() - t0

    inputs = _host_inputs()
    h = hashlib.sha256(f"xen-vhd-tempest guest {FORMAT_VERSION}\0{kern.identity}\0".encode())
    h.update(_tool_versions().encode())
    _source_digest(h)
    for name, p in sorted(inputs.items()):
        h.update(name.encode() + b"\0")
        _sha256_file(p, h)
    key = h.hexdigest()[:20]
    final = cache_dir / "guest" / key
    raw = final / "disk.raw"
    tgz = final / "xenserver.tgz"
    timings["key"] = time.monotonic() - t0

    if (final / "meta.json").is_file() and raw.is_file():
        if not tgz.is_file():
            _export_xenserver(raw, tgz, say)
        return BuildResult(raw, tgz, raw.stat().st_size, True,
                           timings, kern.version, key)

    say(f"building guest image {key} (kernel {kern.version})")
    (cache_dir / "guest").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache_dir / "guest"))
    try:
        sudo = compile_sudo(cache_dir)
        timings["sudo"] = time.monotonic() - t0
        modules = kernelmod.module_load_order(kern)
        initrd = make_initramfs(inputs["busybox"], modules)
        timings["initramfs"] = time.monotonic() - t0
        root = work / "root"
        root.mkdir()
        ownership = make_root_tree(root, busybox=inputs["busybox"], sudo=sudo, workdir=work)
        timings["rootfs"] = time.monotonic() - t0
        out = work / "disk.raw"
        build_disk(out, vmlinuz=kern.vmlinuz, initrd=initrd, root_tree=root, ownership=ownership,
                   key=key, workdir=work)
        timings["disk"] = time.monotonic() - t0
        shutil.rmtree(root, ignore_errors=True)
        out.chmod(0o444)
        (work / "meta.json").write_text(json.dumps({
            "key": key, "kernel": kern.version, "kernel_identity": kern.identity,
            "modules": [m.name for m in modules], "virtual_size": DISK_SIZE,
            "ssh_user": SSH_USER, "password": PASSWORD, "root_label": ROOT_LABEL,
            "cmdline": KERNEL_CMDLINE,
        }, indent=2) + "\n")
        for name in ("syslinux.cfg", "initrd.img"):
            (work / name).unlink(missing_ok=True)
        work.chmod(0o755)
        try:
            work.rename(final)
        except OSError:
            if not (final / "meta.json").is_file():      # lost a race to nothing: retry once
                shutil.rmtree(final, ignore_errors=True)
                work.rename(final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    _export_xenserver(raw, tgz, say)
    timings["total"] = time.monotonic() - t0
    return BuildResult(raw, tgz, DISK_SIZE, False, timings, kern.version, key)


def _export_xenserver(raw: Path, tgz: Path, say) -> None:
    """Single-member XenServer image (./0.vhd in a tgz) through the reference converter."""
    from converter.builder import image_from_raw
    say("exporting XenServer image")
    tmp = tgz.with_name(tgz.name + f".tmp{os.getpid()}")
    try:
        image_from_raw(raw, tmp)
        tmp.chmod(0o644)
        tmp.rename(tgz)
    except Exception as exc:   # the converter's own errors: one line, naming what failed
        raise GuestBuildError(f"{raw}: exporting the XenServer image failed: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)

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

"""The guest kernel: Debian's cloud kernel fetched with ``apt-get download`` (never installed),
or one the user passes; and the modules the initramfs must load, with their dependencies.

A kernel source is normalised into a :class:`Kernel`: the bzImage, its module tree (possibly
absent when the user's kernel has everything built in) and an identity string for cache keys.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import GuestBuildError

META_PACKAGE = "linux-image-cloud-amd64"

# What the guest needs as modules (anything built in is simply not loaded).
# Order matters only for readability: dependencies are resolved and sorted.
WANTED_MODULES = (
    "ext4",            # built in on Debian's cloud kernel; loaded if a user's kernel has it as a module
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "button",          # ACPI power button
    "evdev",           # /dev/input/event* for busybox acpid
    "vfat",            # config drive (vfat flavour)
    "isofs",           # config drive (iso9660 flavour, as nova makes by default)
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
)


@dataclass
class Kernel:
    vmlinuz: Path
    version: str
    modules_dir: Path | None      # .../lib/modules/<version>, or None
    identity: str                 # goes into the image cache key


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise GuestBuildError(f"{cmd[0]} not found: install it (see bindep.txt, profile lab)") from None
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        last = detail[-1] if detail else f"exit status {exc.returncode}"
        raise GuestBuildError(f"{' '.join(map(str, cmd[:3]))}: {last}") from None


def bzimage_version(path: Path) -> str | None:
    """The version string inside a bzImage (setup header kernel_version), e.g. 6.1.0-56-cloud-amd64."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x10000)
    except OSError:
        return None
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return None
    ptr = int.from_bytes(head[0x20E:0x210], "little")
    if not ptr:
        return None
    start = ptr + 0x200
    raw = head[start:start + 256].split(b"\0", 1)[0].decode("ascii", "replace")
    return raw.split(" ", 1)[0] or None


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _kernel_from_tree(root: Path, identity: str) -> Kernel:
    """A Debian-style unpacked kernel package: boot/vmlinuz-V and lib/modules/V."""
    candidates = sorted((root / "boot").glob("vmlinuz-*"))
    if not candidates:
        raise GuestBuildError(f"{root}: no boot/vmlinuz-* in this kernel tree")
    vmlinuz = candidates[-1]
    version = vmlinuz.name[len("vmlinuz-"):]
    for base in (root / "lib" / "modules" / version, root / "usr" / "lib" / "modules" / version):
        if base.is_dir():
            return Kernel(vmlinuz, version, base, identity)
    return Kernel(vmlinuz, version, None, identity)


def _unpack_deb(deb: Path, dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def debian_cloud_kernel_package() -> tuple[str, str]:
    """(package, version) of the real kernel package the cloud meta-package depends on."""
    out = _run(["apt-cache", "show", "--no-all-versions", META_PACKAGE]).stdout
    m = re.search(r"^Depends:.*?\b(linux-image-[0-9][^\s,(]*-cloud-amd64)\s*\(=\s*([^)\s]+)\)", out, re.M)
    if not m:
        raise GuestBuildError(f"apt-cache show {META_PACKAGE}: no linux-image-*-cloud-amd64 in Depends")
    return m.group(1), m.group(2)


def debian_cloud_kernel(cache_dir: Path, progress=None) -> Kernel:
    """Debian's cloud kernel, downloaded once into ``cache_dir/kernels`` and unpacked there."""
    kdir = cache_dir / "kernels"
    kdir.mkdir(parents=True, exist_ok=True)
    try:
        package, version = debian_cloud_kernel_package()
    except GuestBuildError as exc:
        # Offline or not Debian: fall back to the newest kernel already in the cache.
        cached = sorted(p for p in kdir.iterdir()
                        if p.is_dir() and p.name.startswith("linux-image-") and (p / "boot").is_dir())
        if cached:
            tree = cached[-1]
            return _kernel_from_tree(tree, f"deb:{tree.name}")
        raise GuestBuildError(f"cannot resolve the guest kernel ({exc}); pass --kernel PATH") from None
    name = f"{package}_{version}"
    tree = kdir / name
    if not (tree / "boot").is_dir():
        debs = list(kdir.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
        if not debs:
            if progress:
                progress(f"downloading {package} {version}")
            try:
                _run(["apt-get", "download", f"{package}={version}"], cwd=kdir)
            except GuestBuildError as exc:
                cached = sorted(p for p in kdir.iterdir()
                                if p.is_dir() and p.name.startswith("linux-image-") and (p / "boot").is_dir())
                if cached:          # offline: an older cloud kernel already in the cache will do
                    if progress:
                        progress(f"cannot download {package} ({exc}); using cached {cached[-1].name}")
                    return _kernel_from_tree(cached[-1], f"deb:{cached[-1].name}")
                raise GuestBuildError(f"cannot download the guest kernel {package}={version}: {exc}") from None
            debs = [d for d in kdir.glob(f"{package}_*.deb") if version.replace(":", "%3a") in d.name]
            if not debs:
                raise GuestBuildError(f"apt-get download {package}={version} left no .deb in {kdir}")
        if progress:
            progress(f"unpacking {debs[0].name}")
        _unpack_deb(debs[0], tree)
        for d in debs:
            d.unlink(missing_ok=True)
    return _kernel_from_tree(tree, f"deb:{name}")


def user_kernel(path: Path, cache_dir: Path, progress=None) -> Kernel:
    """A kernel the user passes: a .deb, an unpacked package tree, or a bzImage file.

    For a bare bzImage the modules are looked up beside it (``lib/modules/V`` next to its
    ``boot/``) and then in ``/lib/modules/V``; without them the kernel must have virtio built in.
    """
    path = Path(path)
    if not path.exists():
        raise GuestBuildError(f"{path}: kernel not found")
    if path.is_dir():
        tree_id = f"tree:{path.resolve()}:" + ",".join(
            f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in sorted((path / "boot").glob("vmlinuz-*")))
        return _kernel_from_tree(path, tree_id)
    if path.suffix == ".deb":
        digest = _file_digest(path)
        tree = cache_dir / "kernels" / f"user-{digest[:16]}"
        tree.parent.mkdir(parents=True, exist_ok=True)
        if not (tree / "boot").is_dir():
            if progress:
                progress(f"unpacking {path.name}")
            _unpack_deb(path, tree)
        return _kernel_from_tree(tree, f"userdeb:{digest}")
    version = bzimage_version(path)
    if version is None:
        raise GuestBuildError(f"{path}: not a bzImage kernel (no HdrS setup header), nor a .deb or a directory")
    modules = None
    for base in (path.resolve().parent.parent / "lib" / "modules" / version, Path("/lib/modules") / version):
        if base.is_dir():
            modules = base
            break
    return Kernel(path, version, modules, f"bzimage:{_file_digest(path)}:{modules}")


# --- modules -------------------------------------------------------------------------------

_DEPENDS = re.compile(rb"(?:^|\0)depends=([^\0]*)\0")


def _module_index(modules_dir: Path) -> dict[str, Path]:
    index = {}
    for p in (modules_dir / "kernel").rglob("*.ko"):
        index[p.name[:-3].replace("-", "_")] = p
    return index


def _builtin(modules_dir: Path) -> set[str]:
    names = set()
    try:
        for line in (modules_dir / "modules.builtin").read_text().splitlines():
            names.add(os.path.basename(line).rsplit(".ko", 1)[0].replace("-", "_"))
    except OSError:
        pass
    return names


def module_load_order(kernel: Kernel, wanted=WANTED_MODULES) -> list[Path]:
    """Module files to insmod, dependencies first (from each module's modinfo ``depends``).

    Built-in or absent modules are skipped. A kernel without any module tree is taken as having
    everything built in; one with a tree but without the virtio drivers is an error."""
    if kernel.modules_dir is None:
        return []
    index = _module_index(kernel.modules_dir)
    builtin = _builtin(kernel.modules_dir)
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        path = index.get(name)
        if path is None:
            return
        if name in chain:
            raise GuestBuildError(f"{path}: module dependency loop {' -> '.join(chain + (name,))}")
        data = path.read_bytes()
        m = _DEPENDS.search(data)
        deps = [d for d in (m.group(1).decode().split(",") if m else []) if d]
        for dep in deps:
            visit(dep, chain + (name,))
        seen.add(name)
        order.append(path)

    for name in wanted:
        visit(name, ())
    missing = [n for n in ("virtio_pci", "virtio_blk", "virtio_net")
               if n not in seen and n not in builtin]
    if missing:
        raise GuestBuildError(
            f"{kernel.vmlinuz}: kernel {kernel.version} has neither modules nor built-in drivers "
            f"for {', '.join(missing)}")
    return order

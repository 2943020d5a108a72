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

"""Cinder source trees for the tests: copies of the installed (pinned) cinder package, patched.

``fixed``: the one-line fix of the upstream bug (``qemu_img_info`` passes the format
inspector's name, ``vhd``, to ``qemu-img info -f``; qemu's driver is ``vpc``): the name goes
through ``fixup_disk_format`` as every other qemu-img call's does. ``no-relink`` and
``no-resize`` are the fixed tree with one step of the XenServer path removed (``fix_vhd_chain``,
``resize_vhd`` in ``coalesce_chain``), as a regressing patch would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PINNED = "29.0.0"          # setup.cfg's cinder extra: what these trees and the tests prove things of
QEMU_IMG_INFO = "           '-f', format_name, '--output=json']"
FIX = ("image/image_utils.py", QEMU_IMG_INFO, "           '-f', fixup_disk_format(format_name), '--output=json']")
BREAKS = {
    "no-relink": ("image/image_utils.py", "        fix_vhd_chain(chain)\n", ""),
    "no-resize": ("image/image_utils.py", "            resize_vhd(parent, size, journal_file)\n", ""),
}


def installed_cinder() -> Path:
    """The installed package's directory, found without importing it (its options would land on
    this process's global oslo.config CONF)."""
    import importlib.metadata
    import importlib.util
    installed = importlib.metadata.version("cinder")
    assert installed == PINNED, f"the tests are written against cinder {PINNED}, installed is {installed}"
    return Path(importlib.util.find_spec("cinder").origin).parent


def _patch(tree: Path, path, old, new):
    target = tree / "cinder" / path
    text = target.read_text()
    assert text.count(old) == 1, f"{path}: the line to patch is not in cinder {PINNED} as expected: {old!r}"
    target.write_text(text.replace(old, new))


def cinder_tree(dest: Path, variant: str = "fixed") -> Path:
    """A copy of the installed cinder under ``dest`` (``dest/cinder``), patched; returns ``dest``."""
    dest = Path(dest)
    shutil.copytree(installed_cinder(), dest / "cinder", ignore=shutil.ignore_patterns("tests", "__pycache__"))
    _patch(dest, *FIX)
    if variant != "fixed":
        _patch(dest, *BREAKS[variant])
    return dest

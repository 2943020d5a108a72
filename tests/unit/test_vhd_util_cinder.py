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

"""Upstream Cinder's XenServer path with xen-vhd-util as its vhd-util.

Cinder's function runs in a fresh Python process of its own, as in cinder-volume: importing
Cinder registers options on oslo.config's global CONF, which tempest's tests in this session
have already parsed (ArgsAlreadyParsedError).
"""

import os
import subprocess
import sys

import pytest

from converter.builder import ImageBuilder, build_pattern

# Cinder (the release pinned in setup.cfg's cinder/test extras) turning a XenServer tgz into one
# coalesced VHD in place, exactly as cinder-volume calls it for an image-backed volume.
CINDER_CALL = """
import sys
from cinder.image import image_utils
image_utils.CONF.set_override("image_conversion_dir", sys.argv[2])
image_utils.replace_xenserver_image_with_coalesced_vhd(sys.argv[1])
"""
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20


@pytest.fixture
def vhd_util_on_path(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "vhd-util"
    tool.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m converter.vhdutil \"$@\"\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    # Cinder runs vhd-util and tar via utils.execute without run_as_root: no root helper is
    # involved; only its scratch directory is configured.
    return str(tool)


@pytest.mark.parametrize("preallocated", [False, True])
def test_replace_xenserver_image_with_coalesced_vhd(tmp_path, vhd_util_on_path, preallocated):
    b = ImageBuilder(build_pattern(0, 3 * MiB))
    b.snapshot(size=8 * MiB)
    b.write(5000, build_pattern(1, 70_000))
    b.write(7 * MiB, b"\x5a" * 4096)
    b.snapshot(size=12 * MiB + 512)        # not a whole MiB
    b.write(12 * MiB - 1024, b"\x11" * 1536)
    image = b.build(str(tmp_path / "image.tgz"), max_table_entries=(1 << 20) if preallocated else None)
    proc = subprocess.run([sys.executable, "-c", CINDER_CALL, image, str(tmp_path / "conv")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", image, str(out)], check=True)
    assert out.read_bytes() == b.expected()

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

"""Known-wrong ways to turn a XenServer image into a volume, on purpose.

The lab's Cinder can be told (``conversion_mode``) to use one of the converter's known-wrong
variants (``converter.variants.VARIANTS``: ``raw-copy``, ``leaf-only``, ``no-resize``,
``ignore-bitmaps``, ``wrong-order``, ``truncate``) instead of the reference conversion, so a
harness can prove it notices each regression. They use the converter's reader and compositor
with a different rule: the lab keeps no VHD reader of its own.

``extract_members``: the chain's members as files, kept from ``lab.faulty`` (the converter's
``archive.extract_members`` does the work; the compute side calls that directly).
"""

from __future__ import annotations

from pathlib import Path

from converter import archive
from converter.variants import VARIANTS, convert_variant

from ..errors import LabError


class FaultyConversionError(LabError):
    def __init__(self, message):
        super().__init__(400, message, kind="badRequest")


def convert(variant: str, tgz, dest) -> int:
    """Convert XenServer image ``tgz`` into raw ``dest`` the way ``variant`` gets it wrong; its size."""
    if variant not in VARIANTS:
        raise FaultyConversionError(f"unknown known-wrong conversion {variant!r}")
    return convert_variant(str(tgz), str(dest), variant).virtual_size


def extract_members(tgz, directory) -> list[Path]:
    """The chain members of a XenServer image as ``N.vhd`` files in ``directory``, newest first."""
    from converter.errors import VhdError
    try:
        return [Path(path) for path, _where in archive.extract_members(tgz, directory)]
    except VhdError as error:
        raise FaultyConversionError(str(error)) from None

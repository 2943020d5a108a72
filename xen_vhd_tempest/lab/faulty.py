"""Wrong ways to turn a XenServer image into a volume, on purpose.

The lab's Cinder can be told (``conversion_mode``) to use one of the converter's known-wrong
variants instead of the reference conversion, so a harness can prove it notices each
regression: ``raw-copy``, ``leaf-only``, ``no-resize``, ``ignore-bitmaps``, ``wrong-order``,
``truncate`` (see ``converter.variants``). They use the converter's reader and compositor
with a different rule - the lab keeps no VHD reader of its own.
"""

from __future__ import annotations

from pathlib import Path

from converter import archive
from converter.variants import VARIANTS, convert_variant

MODES = tuple(VARIANTS)


class FaultyConversionError(Exception):
    user_facing = True


def convert(mode: str, tgz, dest, reference=None) -> int:
    """Convert XenServer image ``tgz`` into raw ``dest`` the way ``mode`` gets it wrong; its size."""
    if mode not in VARIANTS:
        raise FaultyConversionError(f"unknown faulty conversion {mode!r}")
    return convert_variant(str(tgz), str(dest), mode).virtual_size


def extract_members(tgz, directory) -> list[Path]:
    """The chain members of a XenServer image as ``N.vhd`` files in ``directory``, newest first."""
    from converter.errors import VhdError
    try:
        return [Path(path) for path, _where in archive.extract_members(tgz, directory)]
    except VhdError as error:
        raise FaultyConversionError(str(error)) from None

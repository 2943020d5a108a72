"""Known-wrong ways to turn a XenServer image into a volume, on purpose.

The lab's Cinder can be told (``conversion_mode``) to use one of the converter's known-wrong
variants (``converter.variants.VARIANTS``: ``raw-copy``, ``leaf-only``, ``no-resize``,
``ignore-bitmaps``, ``wrong-order``, ``truncate``) instead of the reference conversion, so a
harness can prove it notices each regression. They use the converter's reader and compositor
with a different rule: the lab keeps no VHD reader of its own.

``extract_members`` (the chain's members as files) serves the compute side's image cache.
"""

from __future__ import annotations

from pathlib import Path

from converter import archive
from converter.variants import VARIANTS, convert_variant


class FaultyConversionError(Exception):
    user_facing = True


def convert(variant: str, tgz, dest) -> int:
    """Convert XenServer image ``tgz`` into raw ``dest`` the way ``variant`` gets it wrong; its size."""
    if variant not in VARIANTS:
        raise FaultyConversionError(f"unknown known-wrong conversion {variant!r}")
    return convert_variant(str(tgz), str(dest), variant).virtual_size


def extract_members(tgz, directory) -> list[Path]:
    """The chain members of a XenServer image as ``N.vhd`` files in ``directory``, newest first.

    Only names we make are written (never a name from the archive), one member at a time.
    """
    found = {}
    with archive.open_source(str(tgz)) as opened:
        for ref in opened.members:
            if ref.rank in found:
                raise FaultyConversionError(f"{ref.where}: chain position {ref.rank} appears twice")
            target = Path(directory) / f"{ref.rank}.vhd"
            src = ref.source
            with open(target, "wb") as out:
                while src.pos < src.size:
                    out.write(src.read_at(src.pos, min(1 << 20, src.size - src.pos)))
            found[ref.rank] = target
    if not found:
        raise FaultyConversionError(f"{Path(tgz).name}: no N.vhd members")
    return [found[k] for k in sorted(found)]

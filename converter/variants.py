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

"""Known-wrong conversions of XenServer images, reproduced on purpose.

Each is what a real pipeline produced when one of the seed's steps was missing or wrong. The
lab's Cinder can be told to use one, to prove that a harness notices the regression; the
harness's diagnosis converts the same image each way and says which one a volume matches.
They are built from the same reader and compositor as the reference conversion: only the
rule changes.
"""

from converter.convert import BLKTAP, ConvertResult, Rule, convert_image
from converter.errors import UsageError
from converter.sink import Output

MIB = 1 << 20

VARIANTS = {
    "raw-copy": "the tgz written as it is (Cinder before XenServer support: qemu-img saw 'raw')",
    "leaf-only": "0.vhd converted alone, parents ignored (what qemu-img convert -f vpc does)",
    "no-resize": "coalesced without growing the parents first: the result has the base's size",
    "ignore-bitmaps": "whole allocated blocks taken from the newest layer that has them, bitmaps ignored",
    "wrong-order": "the chain linked backwards: older layers win, nothing past the base's end survives",
    "truncate": "the right disk with its last MiB missing",
}

RULES = {
    "leaf-only": Rule(leaf_only=True, bitmaps=False, validate=False),
    "no-resize": Rule(base_size=True),
    "ignore-bitmaps": Rule(bitmaps=False),
    "wrong-order": Rule(reverse=True, validate=False),
    "truncate": Rule(drop_tail=MIB),
}


def convert_variant(source, output, variant):
    """Convert ``source`` the way ``variant`` does (or correctly, for variant None/'reference')."""
    if variant in (None, "reference", "correct"):
        return convert_image(source, output, rule=BLKTAP)
    if variant == "raw-copy":
        with Output(output) as out, open(source, "rb") as src:
            size = 0
            while piece := src.read(MIB):
                out.sink.write(size, piece)
                size += len(piece)
            out.sink.finish(size)
        return ConvertResult(str(output), "raw", size, [], [], size)
    if variant not in RULES:
        raise UsageError("variant", f"{variant!r} is not one of {', '.join(VARIANTS)}")
    return convert_image(source, output, rule=RULES[variant])


__all__ = ["VARIANTS", "convert_variant"]

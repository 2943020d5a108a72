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

"""Why a volume differs from the reference conversion, in terms a Cinder developer acts on.

The image is converted locally each known-wrong way (``converter.variants``: the bugs the
seed walks through). The guest reported the first MiB that differs and its md5; the variants
that agree there are narrowed down by asking the guest for a few more MiBs where they
disagree with each other. A variant that survives names the bug and the missing step of the
seed's pipeline; otherwise the diagnosis still says where the bytes start to differ.

A volume Cinder could not make at all (status ``error``) is diagnosed from its user message:
the command Cinder ran, what it printed and what that means (``cinder_failure``).
"""

import dataclasses
import os
import re

from converter.errors import VhdError
from converter.variants import convert_variant
from xen_vhd_tempest.scenario.reference import MIB, ZERO_MIB_MD5, md5s

EXPLAIN = {
    "raw-copy": "the volume holds the image file itself (gzip-compressed tar bytes): nothing converted it - "
                "qemu-img took the tgz for a raw disk (Cinder's behaviour before XenServer image support)",
    "leaf-only": "the volume is 0.vhd converted alone: its parents were ignored, as qemu-img does with a "
                 "differencing VHD - the chain was not relinked and coalesced (vhd-util modify -p / coalesce "
                 "missing)",
    "no-resize": "the result ends at the base's size ({base_mib} MiB) - the resize step looks missing: parents "
                 "must be grown to their child's size (vhd-util resize) before coalescing",
    "ignore-bitmaps": "sectors that the newer layers' bitmaps mark absent were taken from them anyway: whole "
                      "blocks were copied and the sector bitmaps ignored",
    "wrong-order": "older layers' data won over newer layers': the chain was linked or coalesced in the wrong "
                   "order",
    "truncate": "the end of the disk is missing: the conversion or the copy to the volume stopped early",
}
PROBES_PER_ROUND = 12


@dataclasses.dataclass
class Diagnosis:
    first_mib: int
    variant: str | None
    checked_mibs: int
    text: str

    def __str__(self):
        return self.text


def variant_md5s(image_path, variant, size, workdir):
    """Per-MiB md5s of ``variant``'s conversion, padded with zero MiBs to ``size`` (a fresh volume
    reads zero past the data); None when that conversion refuses the image."""
    out = os.path.join(workdir, f"variant-{variant}.raw")
    try:
        result = convert_variant(image_path, out, variant)
        # Whole MiBs: a volume holds zeros after a result that ends inside a MiB.
        _, per_mib = md5s(out, min(size, -(-result.virtual_size // MIB) * MIB), whole=False)
    except VhdError:
        return None
    finally:
        if os.path.exists(out):
            os.unlink(out)
    return per_mib + [ZERO_MIB_MD5] * (-(-size // MIB) - len(per_mib))


def _discriminating(lists, limit):
    """MiB indexes where the candidate lists do not all agree, spread over the disk."""
    n = min(len(x) for x in lists)
    spots = [i for i in range(n) if len({x[i] for x in lists}) > 1]
    if len(spots) <= limit:
        return spots
    step = len(spots) / limit
    return sorted({spots[int(k * step)] for k in range(limit)})


def diagnose(reference, first_mib, first_md5, probe, workdir):
    """``probe(mibs) -> {mib: md5}`` reads MiBs of the volume (in the guest)."""
    where = f"volume bytes differ from the reference conversion from MiB {first_mib} on"
    seen = {first_mib: first_md5}
    candidates = {}
    for variant in EXPLAIN:
        md5_list = variant_md5s(reference.image_path, variant, reference.size, workdir)
        if md5_list is not None and md5_list[first_mib] == first_md5:
            candidates[variant] = md5_list
    # Narrow down: ask for MiBs where the survivors (and the reference) disagree.
    for _ in range(4):
        if not candidates:
            break
        spots = [i for i in _discriminating(list(candidates.values()) + [reference.mib_md5s], PROBES_PER_ROUND)
                 if i not in seen]
        if not spots:
            break
        seen.update(probe(spots))
        candidates = {v: m for v, m in candidates.items() if all(m[i] == seen[i] for i in seen)}
        if len(candidates) == 1 and not [i for i in _discriminating([next(iter(candidates.values())),
                                                                      reference.mib_md5s], PROBES_PER_ROUND)
                                         if i not in seen]:
            break
    if len(candidates) == 1:
        (variant,) = candidates
        text = EXPLAIN[variant].format(base_mib=reference.base_size // MIB)
        return Diagnosis(first_mib, variant, len(seen),
                         f"{where}: {text} (the volume matches the '{variant}' conversion at all {len(seen)} "
                         f"MiB checked)")
    zero = first_md5 == ZERO_MIB_MD5
    past_base = first_mib * MIB >= reference.base_size
    hint = ("; the volume reads zero there" if zero else "") + ("; that is past the base's end" if past_base else "")
    known = f" (consistent with: {', '.join(candidates)})" if candidates else ""
    return Diagnosis(first_mib, None, len(seen),
                     f"{where}{hint}: not one known conversion bug{known} - compare `xen-vhd convert` and "
                     f"`xen-vhd scan` of the image with the volume")


# -- a volume that Cinder failed to make ------------------------------------------------------------
# What the output of a command Cinder ran means, for the commands of its image path.
COMMAND_MEANINGS = (
    (r"Unknown driver 'vhd'", "qemu's VHD driver is `vpc`: Cinder handed qemu-img the format inspector's name "
                              "unmapped (image_utils.fixup_disk_format maps it; CVE-2024-32498's fix skips it)"),
    (r"error finding .* parent: -2", "the child's parent locators name a file that is not there: the chain was "
                                     "not relinked (vhd-util modify -p) before coalescing"),
    (r"error coalescing: -34", "the child holds data past its parent's end: the parent was not grown to the "
                               "child's size (vhd-util resize) before coalescing"),
    (r"Could not open|Image is not in|not in .* format", "qemu-img could not read the file Cinder gave it"),
)
CINDER_RAN = re.compile(r"\(Cinder's (?P<function>\w+) ran `(?P<command>[^`]*)`: exit (?P<exit>[-\w]+)"
                        r"(?:: (?P<output>.*?))?\)(?: \[Cinder's log: (?P<log>[^\]]+)\])?\s*$")
CINDER_LOG = re.compile(r"\[Cinder's log: (?P<log>[^\]]+)\]")


@dataclasses.dataclass
class CommandFailure:
    """Cinder ran a command that failed: which function, the command, what it printed, what it means."""
    function: str | None
    command: str | None
    output: str
    meaning: str | None
    log: str | None
    text: str

    def __str__(self):
        return self.text


def cinder_failure(message):
    """The diagnosis of a volume that went to error, from its user message (the lab names the
    command Cinder ran; a real cloud's message is quoted as it is)."""
    found = CINDER_RAN.search(message or "")
    log = (found and found.group("log")) or (CINDER_LOG.search(message or "") or {"log": None})["log"]
    if not found:
        text = f"Cinder could not make the volume: {message or 'no user message'}"
        return CommandFailure(None, None, "", None, log, text + (f" (Cinder's log: {log})" if log else ""))
    before = message[:found.start()].strip()
    output = (found.group("output") or "").strip() or before.split(": ", 2)[-1].strip()
    output = re.sub(r"'/[^']*/([^'/]+)'", r"'\1'", output)       # scratch paths by their file name
    command = _short_command(found.group("command"))
    meaning = next((m for pattern, m in COMMAND_MEANINGS if re.search(pattern, output)), None)
    text = f"Cinder's {found.group('function')} ran `{command}` (exit {found.group('exit')}): {output or 'no output'}"
    if meaning:
        text += f" ({meaning})"
    if log:
        text += f"; Cinder's log: {log}"
    return CommandFailure(found.group("function"), command, output, meaning, log, text)


def _short_command(command):
    """The command as a reader wants it: no ``env LC_ALL=C``, scratch paths by their file name."""
    words = command.split()
    if words[:2] == ["env", "LC_ALL=C"]:
        words = words[2:]
    return " ".join(os.path.basename(w) if w.startswith("/") and "/" in w[1:] else w for w in words)

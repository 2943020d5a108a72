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

"""``xen-vhd``: inspect, check, convert and build XenServer images.

Exit codes: 0 ok, 1 invalid input (one line on stderr naming file, member and field),
2 usage. Inspection commands take ``--json``.
"""

import argparse
import os
import re
import sys
import time

from converter import __version__
from converter.errors import UsageError, VhdError

SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text):
    """'1G', '64MiB', '512' -> bytes (binary units, as vhd-util and qemu-img use)."""
    m = SIZE_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 1G, 64M, 1048576)")
    return int(m.group(1)) * UNITS[m.group(2).lower()]


def parse_offset_length(text):
    try:
        offset, length = text.split(":")
        return parse_size(offset), parse_size(length)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not OFFSET:LENGTH (e.g. 1M:4096)") from None


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, label, stream=sys.stderr):
        self.label = label
        self.stream = stream
        self.last = 0.0
        self.started = time.monotonic()

    def __call__(self, done, total):
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        frac = done / total if total else 1.0
        width = 30
        filled = int(frac * width)
        rate = done / max(now - self.started, 1e-6) / (1 << 20)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {frac * 100:5.1f}% "
                          f"{done / (1 << 20):8.1f} MiB {rate:7.1f} MiB/s")
        self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()


def _print_json(obj):
    import json  # here: start-up time counts in every conversion

    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


# --- commands ---------------------------------------------------------------------------------
def cmd_convert(args):
    from converter.convert import convert_image

    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = ProgressBar(f"converting {os.path.basename(args.source)}") if show else None
    try:
        if args.emulate:
            from converter.variants import convert_variant

            if args.format != "raw":
                raise UsageError("--emulate", "known-wrong conversions produce raw disks only")
            result = convert_variant(args.source, args.output, args.emulate)
        else:
            result = convert_image(args.source, args.output, output_format=args.format, progress=bar,
                                   allow_uuid_mismatch=args.ignore_parent_uuid)
    finally:
        if bar:
            bar.close()
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        _print_json({"output": result.output, "format": result.output_format,
                     "virtual_size": result.virtual_size, "data_bytes": result.data_bytes,
                     "members": [vars(m) for m in result.members], "warnings": result.warnings})
    elif args.output != "-":
        print(f"{result.output}: {result.output_format}, {result.virtual_size} bytes "
              f"({_human(result.virtual_size)}) from {len(result.members)} member(s), "
              f"{_human(result.data_bytes)} of data")
    return 0


def cmd_check(args):
    from converter.check import check_image, format_report

    report = check_image(_one_source(args.source), ignore_parent_uuid=args.ignore_parent_uuid,
                         check_bitmaps=not args.no_bitmaps)
    if args.json:
        _print_json(report.to_json())
    else:
        print(format_report(report))
    return 0 if report.ok else 1


def cmd_scan(args):
    from converter import scan

    if len(args.source) == 1 and os.path.isdir(args.source[0]) and not _is_image_dir(args.source[0]):
        nodes = scan.scan_directory(args.source[0], pattern=args.match, continue_on_failure=args.continue_on_failure,
                                    scan_parents=args.scan_parents)
    else:
        nodes = scan.scan_image(_one_source(args.source))
    if args.json:
        _print_json([n.to_json() for n in nodes])
    else:
        text = scan.format_tree(nodes, pretty=args.pretty)
        if text:
            print(text)
    return 0


def cmd_info(args):
    from converter import dump

    dumps = dump.dump_image(_one_source(args.source))
    if args.json:
        _print_json(dumps)
    else:
        print("\n".join(dump.format_dump(d) for d in dumps))
    return 0


def cmd_read(args):
    from converter.chain import ChainReader

    with ChainReader(_one_source(args.source), allow_uuid_mismatch=args.ignore_parent_uuid) as reader:
        if args.offset >= reader.size:
            raise UsageError("offset", f"{args.offset} is past the end of the {reader.size}-byte disk")
        data = reader.read(args.offset, args.length)
    if args.hex:
        for i in range(0, len(data), 16):
            row = data[i:i + 16]
            text = "".join(chr(c) if 32 <= c < 127 else "." for c in row)
            print(f"{args.offset + i:012x}  {row.hex(' '):<47}  {text}")
    else:
        sys.stdout.buffer.write(data)
    return 0


def cmd_build(args):
    from converter.builder import ImageBuilder, build_pattern

    if not os.path.isfile(args.base):
        raise UsageError(args.base, "no such raw disk image")
    builder = ImageBuilder(args.base)
    if args.resize:
        builder.snapshot(size=args.resize)
    if args.pattern:
        builder.snapshot()
        for offset, length in args.pattern:
            builder.write(offset, build_pattern(offset, length))
    builder.build(args.output, batmap=args.batmap)
    md5 = builder.expected_md5()
    if args.json:
        _print_json({"image": os.path.abspath(args.output), "members": len(builder.layers),
                     "virtual_size": builder.size, "expected_md5": md5})
    else:
        print(f"{args.output}: XenServer image, {len(builder.layers)} member(s), virtual size {builder.size}")
        print(f"expected raw md5 {md5}")
    return 0


def _one_source(sources):
    """A single image path, or a list of VHD files (newest first)."""
    if isinstance(sources, str):
        return sources
    return sources[0] if len(sources) == 1 else list(sources)


def _is_image_dir(path):
    """A directory holding 0.vhd (an extracted XenServer image) rather than <uuid>.vhd files."""
    names = set(os.listdir(path))
    return "0.vhd" in names or "snap.vhd" in names or "image.vhd" in names


def _variant_names():
    from converter.variants import VARIANTS

    return VARIANTS


# --- parser -----------------------------------------------------------------------------------
SRC_HELP = "a XenServer image (.tgz), an extracted image directory, or VHD files newest first"


def _convert_arguments(c):
    c.add_argument("source", help=SRC_HELP.replace(", or VHD files newest first", " or a VHD file"))
    c.add_argument("output", help="output file (replaced only when complete), a block device, or - for stdout")
    c.add_argument("-f", "--format", choices=("raw", "vhd"), default="raw")
    c.add_argument("--progress", action="store_true", default=None, help="show progress (default: on a terminal)")
    c.add_argument("--no-progress", action="store_false", dest="progress")
    c.add_argument("--ignore-parent-uuid", action="store_true",
                   help="link members by position even when a child's parent UUID does not match")
    c.add_argument("--emulate", metavar="BUG", choices=sorted(_variant_names()),
                   help="produce what a known-wrong pipeline would (to see a bug's effect): "
                        + ", ".join(sorted(_variant_names())))
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_convert)


def _check_arguments(k):
    k.add_argument("source", nargs="+", help=SRC_HELP)
    k.add_argument("--ignore-parent-uuid", action="store_true")
    k.add_argument("--no-bitmaps", action="store_true", help="skip reading every block's bitmap")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_check)


def _scan_arguments(s):
    s.add_argument("source", nargs="+", help=SRC_HELP + ", or a directory of <uuid>.vhd files")
    s.add_argument("-m", "--match", help="only VHDs whose name matches this glob (directories)")
    s.add_argument("-c", "--continue-on-failure", action="store_true")
    s.add_argument("-a", "--scan-parents", action="store_true")
    s.add_argument("-p", "--pretty", action="store_true", default=True, help="tree view (default)")
    s.add_argument("--flat", action="store_false", dest="pretty", help="one line per VHD, no indentation")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_scan)


def _info_arguments(i):
    i.add_argument("source", nargs="+", help=SRC_HELP)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)


def _read_arguments(r):
    r.add_argument("source", nargs="+", help=SRC_HELP)
    r.add_argument("--offset", type=parse_size, default=0)
    r.add_argument("--length", type=parse_size, default=512)
    r.add_argument("-x", "--hex", action="store_true", help="hexdump instead of raw bytes")
    r.add_argument("--ignore-parent-uuid", action="store_true")
    r.set_defaults(func=cmd_read)


def _build_arguments(b):
    b.add_argument("output", help="the .tgz to write")
    b.add_argument("--base", required=True, help="raw disk image that becomes the base (last member)")
    b.add_argument("--resize", type=parse_size, help="add a layer that grows the disk to this size")
    b.add_argument("--pattern", type=parse_offset_length, action="append", default=[],
                   help="OFFSET:LENGTH of a known pattern written in the newest layer (repeatable)")
    b.add_argument("--batmap", action="store_true", default=None,
                   help="write blktap batmaps (the default: blktap writes them for creator tap 1.3)")
    b.add_argument("--no-batmap", dest="batmap", action="store_false", help="write no batmaps")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_build)


COMMANDS = {
    "convert": ("convert an image to a raw disk (single pass) or one coalesced VHD", _convert_arguments),
    "check": ("run vhd-util check's validations on every member and the chain", _check_arguments),
    "scan": ("print the chain as a tree, like vhd-util scan -p", _scan_arguments),
    "info": ("dump footer, header, locators, BAT and batmap, like vhd-util read -p", _info_arguments),
    "read": ("read bytes of the disk the chain represents", _read_arguments),
    "build": ("build a XenServer image from a raw disk (for tests and real clouds)", _build_arguments),
}


def build_parser(command=None):
    """The xen-vhd parser. ``command``: give only that subcommand its arguments (the one about to
    run: the others' cost start-up time for nothing); None: all of them."""
    p = argparse.ArgumentParser(prog="xen-vhd",
                                description="Inspect, check, convert and build XenServer images (VHD chains in a tgz).")
    p.add_argument("--version", action="version", version=f"xen-vhd {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (summary, add_arguments) in COMMANDS.items():
        parser = sub.add_parser(name, help=summary)
        if command is None or command == name:
            add_arguments(parser)
    return p


def _command_in(argv):
    """The subcommand argv names (its first word not starting with '-'), if it is one."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except VhdError as exc:
        print(f"xen-vhd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("xen-vhd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

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

"""`xen-vhd-tempest`: one entry point whose subcommands live in the modules that own them.

Each command module exposes ``add_parser(subparsers)``; the parser it adds sets
``func`` to a callable taking the parsed args and returning an exit code.
"""

import argparse
import importlib
import sys

# Modules that contribute subcommands; a module missing at import time is a bug, not optional.
COMMAND_MODULES = (
    "xen_vhd_tempest.harness.run",
    "xen_vhd_tempest.demo",
    "xen_vhd_tempest.lab.guest.commands",
    "xen_vhd_tempest.lab.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xen-vhd-tempest",
        description="Run the XenServer-image-to-Cinder-volume scenario against a cloud or the embedded lab.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

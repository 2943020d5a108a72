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

"""`xen-vhd-tempest run`: the scenarios without thinking about pytest.

Runs the packaged scenario tests (``xen_vhd_tempest.harness``) under pytest with progress
shown as it happens, against a clouds.yaml cloud or the embedded lab, and ends with PASS or
FAIL. The scenario's options are ``scenario.options.SETTINGS`` (``--image``, ``--raw-image``,
``--boot-timeout``, ...), handed to the pytest plugin as ``--xvt-...``. Everything after ``--``
goes to pytest (e.g. ``-- --junitxml=out.xml``).
"""

import os
import sys

from xen_vhd_tempest.scenario.options import SETTINGS, add_flag

SCENARIOS = {"backup": "xen_backup", "synthetic": "xen_synthetic", "all": "xen_backup or xen_synthetic"}
TIMEOUTS = ("boot_timeout", "image_timeout", "volume_timeout")


def pytest_argv(args, cinder=None):
    """The pytest command line for ``args``: the harness package, the marker, ``--xvt-`` options;
    ``cinder``: the lab settings ``--cinder``/``--vhd-util`` asked for (``lab.commands.cinder_settings``)."""
    argv = ["--pyargs", "xen_vhd_tempest.harness", "-p", "no:cacheprovider", "-p", "no:warnings", "-s", "-q", "-rfE",
            "-m", SCENARIOS[args.scenario]]
    for option, value in (("--xvt-os-cloud", args.os_cloud), ("--xvt-lab-dir", args.lab_dir),
                          ("--junitxml", args.junitxml)):
        if value:
            argv += [option, str(value)]
    for setting in SETTINGS:
        if not setting.flag:
            continue
        value = getattr(args, f"xvt_{setting.name}")
        if value is None and setting.name in TIMEOUTS:
            value = args.timeout
        if setting.kind == "bool":
            argv += [f"--xvt-{setting.flag}"] if value else []
        elif value is not None:
            argv += [f"--xvt-{setting.flag}", str(value)]
    cinder = cinder or {}
    if "conversion_mode" in cinder:
        argv += ["--xvt-lab-cinder", cinder["cinder_src"] or "installed"]
    if cinder.get("vhd_util"):
        argv += ["--xvt-lab-vhd-util", cinder["vhd_util"]]
    return argv


def run(args):
    import pytest

    if args.os_cloud:       # a wrong cloud name is one line here, not an error per test
        from xen_vhd_tempest.harness.clients import session_for
        from xen_vhd_tempest.scenario.cloud import CloudError
        try:
            session_for(args.os_cloud, os.environ.get("OS_CLIENT_CONFIG_FILE"))
        except CloudError as exc:
            print(f"xen-vhd-tempest run: {exc}", file=sys.stderr)
            return 2
    cinder = {}
    if args.cinder is not None or args.vhd_util:
        if args.os_cloud:
            print(f"xen-vhd-tempest run: --cinder/--vhd-util set the embedded lab's Cinder; cloud "
                  f"{args.os_cloud} runs its own", file=sys.stderr)
            return 2
        from xen_vhd_tempest.lab.commands import cinder_settings
        try:
            cinder = cinder_settings(args)
        except ValueError as exc:
            print(f"xen-vhd-tempest run: {exc}", file=sys.stderr)
            return 2
    target = f"cloud {args.os_cloud}" if args.os_cloud else "the embedded lab (no --os-cloud / $OS_CLOUD given)"
    if "conversion_mode" in cinder:
        target += f" with Cinder from {cinder['cinder_src'] or 'the installed cinder package'}"
    print(f"xen-vhd-tempest: {args.scenario} scenario(s) against {target}", flush=True)
    code = pytest.main(pytest_argv(args, cinder) + list(args.pytest_args))
    print(f"\n{'PASS' if code == 0 else 'FAIL'}: xen-vhd-tempest run ({args.scenario}) against {target}")
    return 0 if code == 0 else 1


def add_parser(subparsers):
    p = subparsers.add_parser("run", help="run the scenario(s) against a cloud (clouds.yaml) or the embedded lab",
                              description=__doc__)
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="backup",
                   help="backup: the seed story (XenServer compute or the lab); synthetic: a chain built "
                        "here (any compute); all: both")
    p.add_argument("--os-cloud", default=os.environ.get("OS_CLOUD"), help="clouds.yaml entry (default $OS_CLOUD)")
    p.add_argument("--lab-dir", help="the embedded lab's state directory")
    p.add_argument("--junitxml", help="write a JUnit XML report here")
    p.add_argument("--timeout", type=float, help="seconds for every wait (boot, image and volume) not given alone")
    for setting in SETTINGS:
        if setting.flag:
            add_flag(p.add_argument, setting, "--")
    from xen_vhd_tempest.lab.commands import add_cinder_arguments
    add_cinder_arguments(p)
    p.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    p.set_defaults(func=run)

"""`xen-vhd-tempest run`: the scenarios without thinking about pytest.

Runs the packaged scenario tests (``xen_vhd_tempest.harness``) under pytest with progress
shown as it happens, against a clouds.yaml cloud or the embedded lab, and ends with PASS or
FAIL. Everything after ``--`` goes to pytest (e.g. ``-- --junitxml=out.xml``).
"""

import os
import sys

SCENARIOS = {"backup": "xen_backup", "synthetic": "xen_synthetic", "all": "xen_backup or xen_synthetic"}


def run(args):
    import pytest

    if args.os_cloud:       # a wrong cloud name is one line here, not an error per test
        from xen_vhd_tempest.scenario.clients import session_for
        from xen_vhd_tempest.scenario.cloud import CloudError
        try:
            session_for(args.os_cloud, os.environ.get("OS_CLIENT_CONFIG_FILE"))
        except CloudError as exc:
            print(f"xen-vhd-tempest run: {exc}", file=sys.stderr)
            return 2
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
    else:
        cinder = {}
    argv = ["--pyargs", "xen_vhd_tempest.harness", "-p", "no:cacheprovider", "-p", "no:warnings", "-s", "-q", "-rfE",
            "-m", SCENARIOS[args.scenario], "--xen-flavor", args.flavor, "--xen-timeout", str(args.timeout)]
    for option, value in (("--os-cloud", args.os_cloud), ("--xen-image", args.image),
                          ("--xen-raw-image", args.raw_image), ("--xen-helper-image", args.helper_image),
                          ("--xen-network", args.network), ("--xen-ssh-user", args.ssh_user),
                          ("--xen-lab-dir", args.lab_dir), ("--junitxml", args.junitxml)):
        if value:
            argv += [option, value]
    if args.keep_on_failure:
        argv.append("--xen-keep-on-failure")
    if "conversion_mode" in cinder:
        argv += ["--xen-lab-cinder", cinder["cinder_src"] or "installed"]
    if cinder.get("vhd_util"):
        argv += ["--xen-lab-vhd-util", cinder["vhd_util"]]
    target = f"cloud {args.os_cloud}" if args.os_cloud else "the embedded lab (no --os-cloud / $OS_CLOUD given)"
    if "conversion_mode" in cinder:
        target += f" with Cinder from {cinder['cinder_src'] or 'the installed cinder package'}"
    print(f"xen-vhd-tempest: {args.scenario} scenario(s) against {target}", flush=True)
    code = pytest.main(argv + list(args.pytest_args))
    print(f"\n{'PASS' if code == 0 else 'FAIL'}: xen-vhd-tempest run ({args.scenario}) against {target}")
    return 0 if code == 0 else 1


def add_parser(subparsers):
    p = subparsers.add_parser("run", help="run the scenario(s) against a cloud (clouds.yaml) or the embedded lab",
                              description=__doc__)
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="backup",
                   help="backup: the seed story (XenServer compute or the lab); synthetic: a chain built "
                        "here (any compute); all: both")
    p.add_argument("--os-cloud", default=os.environ.get("OS_CLOUD"), help="clouds.yaml entry (default $OS_CLOUD)")
    p.add_argument("--image", help="XenServer image to boot (backup scenario)")
    p.add_argument("--raw-image", help="bootable raw disk for the synthetic chain")
    p.add_argument("--helper-image", help="image of the server volumes get attached to")
    p.add_argument("--flavor", default="m1.tiny")
    p.add_argument("--network")
    p.add_argument("--ssh-user")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--lab-dir", help="the embedded lab's state directory")
    p.add_argument("--keep-on-failure", action="store_true")
    p.add_argument("--junitxml", help="write a JUnit XML report here")
    from xen_vhd_tempest.lab.commands import add_cinder_arguments
    add_cinder_arguments(p)
    p.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    p.set_defaults(func=run)


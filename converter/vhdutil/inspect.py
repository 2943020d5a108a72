"""vhd-util's inspection subcommands: check, read, scan (blktap vhd/lib/vhd-util-{check,read,scan}.c).

Thin over the converter's own inspection (``converter.check``, ``converter.dump``,
``converter.scan``), which already speaks blktap's voice for ``xen-vhd``; here only blktap's
command lines and exit codes are added. Each returns blktap's exit code (an errno).
"""

import errno
import fnmatch
import getopt
import os

from converter.errors import VhdError

EINVAL = errno.EINVAL


def _opts(argv, spec, usage):
    try:
        opts, rest = getopt.getopt(argv, spec)
    except getopt.GetoptError:
        print(usage)
        return None, None
    return dict(opts), rest


def _named_file(argv, spec, usage, required=("-n",)):
    """(options, None) for ``-n NAME`` naming a file, else (None, blktap's exit code) said."""
    opts, rest = _opts(argv, spec, usage)
    if opts is None or "-h" in opts or rest or any(o not in opts for o in required):
        print(usage)
        return None, EINVAL
    if not os.path.exists(opts["-n"]):
        print(f"error opening {opts['-n']}: -{errno.ENOENT}")
        return None, errno.ENOENT
    return opts, None


def check(argv):
    """``check -n NAME [-i] [-b] [-t] [-p]``: NAME is valid (0) or why not, then 'appears invalid' (22)."""
    usage = "options: -n <file> [-i ignore missing primary footers] [-I ignore parent uuids] " \
            "[-t ignore timestamps] [-b check bitmaps] [-p check parents] [-h help]"
    opts, failed = _named_file(argv, "n:iItbpsCBh", usage)
    if opts is None:
        return failed
    from converter.check import check_image
    name = opts["-n"]
    try:
        report = check_image(name, ignore_parent_uuid="-I" in opts, check_bitmaps="-b" in opts,
                             ignore_timestamps="-t" in opts)
    except VhdError as exc:
        print(f"{name} appears invalid; dumping metadata")
        print(exc)
        return EINVAL
    (member,) = report.members
    problems = list(member.problems) + _missing_parent(name, member)
    if not problems:
        print(f"{name} is valid")
        return 0
    for problem in problems:
        print(problem)
    print(f"{name} appears invalid; dumping metadata")
    return EINVAL


def _missing_parent(name, member):
    """blktap follows a differencing disk's parent locators from the file's directory: the
    first that names no file makes it invalid (a XenServer tgz's ``<uuid>.vhd`` parents until
    ``modify -p`` relinks them). Older blktap said 'parent locator 0 points to missing file'."""
    for _, path in sorted(member.parent_locators.items()):
        if not os.path.exists(os.path.join(os.path.dirname(name), path)):
            return [f"error resolving {path}: -{errno.ENOENT}"]      # blktap 4.0.8's words
    return []


def read(argv):
    """``read -n NAME -p``: footer, header, locators, BAT and batmap summaries, as blktap prints them."""
    usage = "options: -n <name> [-p print VHD headers] [-h help]"
    opts, failed = _named_file(argv, "n:ptb:m:i:aj:d:c:rxh", usage, required=("-n", "-p"))
    if opts is None:
        return failed
    from converter import dump
    name = opts["-n"]
    try:
        dumps = dump.dump_image(name)
    except VhdError as exc:
        print(f"error opening {name}: -{EINVAL} ({exc})")
        return EINVAL
    print("\n".join(dump.format_dump(d) for d in dumps))
    return 0


def scan(argv):
    """``scan [-m FILTER] [-f] [-c] [-p] [-a] [-v] FILES``: the files' parent/child forest."""
    usage = ("usage: [OPTIONS] FILES\noptions: [-m match filter] [-f fast] [-c continue on failure] "
             "[-l LVM volume] [-p pretty print] [-a scan parents] [-v verbose] [-h help]")
    opts, files = _opts(argv, "m:fcl:pavh", usage)
    if opts is None or "-h" in opts:
        print(usage)
        return EINVAL
    if "-l" in opts:
        print(f"scan -l {opts['-l']}: LVM volume groups are not supported; scan the VHD files")
        return errno.ENOSYS
    if "-m" in opts:
        files = [f for f in files if fnmatch.fnmatchcase(os.path.basename(f), opts["-m"])]
    if not files:
        print(usage)
        return EINVAL
    from converter import scan as scanmod
    nodes = scanmod.scan_files(files, continue_on_failure="-c" in opts, scan_parents="-a" in opts)
    text = scanmod.format_tree(nodes, pretty="-p" in opts, verbose="-v" in opts)
    if text:
        print(text)
    return EINVAL if any(getattr(n, "error", None) for n in nodes) and "-c" not in opts else 0

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
ENOENT = errno.ENOENT


def _opts(argv, spec, usage):
    try:
        opts, rest = getopt.getopt(argv, spec)
    except getopt.GetoptError:
        print(usage)
        return None, None
    return dict(opts), rest


def _named_file(argv, spec, usage, missing, required=("-n",)):
    """(options, None) for ``-n NAME`` naming a file, else (None, blktap's exit code) said;
    ``missing``: what the subcommand prints for a NAME that does not exist."""
    opts, rest = _opts(argv, spec, usage)
    if opts is None or "-h" in opts or rest or any(o not in opts for o in required):
        print(usage)
        return None, EINVAL
    if not os.path.exists(opts["-n"]):
        print(missing.format(name=opts["-n"], errno=ENOENT))
        return None, ENOENT
    return opts, None


def check(argv):
    """``check -n NAME [-i] [-I] [-b] [-t] [-p]``: NAME is valid (0) or why not, then its metadata
    (22); with ``-p`` each parent in turn, found through the locators, as blktap walks them."""
    usage = "options: -n <file> [-i ignore missing primary footers] [-I ignore parent uuids] " \
            "[-t ignore timestamps] [-b check bitmaps] [-p check parents] [-h help]"
    opts, failed = _named_file(argv, "n:iItbpsCBh", usage, "cannot stat {name}: {errno}")
    if opts is None:
        return failed
    options = dict(ignore_parent_uuid="-I" in opts, check_bitmaps="-b" in opts,
                   ignore_timestamps="-t" in opts)
    name = opts["-n"]
    err, parent = _check_one(name, options)
    if err or "-p" not in opts:
        return err
    while parent is not None:                     # vhd_util_check_parents
        err, parent = _check_one(parent, options)
        if err:
            print(f"error checking parents: -{err}")
            return err
    return 0


def _check_one(name, options):
    """vhd_util_check_vhd: (exit code, the parent's resolved path or None)."""
    from converter.check import check_member
    from converter.source import FileSource
    try:
        with FileSource(name) as source:          # a file named by -n is a VHD, whatever it holds
            member, _ = check_member(source, name, check_bitmaps=options["check_bitmaps"],
                                     ignore_timestamps=options["ignore_timestamps"])
    except VhdError as exc:
        print(exc)
        _dump_headers(name)
        return EINVAL, None
    problems, parent = list(member.problems), None
    if not problems and member.disk_type == "differencing":
        problems, parent = _parent_problems(name, member, options["ignore_parent_uuid"])
    if problems:
        # blktap stops at the first failed validation and prints it bare; the converter's
        # numbers stay in brackets after blktap's words
        print(problems[0].removeprefix(f"{name}: "))
        _dump_headers(name)
        return (ENOENT if problems[0].endswith(f": -{ENOENT}") else EINVAL), None
    print(f"{name} is valid")
    return 0, parent


def _parent_problems(name, member, ignore_parent_uuid):
    """blktap resolves each MacX/W2ku/W2ru locator from the child's directory and opens what it
    names: the first that names no file, or a file that is no readable VHD, or (without -I) one
    whose UUID is not the child's parent UUID, makes the child invalid. A XenServer tgz's
    ``<uuid>.vhd`` parents stay unresolved until ``modify -p`` relinks them. Returns
    (problems, the parent's path)."""
    parent = None
    for _, path in sorted(member.parent_locators.items()):
        location = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(name)), path))
        if not os.path.exists(location):
            return [f"error resolving {path}: -{ENOENT}"], None      # blktap 4.0.8's words
        opened = _open_vhd(location)
        if opened is None:
            return [f"invalid parent {location}: error opening parent"], None
        if not ignore_parent_uuid and opened.footer.uuid != member.parent_uuid:
            return [f"invalid parent {location}: invalid parent uuid"], None
        parent = parent or location
    if parent is None:
        return [f"could not find parent {member.parent_name}"], None
    return [], parent


def _open_vhd(path):
    """The VHD at ``path`` if libvhd's vhd_open would open it (a valid footer, and for a
    dynamic disk a valid header), else None."""
    from converter.member import VhdMember
    from converter.source import FileSource
    try:
        with FileSource(path) as source:
            member = VhdMember.open(source, strict=False)
    except (OSError, VhdError):
        return None
    return member if _libvhd_opens(member) else None


def _libvhd_opens(member):
    """libvhd's vhd_open accepts it: a valid footer, and for a dynamic disk a valid header."""
    f, h = member.footer, member.header
    return f is not None and not (f.is_dynamic and (h is None or h.findings(f, member.source.size)))


def _dump_headers(name):
    """vhd_util_dump_headers: the verdict, then ``read -p``'s dump of what could be read."""
    print(f"{name} appears invalid; dumping metadata")
    read(["-p", "-n", name])


def read(argv):
    """``read -n NAME -p``: footer, header, locators, BAT and batmap summaries, as blktap prints them."""
    usage = "options: -n <name> [-p print VHD headers] [-h help]"
    opts, failed = _named_file(argv, "n:ptb:m:i:aj:d:c:rxh", usage,
                               "Failed to open {name}: -{errno}\n\n{name} appears invalid; dumping headers\n",
                               required=("-n", "-p"))
    if opts is None:
        return failed
    from converter import dump
    name = opts["-n"]
    from converter.member import VhdMember
    from converter.source import FileSource
    try:
        with FileSource(name) as source:          # a file named by -n is a VHD, whatever it holds
            member = VhdMember.inspect(source)
            d = dump.dump_member(member, name)
    except VhdError as exc:
        print(f"error opening {name}: -{EINVAL} ({exc})")
        return EINVAL
    if not _libvhd_opens(member):
        print(dump.format_unopenable(d))
        return EINVAL
    print(dump.format_dump(d, blktap=True))
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

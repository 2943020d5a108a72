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

"""The ``xen-vhd-util`` (alias ``vhd-util``) command: blktap's subcommands, usage lines and
exit codes (the errno of the failure; usage errors are 22)."""

import errno
import getopt
import os
import sys

from converter import bat as batlib
from converter.errors import VhdError
from converter.footer import DiskType, vhd_now
from converter.header import PLAT_MACX, PLAT_W2KU, PLAT_W2RU

COMMANDS = ("create", "snapshot", "query", "read", "set", "repair", "resize", "fill", "coalesce",
            "modify", "scan", "check", "revert", "key", "copy")
EINVAL = errno.EINVAL

USAGE = {
    "modify": "options: <-n name> [-p NEW_PARENT set parent [-m raw]] [-s NEW_SIZE set size] "
              "[-z zero (kill data)] [-h help]",
    "query": "options: <-n name> [-v print virtual size (in MB)] [-s print physical utilization (bytes)] "
             "[-p print parent] [-f print fields] [-m print marker] [-d print chain depth] "
             "[-S print max virtual size (MB) for fast resize] [-a print allocated block count] "
             "[-u don't resolve parent path] [-h help]",
    "resize": "options: <-n name> <-s size (in MB)> (<-j journal>|<-f fast>) [-h help]",
    "revert": "options: <-n name> <-j journal> [-h help]",
    "coalesce": "options: <-n name> [-s sparse] [-p progress] [-h help]",
    "create": "options: <-n name> <-s size (MB)> [-r reserve] [-h help]",
    "snapshot": "options: <-n name> <-p parent name> [-h help]",
    "set": "options: <-n name> <-f field> <-v value> [-h help]",
}


class Usage(Exception):
    pass


def _opts(cmd, argv, spec):
    try:
        opts, rest = getopt.getopt(argv, spec)
    except getopt.GetoptError:
        raise Usage(cmd) from None
    if rest or any(o == "-h" for o, _ in opts):
        raise Usage(cmd)
    return opts


def _image(path, **kw):
    from converter.vhdutil.image import Image
    return Image(path, **kw)


# --- modify -------------------------------------------------------------------------------
def _relative(child, parent):
    rel = os.path.relpath(parent, os.path.dirname(os.path.abspath(child)))
    return rel if rel.startswith("../") else "./" + rel


def _locator_bytes(code, rel):
    if code == PLAT_MACX:
        return f"file://{rel}".encode("ascii")
    name = rel[2:] if rel.startswith("./") else rel
    return (".\\" + name).replace("/", "\\").encode("utf-16-le")


def set_parent(img, parent):
    from converter.vhdutil import image as im
    from converter.vhdutil.image import Fail
    if img.footer.disk_type != DiskType.DIFFERENCING:
        raise Fail(EINVAL, f"failed to set parent to '{parent}': -{EINVAL}")
    ppath = os.path.realpath(parent)
    try:
        st = os.stat(ppath)
    except OSError as exc:
        raise Fail(exc.errno, f"failed to set parent to '{parent}': {-exc.errno}") from None
    try:
        p = _image(ppath)
    except Fail as exc:
        raise Fail(exc.code, f"failed to set parent to '{parent}': {-exc.code}") from None
    p.close()
    h = img.header
    h.parent_uuid = p.footer.uuid
    h.parent_name = os.path.basename(ppath)
    h.parent_timestamp = (int(st.st_mtime) - 946684800) & 0xFFFFFFFF
    rel = _relative(img.path, ppath)
    for loc in h.locators:
        if loc.code not in (PLAT_MACX, PLAT_W2KU, PLAT_W2RU):
            continue
        data = _locator_bytes(loc.code, rel)
        space = -(-len(data) // 512) * 512
        if space > loc.space_bytes:
            raise Fail(errno.ENAMETOOLONG, f"failed to set parent to '{parent}': {-errno.ENAMETOOLONG}")
        im.pwrite(img.fd, data.ljust(space, b"\0"), loc.data_offset)
        loc.data_length, loc.data_space, loc.reserved = len(data), space, 0
    im.pwrite(img.fd, h.pack(), img.footer.data_offset)
    os.fsync(img.fd)


def cmd_modify(argv):
    name = parent = None
    for o, a in _opts("modify", argv, "n:s:p:mzh"):
        if o == "-n":
            name = a
        elif o == "-p":
            parent = a
        elif o in ("-s", "-m", "-z"):
            raise Usage("modify")      # not implemented here: see the README
    if not name:
        raise Usage("modify")
    img = _image(name, writable=True)
    try:
        if parent is not None:
            set_parent(img, parent)
    finally:
        img.close()
    return 0


# --- query --------------------------------------------------------------------------------
def cmd_query(argv):
    from converter.vhdutil.image import Fail
    name, flags = None, set()
    for o, a in _opts("query", argv, "n:vspfdSmauh"):
        if o == "-n":
            name = a
        else:
            flags.add(o[1])
    if not name:
        raise Usage("query")
    img = _image(name)
    out, err = [], 0
    try:
        if "v" in flags:
            out.append(str(img.footer.current_size >> 20))
        if "s" in flags:
            out.append(str(img.end_of_data() + 512))
        if "p" in flags:
            if img.footer.disk_type != DiskType.DIFFERENCING:
                out.append(f"{name} has no parent")
            else:
                try:
                    out.append(img.parent_path() if "u" not in flags else img.locator_paths()[0])
                except Fail as exc:
                    out.append("query failed")
                    err = err or exc.code
                except IndexError:
                    out.append("query failed")
                    err = err or errno.EINVAL
        if "f" in flags:
            out.append(f"hidden: {img.footer.hidden}")
        if "m" in flags:
            out.append(f"marker: {img.batmap_header.marker if img.batmap_header else 0}")
        if "d" in flags:
            depth, cur, seen, failed = 1, img, set(), 0
            while cur.footer.disk_type == DiskType.DIFFERENCING:   # vhd_chain_depth
                try:
                    path = cur.parent_path()
                    if path in seen:
                        raise Fail(errno.ELOOP, "")
                    seen.add(path)
                    nxt = _image(path)
                except Fail as exc:
                    failed = exc.code
                    break
                if cur is not img:
                    cur.close()
                cur, depth = nxt, depth + 1
            if cur is not img:
                cur.close()
            out.append(f"error checking chain depth: -{failed}" if failed else f"chain depth: {depth}")
            err = err or failed
        if "a" in flags and img.bat is not None:
            out.append(str(sum(1 for e in img.bat if e != batlib.UNUSED)))
        if "S" in flags and img.header is not None:
            out.append(str(img.header.max_table_entries * img.header.block_size >> 20))
    finally:
        img.close()
    if out:
        print("\n".join(out))
    return err


# --- resize / revert ------------------------------------------------------------------------
def _mib(cmd, text, minimum=1):
    if not text.isdigit() or int(text) < minimum or int(text) > (2040 * 1024):
        raise Usage(cmd)
    return int(text)


def cmd_resize(argv):
    from converter.vhdutil import image as im
    name = jname = size = None
    for o, a in _opts("resize", argv, "n:s:j:fh"):
        if o == "-n":
            name = a
        elif o == "-j":
            jname = a
        elif o == "-s":
            size = _mib("resize", a, 0)    # query -v of a disk under 1 MiB says 0
        elif o == "-f":
            raise Usage("resize")      # fast resize: not implemented, see the README
    if not name or not jname or size is None:
        raise Usage("resize")
    img = _image(name, writable=True)
    try:
        if not img.footer.is_tap:
            raise im.Fail(EINVAL, f"{name} not created by xen; resize not supported")
        new = size << 20
        cur = img.footer.current_size
        # -s is whole MiB and query -v floors: a size in the requested MiB is already right.
        if new <= cur:
            if cur >> 20 == size:
                return 0
            raise im.Fail(EINVAL, f"resize failed: -{EINVAL} (shrinking {cur} bytes to {new} is not supported)")
        im.write_journal(jname, img, img.grow_plan(new))
        img.grow(new, im.fault_hook("resize"))
        img.flush()
        im.point()
        os.unlink(jname)
    finally:
        img.close()
    return 0


def cmd_revert(argv):
    from converter.vhdutil import image as im
    name = jname = None
    for o, a in _opts("revert", argv, "n:j:h"):
        if o == "-n":
            name = a
        elif o == "-j":
            jname = a
    if not name or not jname:
        raise Usage("revert")
    im.revert(name, jname)
    return 0


# --- coalesce -------------------------------------------------------------------------------
def cmd_coalesce(argv):
    from converter.member import VhdMember
    from converter.source import FileSource
    from converter.vhdutil.image import Fail
    name = None
    for o, a in _opts("coalesce", argv, "n:o:a:x:sph"):
        if o == "-n":
            name = a
    if not name:
        raise Usage("coalesce")
    child = _image(name)
    try:
        if child.footer.disk_type != DiskType.DIFFERENCING:
            raise Fail(EINVAL, "coalescing of non-differencing disks is not supported")
        ppath = child.parent_path()
    finally:
        child.close()
    parent = _image(ppath, writable=True)
    count = 0
    try:
        with FileSource(name) as src:
            member = VhdMember.open(src)
            marked = parent.footer.coalescing
            if marked is not None and marked != member.footer.uuid:
                raise Fail(errno.EBUSY, f"{ppath} holds an unfinished coalesce of {marked}; "
                                        f"coalesce that child again first")
            psize = parent.footer.current_size
            grow = False
            if member.current_size > psize:
                if psize >= member.current_size >> 20 << 20:
                    # Only the sub-MiB tail is missing: query -v rounds down, so a parent resized
                    # to it is short by that tail. blktap then fails or drops it; we grow.
                    grow = True
                elif _data_past(member, psize):
                    # blktap's answer, but before anything is written (it stops part-way)
                    raise Fail(errno.ERANGE, f"error coalescing: -{errno.ERANGE}")
            # marked before the first change, unmarked by the last write (see the README)
            parent.mark_coalescing(member.footer.uuid)
            if grow:
                parent.grow(member.current_size)
                parent.flush()      # the grown BAT on disk before a new block's footer says the new size
            for blk in member.blocks(data=True):
                runs = [(0, blk.nsectors)] if blk.mask is None else batlib.mask_runs(blk.mask, blk.nsectors)
                for a, b in runs:
                    parent.write_sectors(blk.first_sector + a, blk.data[a * 512:b * 512])
                    count += b - a
        parent.footer.coalescing = None
        parent.meta_dirty = True
        parent.flush()
    finally:
        parent.close()
    sys.stdout.write(f"Coalesced {count} sectors")
    return 0


def _data_past(member, size):
    """Whether ``member`` has a present sector at or after byte ``size``."""
    first = size // 512
    for blk in member.blocks(data=False):
        if blk.first_sector + blk.nsectors <= first:
            continue
        runs = [(0, blk.nsectors)] if blk.mask is None else batlib.mask_runs(blk.mask, blk.nsectors)
        if any(blk.first_sector + b > first for _, b in runs):
            return True
    return False


# --- create / snapshot / set ----------------------------------------------------------------
def cmd_create(argv):
    from converter.writer import VhdWriter
    name = size = None
    reserve = False
    for o, a in _opts("create", argv, "n:s:rh"):
        if o == "-n":
            name = a
        elif o == "-s":
            size = _mib("create", a)
        elif o == "-r":
            reserve = True
    if not name or size is None:
        raise Usage("create")
    _exclusive(name)
    with VhdWriter(name, disk_type="fixed" if reserve else "dynamic", size=size << 20) as w:
        if reserve:
            os.ftruncate(w.fd, size << 20)
    return 0


def _exclusive(name):
    from converter.vhdutil.image import Fail
    if os.path.lexists(name):
        raise Fail(errno.EEXIST, f"error creating {name}: -{errno.EEXIST}")


def cmd_snapshot(argv):
    from converter.writer import VhdWriter
    name = parent = None
    for o, a in _opts("snapshot", argv, "n:p:S:mh"):
        if o == "-n":
            name = a
        elif o == "-p":
            parent = a
    if not name or not parent:
        raise Usage("snapshot")
    _exclusive(name)
    p = _image(parent)
    p.close()
    with VhdWriter(name, disk_type="differencing", size=p.footer.current_size, parent_uuid=p.footer.uuid,
                   parent_name=os.path.basename(parent), parent_timestamp=vhd_now()):
        pass
    # blktap's three locators, written the way modify -p writes them
    img = _image(name, writable=True)
    try:
        set_parent(img, parent)
    finally:
        img.close()
    return 0


def cmd_set(argv):
    from converter.writer import set_hidden
    name = field = value = None
    for o, a in _opts("set", argv, "n:f:v:h"):
        if o == "-n":
            name = a
        elif o == "-f":
            field = a
        elif o == "-v":
            value = a
    if not name or field != "hidden" or value not in ("0", "1"):
        raise Usage("set")
    _image(name).close()
    set_hidden(name, value == "1")
    return 0


def _inspect(cmd):
    def run(argv):
        from converter.vhdutil import inspect  # only when inspecting: start-up time
        return getattr(inspect, cmd)(argv)
    return run


HANDLERS = {"modify": cmd_modify, "query": cmd_query, "resize": cmd_resize, "revert": cmd_revert,
            "coalesce": cmd_coalesce, "create": cmd_create, "snapshot": cmd_snapshot, "set": cmd_set,
            "check": _inspect("check"), "read": _inspect("read"), "scan": _inspect("scan")}


def help_text():
    return "usage: vhd-util COMMAND [OPTIONS]\nCOMMAND := { " + " | ".join(COMMANDS) + " }"


def main(argv=None):
    from converter.vhdutil.image import Fail
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(help_text())
        return 0
    cmd, rest = argv[0], [a for a in argv[1:] if a != "--debug"]
    if cmd not in COMMANDS:
        sys.stderr.write(f"invalid COMMAND {cmd}\n")
        print(help_text())
        return 0
    handler = HANDLERS.get(cmd)
    if handler is None:
        print(f"{cmd}: not implemented by xen-vhd-util")
        return errno.ENOSYS
    try:
        return handler(rest)
    except Usage as exc:
        print(USAGE.get(str(exc), f"{cmd}: bad options"))
        return EINVAL
    except Fail as exc:
        print(exc.line)
        return exc.code
    except VhdError as exc:
        print(f"error: {exc}")
        return EINVAL
    except OSError as exc:
        print(f"error: {exc.strerror}: -{exc.errno}")
        return exc.errno or EINVAL

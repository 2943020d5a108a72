#!/bin/sh
# How expected/*.txt were made: blktap's own vhd-util (xapi-project/blktap 79774319, built as
# "./configure --disable-shared; make -C lvm; make -C vhd") run over commands.txt on chain.tgz.
#   tests/data/blktap/record.sh /path/to/blktap/vhd/vhd-util
# Each record: "$ COMMAND", stdout+stderr, "rc=N"; the scratch directory's path is written @DIR@.
set -eu
VHD_UTIL=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$here/chain.tgz" -C "$work"
cd "$work"
grep -v '^#' "$here/commands.txt" | while IFS= read -r line; do
    echo "\$ vhd-util $line"
    set +e
    # shellcheck disable=SC2086
    TZ=UTC $VHD_UTIL $line 2>&1
    echo "rc=$?"
    set -e
done | sed "s|$work|@DIR@|g" > "$here/expected.txt"

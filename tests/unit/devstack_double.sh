# shellcheck shell=bash
# A test double of the devstack functions devstack/plugin.sh and devstack/settings call.
#
# Every call is recorded in $DEVSTACK_CALLS, one line each: the name, then the arguments,
# tab-separated. iniset/iniget read and write real INI files (through $XVT_PYTHON's
# configparser); qemu-img "converts" by copying; openstack "uploads" by printing $FAKE_IMAGE_ID;
# xen-vhd is the real one (on PATH). Nothing is installed, nothing leaves the test's directory.

FAKE_IMAGE_ID=${FAKE_IMAGE_ID:-0b8c1d0e-5a1f-4f57-9d4e-3c7e2f1a9b00}

function _record {
    local IFS=$'\t'
    echo "$*" >> "$DEVSTACK_CALLS"
}

function _ini {
    "$XVT_PYTHON" - "$@" <<'EOF'
import configparser, sys
action, path, section, option = sys.argv[1:5]
conf = configparser.RawConfigParser(strict=False)
conf.optionxform = str
conf.read(path)
if action == "get":
    if conf.has_option(section, option):
        print(conf.get(section, option))
    sys.exit(0)
if section != "DEFAULT" and not conf.has_section(section):
    conf.add_section(section)
conf.set(section, option, sys.argv[5])
with open(path, "w") as f:
    conf.write(f)
EOF
}

function iniset {
    if [[ "$1" == "-sudo" ]]; then
        shift
    fi
    _record iniset "$@"
    _ini set "$1" "$2" "$3" "$4"
}

function iniget {
    _ini get "$1" "$2" "$3"
}

function trueorfalse {
    local default=$1
    local testval=${!2:-}
    case "$testval" in
        "1" | [yY]es | "YES" | [tT]rue | "TRUE" ) echo "True" ;;
        "0" | [nN]o | "NO" | [fF]alse | "FALSE" ) echo "False" ;;
        * ) echo "$default" ;;
    esac
}

function is_service_enabled {
    local service
    for service in "$@"; do
        if [[ " ${DISABLED_SERVICES:-} " != *" $service "* ]]; then
            return 0
        fi
    done
    return 1
}

function is_ubuntu {
    return 0
}

function define_plugin { _record define_plugin "$@"; }
function enable_service { _record enable_service "$@"; }
function echo_summary { _record echo_summary "$@"; }
function install_package { _record install_package "$@"; }
function pip_install { _record pip_install "$@"; }
function warn { _record warn "$@"; }
# sudo runs the command as the test's user: every path it is given lies in the test's directory
function sudo { _record sudo "$@"; "$@"; }

function tox {
    _record tox "$PWD" "$@"
}

function die {
    _record die "$@"
    echo "die: $*" >&2
    exit 1
}

function qemu-img {
    _record qemu-img "$@"
    # qemu-img convert -O raw IN OUT
    cp "${@: -2:1}" "${@: -1}"
}

function openstack {
    _record openstack "$@"
    echo "$FAKE_IMAGE_ID"
}

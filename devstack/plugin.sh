#!/bin/bash
# xen-vhd-tempest devstack plugin: sourced by stack.sh, unstack.sh and clean.sh as
#   source devstack/plugin.sh MODE [PHASE]
#
# (devstack/files/bindep.txt: qemu-img, installed by devstack itself before these phases)
# stack pre-install   vhd-util, where a package for it is named
# stack install       this project on the host (the reference converter: xen-vhd build), and
#                     its xen-vhd-util linked as vhd-util when none is on PATH (Cinder calls it)
# stack post-config   glance-api.conf: vhd in disk_formats, ovf in container_formats, and the
#                     format inspector told not to reject a tgz whose disk_format is vhd
# stack extra         build a XenServer image (vhd chain in a tgz) from a bootable disk and
#                     upload it as vhd/ovf - with the images API directly: devstack's
#                     upload_image takes a .tgz for a UEC bundle
# stack test-config   the plugin into tempest's venv (upper constraints); [xen_vhd] in tempest.conf
# clean               what the plugin built

function _xen_vhd_tempest_image_file {
    echo "$XEN_VHD_TEMPEST_DATA_DIR/$XEN_VHD_TEMPEST_IMAGE_NAME.vhd.tgz"
}

function _xen_vhd_tempest_base_raw {
    echo "$XEN_VHD_TEMPEST_DATA_DIR/base.raw"
}

# install_xen_vhd_tempest_packages - a vhd-util package, when one is named (the fixed list is
# devstack/files/bindep.txt)
function install_xen_vhd_tempest_packages {
    install_package "$XEN_VHD_TEMPEST_VHD_UTIL_PACKAGE"
}

# install_xen_vhd_tempest - the project itself, for xen-vhd build
function install_xen_vhd_tempest {
    pip_install "$XEN_VHD_TEMPEST_DIR"
}

# install_xen_vhd_tempest_vhd_util - Cinder's XenServer path (fix_vhd_chain, coalesce_chain)
# runs vhd-util; no distribution ships blktap's any more, so the project's drop-in takes its
# name unless a real one is already on PATH
function install_xen_vhd_tempest_vhd_util {
    if command -v vhd-util >/dev/null 2>&1; then
        return
    fi
    local drop_in
    drop_in=$(command -v xen-vhd-util) || die "$LINENO" "xen-vhd-util is not on PATH after installing xen-vhd-tempest"
    sudo mkdir -p "$(dirname "$XEN_VHD_TEMPEST_VHD_UTIL_LINK")"
    sudo ln -sf "$drop_in" "$XEN_VHD_TEMPEST_VHD_UTIL_LINK"
}

# _xen_vhd_tempest_add_to_list FILE OPTION ITEM DEFAULT_LIST
# Make ITEM part of the comma-separated [image_format] OPTION (glance's own default list when
# unset; the deprecated [DEFAULT] spelling is carried over).
function _xen_vhd_tempest_add_to_list {
    local file=$1 option=$2 item=$3 default_list=$4
    local current
    current=$(iniget "$file" image_format "$option")
    if [[ -z "$current" ]]; then
        current=$(iniget "$file" DEFAULT "$option")
    fi
    if [[ -z "$current" ]]; then
        current=$default_list
    fi
    if [[ ",$current," != *",$item,"* ]]; then
        current="$current,$item"
    fi
    iniset "$file" image_format "$option" "$current"
}

# configure_xen_vhd_tempest_glance - glance must take XenServer images as they are
function configure_xen_vhd_tempest_glance {
    _xen_vhd_tempest_add_to_list "$GLANCE_API_CONF" disk_formats vhd \
        "ami,ari,aki,vhd,vhdx,vmdk,raw,qcow2,vdi,iso,ploop"
    _xen_vhd_tempest_add_to_list "$GLANCE_API_CONF" container_formats ovf \
        "ami,ari,aki,bare,ovf,ova,docker,compressed"
    if [[ "$XEN_VHD_TEMPEST_RELAX_GLANCE_FORMAT_MATCH" == "True" ]]; then
        iniset "$GLANCE_API_CONF" image_format require_image_format_match False
    fi
    if is_service_enabled cinder && ! command -v vhd-util >/dev/null 2>&1; then
        warn "$LINENO" "vhd-util is not on PATH: Cinder cannot convert vhd/ovf images to volumes " \
            "(set XEN_VHD_TEMPEST_INSTALL_VHD_UTIL=True, or XEN_VHD_TEMPEST_VHD_UTIL_PACKAGE where a package exists)"
    fi
}

# build_xen_vhd_tempest_image - a XenServer image from a bootable disk, with the converter
function build_xen_vhd_tempest_image {
    local base=${XEN_VHD_TEMPEST_BASE_IMAGE:-$FILES/$DEFAULT_IMAGE_FILE_NAME}
    local raw
    raw=$(_xen_vhd_tempest_base_raw)
    local image
    image=$(_xen_vhd_tempest_image_file)
    if [[ ! -f "$base" ]]; then
        die "$LINENO" "no bootable disk to build the XenServer image from: $base (set XEN_VHD_TEMPEST_BASE_IMAGE)"
    fi
    mkdir -p "$XEN_VHD_TEMPEST_DATA_DIR"
    qemu-img convert -O raw "$base" "$raw"
    local resize=()
    if [[ -n "$XEN_VHD_TEMPEST_IMAGE_RESIZE" ]]; then
        resize=(--resize "$XEN_VHD_TEMPEST_IMAGE_RESIZE")
    fi
    xen-vhd build --base "$raw" "${resize[@]}" "$image"
    xen-vhd check "$image"
}

# upload_xen_vhd_tempest_image - as vhd/ovf, public; its id goes to a file for test-config
function upload_xen_vhd_tempest_image {
    local image
    image=$(_xen_vhd_tempest_image_file)
    local image_id
    image_id=$(openstack --os-cloud=devstack-admin --os-region-name="$REGION_NAME" image create \
        "$XEN_VHD_TEMPEST_IMAGE_NAME" --public --disk-format vhd --container-format ovf \
        --file "$image" -f value -c id)
    if [[ -z "$image_id" ]]; then
        die "$LINENO" "uploading $image to glance gave no image id"
    fi
    echo "$image_id" > "$XEN_VHD_TEMPEST_DATA_DIR/image_id"
}

# install_xen_vhd_tempest_in_tempest - the plugin into tempest's venv with the release's upper
# constraints (as devstack installs TEMPEST_PLUGINS), unless TEMPEST_PLUGINS already put it there
function install_xen_vhd_tempest_in_tempest {
    if [[ " ${TEMPEST_PLUGINS:-} " == *" $XEN_VHD_TEMPEST_DIR "* ]]; then
        return
    fi
    pushd "$TEMPEST_DIR" >/dev/null || die "$LINENO" "no tempest at $TEMPEST_DIR"
    tox -evenv-tempest -- pip install -c "$XEN_VHD_TEMPEST_UPPER_CONSTRAINTS" "$XEN_VHD_TEMPEST_DIR"
    popd >/dev/null || return
}

# configure_xen_vhd_tempest_tempest - [xen_vhd] in tempest.conf
function configure_xen_vhd_tempest_tempest {
    local image_id=""
    if [[ -f "$XEN_VHD_TEMPEST_DATA_DIR/image_id" ]]; then
        image_id=$(cat "$XEN_VHD_TEMPEST_DATA_DIR/image_id")
    fi
    if [[ -n "$image_id" ]]; then
        iniset "$TEMPEST_CONFIG" xen_vhd image_ref "$image_id"
    fi
    if [[ -f "$(_xen_vhd_tempest_base_raw)" ]]; then
        iniset "$TEMPEST_CONFIG" xen_vhd raw_image "$(_xen_vhd_tempest_base_raw)"
    fi
    iniset "$TEMPEST_CONFIG" xen_vhd compute_is_xenserver "$XEN_VHD_TEMPEST_COMPUTE_IS_XENSERVER"
    iniset "$TEMPEST_CONFIG" xen_vhd expected_fault "$XEN_VHD_TEMPEST_EXPECTED_FAULT"
    iniset "$TEMPEST_CONFIG" xen_vhd work_dir "$XEN_VHD_TEMPEST_DATA_DIR/work"
    if [[ -n "$XEN_VHD_TEMPEST_BOOT_TIMEOUT" ]]; then
        iniset "$TEMPEST_CONFIG" xen_vhd boot_timeout "$XEN_VHD_TEMPEST_BOOT_TIMEOUT"
    fi
    if [[ -n "$XEN_VHD_TEMPEST_VOLUME_TIMEOUT" ]]; then
        iniset "$TEMPEST_CONFIG" xen_vhd volume_timeout "$XEN_VHD_TEMPEST_VOLUME_TIMEOUT"
    fi
    # tempest's own image lists must know the XenServer formats (image API tests, cleanup)
    _xen_vhd_tempest_add_tempest_format disk_formats vhd
    _xen_vhd_tempest_add_tempest_format container_formats ovf
}

function _xen_vhd_tempest_add_tempest_format {
    local option=$1 item=$2
    local current
    current=$(iniget "$TEMPEST_CONFIG" image "$option")
    if [[ -n "$current" && ",$current," != *",$item,"* ]]; then
        iniset "$TEMPEST_CONFIG" image "$option" "$current,$item"
    fi
}

if is_service_enabled xen-vhd-tempest; then
    if [[ "$1" == "stack" && "$2" == "pre-install" ]]; then
        if [[ -n "$XEN_VHD_TEMPEST_VHD_UTIL_PACKAGE" ]]; then
            echo_summary "Installing $XEN_VHD_TEMPEST_VHD_UTIL_PACKAGE for Cinder's vhd-util"
            install_xen_vhd_tempest_packages
        fi

    elif [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing xen-vhd-tempest"
        install_xen_vhd_tempest
        if [[ "$XEN_VHD_TEMPEST_INSTALL_VHD_UTIL" == "True" ]]; then
            install_xen_vhd_tempest_vhd_util
        fi

    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        if is_service_enabled glance g-api; then
            echo_summary "Configuring glance for XenServer images (vhd/ovf)"
            configure_xen_vhd_tempest_glance
        fi

    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        if [[ "$XEN_VHD_TEMPEST_UPLOAD_IMAGE" == "True" ]]; then
            echo_summary "Building and uploading the XenServer image $XEN_VHD_TEMPEST_IMAGE_NAME"
            build_xen_vhd_tempest_image
            if is_service_enabled glance g-api; then
                upload_xen_vhd_tempest_image
            fi
        fi

    elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
        if is_service_enabled tempest; then
            if [[ "$XEN_VHD_TEMPEST_INSTALL_IN_TEMPEST" == "True" ]]; then
                echo_summary "Installing xen-vhd-tempest into tempest's venv"
                install_xen_vhd_tempest_in_tempest
            fi
            echo_summary "Configuring tempest for xen-vhd-tempest"
            configure_xen_vhd_tempest_tempest
        fi
    fi

    if [[ "$1" == "unstack" ]]; then
        # no services of its own; the image stays in glance like devstack's own images
        :
    fi

    if [[ "$1" == "clean" ]]; then
        rm -rf "$XEN_VHD_TEMPEST_DATA_DIR"
    fi
fi

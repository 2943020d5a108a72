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

"""XenServer semantics of the lab, end to end with real guests and real clients.

One server boots from the default XenServer image (the flavor's 1 GiB root disk), writes a
file and raw markers, is backed up (a real VHD chain), the backup becomes volumes (reference and
every faulty conversion), one is hot-plugged into the server and hashed there, another boots.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import time

import pytest
from cloudfixtures import (
    SSH,
    private_dir,
    private_key,
    running_lab,
    same_content,
    server_ssh_address,
    set_tempest_microversion,
    wait_gone,
    wait_image,
    wait_server,
    wait_volume,
)

from converter.variants import VARIANTS

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    yield from running_lab()

MIB = 1024 * 1024
GIB = 1024 * MIB
FLAVOR_DISK = 1 * GIB                    # m1.tiny
SECTOR_MARK = 40 * 512                   # one sector inside block 0 (MBR is sector 0): partial bitmap
BEYOND_IMAGE = 100 * MIB                 # past the image's 64 MiB: only the grown disk has it
LAST_MIB = FLAVOR_DISK - MIB             # the disk's last MiB


@pytest.fixture(scope="module")
def booted(lab):
    from xen_vhd_tempest.lab.hypervisor import qemu_available
    reason = qemu_available()
    if reason:
        pytest.fail(f"cannot run QEMU guests here: {reason}", pytrace=False)
    nova = lab.nova("2.60")
    kp = nova.keypairs.create("xen-key")
    t0 = time.monotonic()
    server = nova.servers.create("xen-guest", image=lab.default_image_id, flavor="1", nics="none",
                                 key_name="xen-key")
    try:
        server = wait_server(nova, server.id, timeout=180)
        active = time.monotonic() - t0
        ssh = SSH(*server_ssh_address(server), "cirros", pkey=private_key(kp.private_key), timeout=180)
        sshable = time.monotonic() - t0
        ssh.check("dd if=/dev/urandom of=/home/cirros/somefile bs=4096 count=256 2>/dev/null && "
                  "md5sum /home/cirros/somefile > /home/cirros/somefile.md5 && sync")
        marker = ssh.check("cat /home/cirros/somefile")
        assert len(marker) == MIB
        # raw markers: a partial block, beyond the image's size, the disk's last MiB
        ssh.check(f"sudo dd if=/home/cirros/somefile of=/dev/vda bs=512 count=1 seek={SECTOR_MARK // 512} "
                  f"2>/dev/null && sudo dd if=/home/cirros/somefile of=/dev/vda bs=1M count=1 "
                  f"seek={BEYOND_IMAGE // MIB} 2>/dev/null && sudo dd if=/home/cirros/somefile of=/dev/vda "
                  f"bs=1M count=1 seek={LAST_MIB // MIB} 2>/dev/null && sync")
        yield {"server": server, "ssh": ssh, "keypair": kp, "marker": marker, "nova": nova,
               "active_seconds": active, "ssh_seconds": sshable}
        ssh.close()
    finally:
        nova.servers.delete(server.id)
        wait_gone(lambda: nova.servers.get(server.id), what="server")
        nova.keypairs.delete("xen-key")


@pytest.fixture(scope="module")
def backup(lab, booted):
    from converter.convert import convert_image
    nova, glance = booted["nova"], lab.glance()
    t0 = time.monotonic()
    result = nova.servers.backup(booted["server"].id, "xen-backup", "daily", 2)
    image_id = result["image_id"]
    image = wait_image(glance, image_id, timeout=180)
    seconds = time.monotonic() - t0
    with private_dir("xvt-backup-test-") as d:
        tgz = d / "backup.tgz"
        with open(tgz, "wb") as f:
            for chunk in glance.images.data(image_id):
                f.write(chunk)
        raw = d / "backup.raw"
        size = convert_image(str(tgz), str(raw), output_format="raw").virtual_size
        yield {"image": image, "tgz": tgz, "raw": raw, "size": size, "seconds": seconds, "dir": d}
        try:
            glance.images.delete(image_id)
        except Exception:
            pass


def _read(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _md5(path, offset=0, length=None):
    h = hashlib.md5()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length if length is not None else os.path.getsize(path) - offset
        while left > 0:
            data = f.read(min(left, 8 * MIB))
            if not data:
                break
            h.update(data)
            left -= len(data)
    return h.hexdigest()


# -- boot -------------------------------------------------------------------------------------------
def test_server_is_sshable_on_its_private_address_and_sees_the_flavor_disk(booted):
    server = booted["server"]
    addr = server.addresses["private"][0]
    assert addr["version"] == 4 and addr["addr"].startswith("127.0.0.")
    partitions = booted["ssh"].check("cat /proc/partitions").decode()
    vda = [line.split() for line in partitions.splitlines() if line.endswith(" vda")]
    assert int(vda[0][2]) * 1024 == FLAVOR_DISK  # grown from the image's 64 MiB to m1.tiny's 1 GiB
    print(f"server ACTIVE after {booted['active_seconds']:.1f}s, SSH after {booted['ssh_seconds']:.1f}s")


def test_console_output(booted):
    nova = booted["nova"]
    from xen_vhd_tempest.lab.guest import READY_LINE
    out = nova.servers.get_console_output(booted["server"].id)
    assert READY_LINE in out
    tail = nova.servers.get_console_output(booted["server"].id, length=3)
    assert 0 < len(tail.splitlines()) <= 3


# -- backup -----------------------------------------------------------------------------------------
def test_backup_is_a_xenserver_chain(backup, lab):
    from converter.check import check_image
    from converter.member import VhdMember
    from converter.source import FileSource
    from converter.writer import read_footer
    from xen_vhd_tempest.lab.volume.known_wrong import extract_members
    report = check_image(str(backup["tgz"]))
    assert report.ok, report.problems
    members = report.members
    assert [m.name for m in members] == ["0.vhd", "1.vhd", "2.vhd"]
    leaf, resize, base = members
    assert (leaf.disk_type, leaf.hidden, leaf.current_size) == ("differencing", False, FLAVOR_DISK)
    assert (resize.disk_type, resize.hidden) == ("differencing", True)
    assert (resize.current_size, resize.original_size) == (FLAVOR_DISK, 64 * MIB)
    assert base.hidden and base.current_size == 64 * MIB
    with tarfile.open(backup["tgz"]) as tar:
        entries = tar.getmembers()
    names = [e.name for e in entries]
    assert names == [".", "./0.vhd", "./1.vhd", "./2.vhd"]    # tarfile shows "./" as "."
    assert entries[0].isdir()
    assert leaf.parent_name == f"{resize.uuid}.vhd" and resize.parent_name == f"{base.uuid}.vhd"
    assert not {leaf.parent_name, resize.parent_name} & {os.path.basename(n) for n in names}
    paths = extract_members(backup["tgz"], backup["dir"])
    for p in paths:
        assert read_footer(p).creator_app[:3] == b"tap"
        with FileSource(p) as src:
            assert VhdMember.open(src).header.block_size == 2 * MIB
    print(f"backup active after {backup['seconds']:.1f}s, {backup['image'].size} bytes")


def test_backup_contains_the_guests_writes(backup, booted):
    raw, marker = backup["raw"], booted["marker"]
    assert backup["size"] == FLAVOR_DISK
    assert _read(raw, SECTOR_MARK, 512) == marker[:512]
    assert _read(raw, BEYOND_IMAGE, MIB) == marker
    assert _read(raw, LAST_MIB, MIB) == marker
    assert _read(raw, 510, 2) == b"\x55\xaa"      # the image's MBR survived the partial block
    # the file's bytes, 4 KiB block by block, wherever ext4 put them
    import mmap
    with open(raw, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        blocks = [marker[i:i + 4096] for i in range(0, len(marker), 4096)]
        first = m.find(blocks[0], 0, 64 * MIB)
        assert first >= 0, "the guest's file is not in the backup"
        align = first % 4096
        present = {hashlib.md5(m[o:o + 4096]).digest() for o in range(align, 64 * MIB, 4096)}
        missing = [i for i, b in enumerate(blocks) if hashlib.md5(b).digest() not in present]
        assert not missing, f"{len(missing)} of the file's blocks are not in the backup"


def test_backup_rotation_and_location_header_before_2_45(lab, booted):
    glance = lab.glance()
    sid = booted["server"].id
    compute = lab.endpoint("compute")
    ids = []
    for i in range(2):
        r = lab.request("POST", f"{compute}/servers/{sid}/action",
                        headers={"Content-Type": "application/json", "OpenStack-API-Version": "compute 2.44"},
                        data=json.dumps({"createBackup": {"name": f"weekly-{i}", "backup_type": "weekly",
                                                          "rotation": 1}}))
        assert r.status_code == 202, r.text
        assert not r.content or r.content == b""
        image_id = r.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
        ids.append(image_id)
        # wait for this backup to finish (the server goes back to no task)
        deadline = time.monotonic() + 120
        while booted["nova"].servers.get(sid).to_dict()["OS-EXT-STS:task_state"] is not None:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    from glanceclient import exc
    with pytest.raises(exc.HTTPNotFound):
        glance.images.get(ids[0])          # rotated out: rotation 1 keeps the newest only
    assert glance.images.get(ids[1]).backup_type == "weekly"
    glance.images.delete(ids[1])
    r = lab.request("POST", f"{compute}/servers/{sid}/action", headers={"Content-Type": "application/json"},
                    data=json.dumps({"createBackup": {"name": "x", "backup_type": "daily", "rotation": -1}}))
    assert r.status_code == 400


# -- volumes ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_volume(lab, backup):
    cinder = lab.cinder()
    vol = cinder.volumes.create(1, imageRef=backup["image"].id, name="from-backup")
    vol = wait_volume(cinder, vol.id, timeout=180)
    yield vol
    cinder.volumes.delete(vol.id)


def test_volume_from_backup_is_the_reference_conversion(lab, backup, reference_volume):
    assert reference_volume.bootable == "true"
    path = lab.volume_path(reference_volume.id)
    assert os.path.getsize(path) == FLAVOR_DISK
    assert same_content(path, backup["raw"])


def test_attach_hash_detach(lab, booted, backup, reference_volume):
    nova, cinder = booted["nova"], lab.cinder()
    sid, vid = booted["server"].id, reference_volume.id
    attachment = nova.volumes.create_server_volume(sid, vid)
    assert attachment.volumeId == vid and attachment.device.startswith("/dev/vd")
    vol = wait_volume(cinder, vid, "in-use", timeout=60)
    assert vol.attachments[0]["server_id"] == sid
    assert [a.volumeId for a in nova.volumes.get_server_volumes(sid)] == [vid]
    from cinderclient import exceptions
    with pytest.raises(exceptions.BadRequest):
        cinder.volumes.delete(vid)           # in use
    ssh = booted["ssh"]
    dev = None
    deadline = time.monotonic() + 30
    while dev is None:
        parts = ssh.check("cat /proc/partitions").decode().split()
        dev = next((p for p in parts if p in ("vdc", "vdd", "vde")), None)
        assert dev or time.monotonic() < deadline, "hot-plugged disk not seen by the guest"
        time.sleep(0.5)
    size = int(ssh.check(f"cat /sys/block/{dev}/size").decode()) * 512
    assert size == FLAVOR_DISK
    got = ssh.check(f"sudo dd if=/dev/{dev} bs=1M count=128 2>/dev/null | md5sum").decode().split()[0]
    assert got == _md5(backup["raw"], 0, 128 * MIB)
    got = ssh.check(f"sudo dd if=/dev/{dev} bs=1M skip={LAST_MIB // MIB} 2>/dev/null | md5sum").decode().split()[0]
    assert got == hashlib.md5(booted["marker"]).hexdigest()
    nova.volumes.delete_server_volume(sid, vid)
    vol = wait_volume(cinder, vid, "available", timeout=60)
    assert vol.attachments == []


def test_boot_from_volume(lab, booted, backup):
    nova, cinder = booted["nova"], lab.cinder()
    vol = cinder.volumes.create(1, imageRef=backup["image"].id, name="boot-vol")
    vol = wait_volume(cinder, vol.id, timeout=180)
    server = nova.servers.create("xen-bfv", image=None, flavor="1", nics="none", key_name="xen-key",
                                 block_device_mapping_v2=[{"boot_index": 0, "uuid": vol.id, "source_type": "volume",
                                                           "destination_type": "volume",
                                                           "delete_on_termination": True}])
    try:
        server = wait_server(nova, server.id, timeout=180)
        assert server.image == ""
        assert wait_volume(cinder, vol.id, "in-use").attachments[0]["device"] == "/dev/vda"
        ssh = SSH(*server_ssh_address(server), "cirros", pkey=private_key(booted["keypair"].private_key),
                  timeout=180)
        try:
            out = ssh.check("cd /home/cirros && md5sum -c somefile.md5").decode()
            assert "OK" in out
        finally:
            ssh.close()
    finally:
        nova.servers.delete(server.id)
        wait_gone(lambda: nova.servers.get(server.id), what="server")
    wait_gone(lambda: cinder.volumes.get(vol.id), what="volume")   # delete_on_termination


# -- faulty conversions -----------------------------------------------------------------------------
def _fault_signature(mode, vol, ref, marker):
    """Assert that volume file ``vol`` shows ``mode``'s fault (and differs from ``ref``)."""
    zero_mib = bytes(MIB)
    if mode == "raw-copy":
        assert _read(vol, 0, 2) == b"\x1f\x8b"                       # the tgz's gzip magic
    elif mode == "leaf-only":
        assert _read(vol, 510, 2) != b"\x55\xaa"                     # no partition table
        assert _read(vol, SECTOR_MARK, 512) == marker[:512]         # but the leaf's own writes
    elif mode == "no-resize":
        assert same_content(vol, ref, 0, 64 * MIB)                          # the base's size is right...
        assert _read(vol, BEYOND_IMAGE, MIB) == zero_mib             # ...everything past it lost
    elif mode == "ignore-bitmaps":
        assert _read(vol, 0, 512) == bytes(512)                      # MBR: the leaf's block 0 taken whole
        assert _read(vol, SECTOR_MARK, 512) == marker[:512]
    elif mode == "wrong-order":
        assert _read(vol, BEYOND_IMAGE, MIB) != marker               # the base now wins
    elif mode == "truncate":
        assert same_content(vol, ref, 0, 128 * MIB)
        assert _read(vol, LAST_MIB, MIB) == zero_mib
    assert not same_content(vol, ref)


@pytest.mark.parametrize("mode", list(VARIANTS))
def test_faulty_conversion_really_produces_its_fault(lab, backup, booted, mode):
    cinder = lab.cinder()
    lab.set_mode(mode)
    try:
        vol = cinder.volumes.create(1, imageRef=backup["image"].id, name=f"faulty-{mode}")
        vol = wait_volume(cinder, vol.id, timeout=180)
    finally:
        lab.set_mode("reference")
    try:
        _fault_signature(mode, lab.volume_path(vol.id), backup["raw"], booted["marker"])
    finally:
        cinder.volumes.delete(vol.id)


# -- import checks and sizes, with locally built XenServer images (no boot) -------------------------
def _chain_image(path, *, hide_leaf=False, gap=False, size=64 * MIB):
    from converter.archive import write_tar
    from converter.writer import VhdWriter, set_hidden
    d = path.parent
    base = VhdWriter(d / "b.vhd", disk_type="dynamic", size=size, hidden=True)
    base.write(0, b"\x11" * 512)
    base.close()
    leaf = VhdWriter(d / "l.vhd", disk_type="differencing", size=size, parent_uuid=base.uuid)
    leaf.write(512, b"\x22" * 512)
    leaf.close()
    if hide_leaf:
        set_hidden(d / "l.vhd", True)
    names = ["./0.vhd", "./2.vhd" if gap else "./1.vhd"]
    write_tar(path, [d / "l.vhd", d / "b.vhd"], names)
    return path


def _upload(glance, path, name):
    image = glance.images.create(name=name, disk_format="vhd", container_format="ovf")
    with open(path, "rb") as f:
        glance.images.upload(image.id, f)
    return image


@pytest.mark.parametrize("defect", ["hidden-leaf", "numbering-gap"])
def test_boot_applies_xenserver_import_checks(lab, tmp_path, defect):
    glance, nova = lab.glance(), lab.nova("2.60")
    tgz = _chain_image(tmp_path / "bad.tgz", hide_leaf=defect == "hidden-leaf", gap=defect == "numbering-gap")
    image = _upload(glance, tgz, f"bad-{defect}")
    try:
        server = nova.servers.create(f"bad-{defect}", image=image.id, flavor="1", nics="none")
        try:
            server = wait_server(nova, server.id, "ERROR", timeout=60)
            message = server.fault["message"].lower()
            assert ("hidden" if defect == "hidden-leaf" else "1.vhd") in message, message
        finally:
            nova.servers.delete(server.id)
    finally:
        glance.images.delete(image.id)


def test_volume_refuses_an_image_bigger_than_itself(lab, tmp_path):
    glance, cinder = lab.glance(), lab.cinder()
    image = _upload(glance, _chain_image(tmp_path / "big.tgz", size=2 * GIB), "two-gib")
    try:
        vol = cinder.volumes.create(1, imageRef=image.id, name="too-small")
        vol = wait_volume(cinder, vol.id, "error", timeout=60)
        messages = cinder.messages.list(search_opts={"resource_uuid": vol.id})
        assert "doesn't fit in a volume of size 1GB" in messages[0].user_message
        cinder.volumes.delete(vol.id)
        vol = cinder.volumes.create(2, imageRef=image.id, name="big-enough")
        vol = wait_volume(cinder, vol.id, timeout=60)
        assert _read(lab.volume_path(vol.id), 0, 1024) == b"\x11" * 512 + b"\x22" * 512
        cinder.volumes.delete(vol.id)
    finally:
        glance.images.delete(image.id)


# -- tempest's schemas on a live server -------------------------------------------------------------
def test_live_server_responses_match_tempest_schemas(lab, booted):
    """show/list, addresses, console output, volume attachments at several microversions."""
    from tempest.lib import auth
    from tempest.lib.services.compute import servers_client
    from tempest.lib.services.volume.v3 import volumes_client
    c = lab.info["credentials"]["demo"]
    creds = auth.KeystoneV3Credentials(username=c["username"], password=c["password"], project_name="demo",
                                       user_domain_name="Default", project_domain_name="Default")
    provider = auth.KeystoneV3AuthProvider(creds, f"{lab.auth_url}/v3")
    servers = servers_client.ServersClient(provider, "compute", "RegionOne")
    volumes = volumes_client.VolumesClient(provider, "volumev3", "RegionOne")
    sid = booted["server"].id
    vol = volumes.create_volume(size=1, name="tempest-attach")["volume"]
    deadline = time.monotonic() + 60
    while volumes.show_volume(vol["id"])["volume"]["status"] != "available":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    try:
        set_tempest_microversion(compute="2.60")
        attachment = servers.attach_volume(sid, volumeId=vol["id"])["volumeAttachment"]
        assert attachment["volumeId"] == vol["id"]
        for version in (None, "2.3", "2.47", "2.70", "2.79", "2.89", "2.96"):
            set_tempest_microversion(compute=version)
            shown = servers.show_server(sid)["server"]
            assert shown["status"] == "ACTIVE"
            assert [v["id"] for v in shown["os-extended-volumes:volumes_attached"]] == [vol["id"]]
            servers.list_servers(detail=True)
            listed = servers.list_volume_attachments(sid)["volumeAttachments"]
            assert [a["volumeId"] for a in listed] == [vol["id"]]
            servers.show_volume_attachment(sid, vol["id"])
            assert servers.list_addresses(sid)["addresses"]["private"]
            assert servers.get_console_output(sid, length=5)["output"]
        set_tempest_microversion()
        servers.detach_volume(sid, vol["id"])
        deadline = time.monotonic() + 60
        while volumes.show_volume(vol["id"])["volume"]["status"] != "available":
            assert time.monotonic() < deadline
            time.sleep(0.3)
        set_tempest_microversion(compute="2.45")
        image_id = servers.create_backup(sid, name="tempest-backup", backup_type="tempest",
                                         rotation=1)["image_id"]
        deadline = time.monotonic() + 120
        while servers.show_server(sid)["server"]["OS-EXT-STS:task_state"] is not None:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        lab.glance().images.delete(image_id)
    finally:
        set_tempest_microversion()
        volumes.delete_volume(vol["id"])


# -- openstacksdk on a live server ------------------------------------------------------------------
def test_openstacksdk_flow(lab, booted):
    """The harness may drive the lab with openstacksdk: servers, console, attach/detach, images."""
    import warnings

    from openstack import config as os_config
    from openstack import connection
    warnings.simplefilter("ignore")
    region = os_config.OpenStackConfig(config_files=[str(lab.state_dir / "clouds.yaml")],
                                       load_envvars=False).get_one(cloud="xen-vhd-lab")
    conn = connection.Connection(config=region)
    try:
        server = conn.compute.get_server(booted["server"].id)
        assert server.status == "ACTIVE"
        assert server.addresses["private"][0]["addr"] == booted["server"].addresses["private"][0]["addr"]
        assert conn.compute.get_server_console_output(server, length=5)["output"]
        assert conn.image.get_image(lab.default_image_id).disk_format == "vhd"
        vol = conn.block_storage.create_volume(size=1, name="sdk-vol")
        vol = conn.block_storage.wait_for_status(vol, "available", wait=60)
        conn.compute.create_volume_attachment(server, volume_id=vol.id)
        vol = conn.block_storage.wait_for_status(vol, "in-use", wait=60)
        assert [a.volume_id for a in conn.compute.volume_attachments(server)] == [vol.id]
        conn.compute.delete_volume_attachment(server, vol.id)
        vol = conn.block_storage.wait_for_status(vol, "available", wait=60)
        conn.block_storage.delete_volume(vol)
        conn.block_storage.wait_for_delete(vol, wait=60)
    finally:
        conn.close()

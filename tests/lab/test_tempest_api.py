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

"""Stock tempest's own API tests against the lab, with the tempest.conf the lab generates, unedited.

tempest 47's tests ask for primary, alt, project_reader and admin credentials: the generated
tempest.conf uses dynamic credentials (keystone's admin API makes a project and users per test
class). The lab has no network API, so tempest boots servers without ``networks``; where a
feature is absent (neutron, image import, volume snapshots...) the generated tempest.conf turns
it off and the test skips for the reason listed in ``SKIPS``. Nothing may fail, and a skip for
any other reason is a failure.

The suite runs ``QUICK`` (about two minutes here: one booted server class); ``tox -e tempest-api``
(``XEN_VHD_TEMPEST_API=full``) runs ``FULL``. Both print the counts per service.
"""

from __future__ import annotations

import collections
import os
import shutil
import time

import pytest
from cloudfixtures import private_dir, running_guest_lab
from test_tempest_plugin import init_workspace, subunit_results, tempest

pytestmark = pytest.mark.lab

QUICK = (r"^tempest\.api\.(identity\.v3\.test_(tokens|catalog)"
         r"|image\.v2\.test_images"
         r"|volume\.test_(volumes_get|volumes_list|volumes_negative|versions"
         r"|volumes_snapshots_list|volumes_snapshots_negative|snapshot_metadata)"
         r"|compute\.(flavors\.|keypairs\.|servers\.test_create_server\.ServersTestJSON\.))")
FULL = (r"^tempest\.api\.(identity\.v3\.test_(tokens|catalog)"
        r"|image\.v2\.test_images"
        r"|volume\.test_(volumes_get|volumes_list|volumes_negative|versions"
        r"|volumes_snapshots|snapshot_metadata)"
        r"|compute\.(flavors\.|keypairs\.|servers\.test_create_server\.|images\.test_images_oneserver"
        r"|volumes\.test_attach_volume))")

# reason tempest gives -> why the lab's tempest.conf says so
SKIPS = {
    "Neutron is not available": "no network API (compute classes with create_default_network)",
    "image import is not available": "glance's import workflow is not served ([image-feature-enabled] import_image)",
    "http store is disabled": "one file store",
    "show_multiple_locations is not available": "image locations are not served",
    "only one store is available": "one file store",
    "store weight is not configured": "one file store",
    "do_secure_hash is enabled": "tempest default; locations are not served",
    "Image format testing is not configured": "no format-test images configured",
    "Cinder volume clones are disabled": "no clones ([volume-feature-enabled] clone)",
    "Volume/image dependency tests not enabled": "createImage of a volume-backed server is not served",
    "Cinder backup is disabled": "no backups ([volume-feature-enabled] backup)",
    "FQDN hostname sanitization is not supported": "tempest default (before 2.94)",
}


def service_of(test_id):
    """tempest.api.<service>... (a class-level skip is ``setUpClass (tempest.api...)``)."""
    name = test_id.split("(", 1)[-1]
    return name.split(".")[2]


@pytest.fixture(scope="module")
def lab():
    yield from running_guest_lab()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_stock_tempest_api_tests_pass_on_the_lab(lab):
    full = os.environ.get("XEN_VHD_TEMPEST_API") == "full"
    with private_dir("xvt-tempest-api-") as scratch:
        ws = init_workspace(scratch)
        shutil.copy(lab.state_dir / "tempest.conf", ws / "etc" / "tempest.conf")     # as generated
        t0 = time.monotonic()
        proc = tempest("run", "--regex", FULL if full else QUICK, "--concurrency", "1", cwd=ws,
                       timeout=3500, check=False)
        seconds = time.monotonic() - t0
        results = subunit_results(ws)

    counts = collections.defaultdict(collections.Counter)
    for test_id, result in results.items():
        counts[service_of(test_id)][result["status"]] += 1
    print(f"stock tempest ({'full' if full else 'quick'} selection) on the lab in {seconds:.0f}s:")
    for service, c in sorted(counts.items()):
        print(f"  {service}: {c['success']} passed, {c['fail']} failed, {c['skip']} skipped")

    failed = {k: v["details"].get("traceback", "")[-1500:] for k, v in results.items() if v["status"] == "fail"}
    assert not failed, "\n".join(f"{k}:\n{v}" for k, v in failed.items()) + proc.stdout[-2000:]
    unexplained = {k: v["details"].get("reason", "") for k, v in results.items() if v["status"] == "skip"
                   and not any(reason in v["details"].get("reason", "") for reason in SKIPS)}
    assert not unexplained, unexplained
    assert set(counts) == {"identity", "image", "volume", "compute"}, dict(counts)
    for service, c in counts.items():
        assert c["success"] >= 4 and set(c) <= {"success", "skip"}, (service, c)
    passed = sum(c["success"] for c in counts.values())
    assert passed >= 100, dict(counts)
    # everything the tests made is gone, and so are the projects and users tempest made
    status = lab.status()
    assert (status["servers"], status["volumes"]) == (0, 0), status
    projects = lab.request("GET", f"{lab.auth_url}/v3/projects", who="admin").json()["projects"]
    users = lab.request("GET", f"{lab.auth_url}/v3/users", who="admin").json()["users"]
    assert sorted(p["name"] for p in projects) == ["admin", "demo"]
    assert sorted(u["name"] for u in users) == ["admin", "demo"]

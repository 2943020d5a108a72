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

"""The image a createBackup answer names, read once for both clouds (python-*clients, tempest)."""

import pytest

from xen_vhd_tempest.scenario.cloud import CloudError, backup_image_id


def test_body_then_location_then_a_clear_error():
    assert backup_image_id({"image_id": "abc"}, "http://x/v2/images/zzz") == "abc"      # >= 2.45
    assert backup_image_id({}, "http://glance:9292/v2/images/f00d/") == "f00d"
    with pytest.raises(CloudError, match="neither body nor Location"):
        backup_image_id({}, "")

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

"""xen-vhd-util: blktap's ``vhd-util`` command line over the converter's structures.

    cli     -- the dispatcher: blktap's subcommand names, usage lines and exit codes (errno)
    image   -- a VHD opened for in-place editing: footer, header, full BAT, batmap, locators;
               grow (BAT and batmap in place, blocks in the way moved to the end), sector writes
               that allocate blocks and set bitmaps, the resize journal and its revert
    inspect -- check, read, scan: blktap's command lines over converter.check, dump and scan

Exit codes are blktap's: the errno of the failure (22 EINVAL for usage and bad VHDs, 2 ENOENT,
17 EEXIST for an existing journal); one line on stdout says why, as vhd-util prints it.
"""

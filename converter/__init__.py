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

"""Reference converter and inspector for XenServer images (VHD chains in a tgz).

Pure Python (stdlib; ``isal`` used when installed for faster gzip).  Modules, one job each:

on-disk structures (parse ``unpack`` / serialise ``pack`` side by side)
    footer    -- the 512-byte footer, checksum, geometry, disk types
    header    -- dynamic disk header and parent locators
    bat       -- block allocation table, XenServer batmap, sector bitmaps
semantics
    member    -- one VHD file: metadata read in offset order, blocks as (index, bitmap, data)
    chain     -- the blktap read rule, written once (``Compositor``), and ``ChainReader``
containers
    archive   -- XenServer images: tgz stream, directory or file list; naming, safety, order
    tarheader -- one tar header, read (tarfile is not imported to read images: start-up time)
conversion
    sink      -- where converted bytes go: sparse raw file, block device, stdout
    convert   -- single-pass tgz -> raw / coalesced VHD
writers
    writer    -- fixed, dynamic and differencing VHD writer; VhdSink (one-pass coalesced
                 VHD output); hidden flag rewrite
    builder   -- XenServer image builder (layers over a raw base) and its expected raw
inspection
    check     -- blktap ``vhd-util check`` validations, per member and per chain
    scan      -- ``vhd-util scan -p`` style trees
    dump      -- ``vhd-util read -p`` style dumps
    cli       -- the ``xen-vhd`` command
    vhdutil   -- ``xen-vhd-util``: blktap's ``vhd-util`` command line, editing VHDs in place

Plain data classes are ``record.record`` (not ``dataclasses``: start-up time).

Errors: everything the converter rejects raises a subclass of ``errors.VhdError`` whose
message is one line naming the file/member and the field.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"

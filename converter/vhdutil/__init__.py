"""xen-vhd-util: blktap's ``vhd-util`` command line over the converter's structures.

    cli     -- the dispatcher: blktap's subcommand names, usage lines and exit codes (errno)
    image   -- a VHD opened for in-place editing: footer, header, full BAT, batmap, locators;
               grow (BAT and batmap in place, blocks in the way moved to the end), sector writes
               that allocate blocks and set bitmaps, the resize journal and its revert
    inspect -- check, read, scan: blktap's command lines over converter.check, dump and scan

Exit codes are blktap's: the errno of the failure (22 EINVAL for usage and bad VHDs, 2 ENOENT,
17 EEXIST for an existing journal); one line on stdout says why, as vhd-util prints it.
"""

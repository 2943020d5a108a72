"""The seed scenario, written once, driven by two front ends through a small cloud interface.

cloud      -- what the scenario needs from a cloud (``Cloud``), errors, plain records
waiters    -- polling with progress and fail-fast, apart from the calls (tempest style)
clients    -- ``Cloud`` over keystoneauth + python-novaclient/glanceclient/cinderclient
ssh        -- commands in guests over SSH (paramiko), retried while a guest boots
report     -- progress lines, step timings, the summary table
resources  -- cleanup in reverse order, on success, failure and Ctrl-C
reference  -- the reference converter's verdict on a backup image: checks, raw, md5s
diagnose   -- why a volume differs from the reference, in a Cinder developer's terms
story      -- the steps: boot, write, backup, inspect, volume, byte-exact, boot from volume
"""

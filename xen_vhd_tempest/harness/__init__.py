"""The scenarios as pytest tests: ``pytest --pyargs xen_vhd_tempest.harness`` (or ``xen-vhd-tempest run``)."""

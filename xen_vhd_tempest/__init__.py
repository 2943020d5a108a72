"""xen-vhd-tempest: prove OpenStack turns XenServer images into correct Cinder volumes."""

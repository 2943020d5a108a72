"""The embedded lab: an OpenStack on loopback with XenServer image semantics and QEMU guests."""

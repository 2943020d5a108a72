"""Where the project keeps things it builds once and reuses (guest images, kernels)."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: $XEN_VHD_TEMPEST_CACHE, else $XDG_CACHE_HOME/xen-vhd-tempest."""
    explicit = os.environ.get("XEN_VHD_TEMPEST_CACHE")
    if explicit:
        root = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "xen-vhd-tempest"
    root.mkdir(parents=True, exist_ok=True)
    return root

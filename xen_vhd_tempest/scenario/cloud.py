"""What the scenario needs from a cloud, and nothing more.

Two implementations: ``clients.ClientsCloud`` (python-*clients, the pytest harness and the
``xen-vhd-tempest run`` command) and the tempest plugin's adapter over tempest's service
clients and waiters. Every method is one API call or one wait; the story composes them.
"""

import dataclasses


class ScenarioError(Exception):
    """A step failed. ``step`` and ``diagnosis`` say what and why, in a Cinder developer's terms."""

    def __init__(self, message, *, diagnosis=None, console=None):
        super().__init__(message)
        self.diagnosis = diagnosis
        self.console = console


class CloudError(ScenarioError):
    """A cloud call failed or a resource reached an error state."""


class WaitTimeout(ScenarioError):
    """A resource did not reach the wanted state in time."""


@dataclasses.dataclass
class Server:
    id: str
    status: str
    fault: str = ""
    addresses: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Image:
    id: str
    name: str
    status: str
    disk_format: str | None = None
    container_format: str | None = None
    size: int | None = None


@dataclasses.dataclass
class Volume:
    id: str
    status: str
    size_gb: int
    bootable: bool = False
    reason: str = ""               # the latest user message / error detail, when the cloud has one


@dataclasses.dataclass
class Flavor:
    id: str
    name: str
    disk_gb: int
    ram_mb: int


def backup_image_id(body, location):
    """The image a createBackup answer names: in the body (microversion >= 2.45) or, before
    that, as the last part of the Location header."""
    if body.get("image_id"):
        return body["image_id"]
    if location:
        return location.rstrip("/").rsplit("/", 1)[-1]
    raise CloudError("createBackup answered without an image id (neither body nor Location)")


class Cloud:
    """The calls the scenario makes. Implementations raise CloudError with the API's message."""

    name = "cloud"

    # lookups
    def find_image(self, ref) -> Image: raise NotImplementedError
    def find_flavor(self, ref) -> Flavor: raise NotImplementedError
    def find_network(self, ref) -> str | None: raise NotImplementedError

    # keypairs
    def create_keypair(self, name) -> str:
        """Create a keypair; returns the private key (PEM/OpenSSH text)."""
        raise NotImplementedError

    def delete_keypair(self, name): raise NotImplementedError

    # servers
    def create_server(self, name, *, flavor_id, key_name, image_id=None, boot_volume_id=None,
                      network_id=None) -> str: raise NotImplementedError
    def get_server(self, server_id) -> Server: raise NotImplementedError
    def delete_server(self, server_id): raise NotImplementedError
    def console_output(self, server_id, lines=60) -> str: raise NotImplementedError
    def ssh_endpoint(self, server: Server) -> tuple: raise NotImplementedError

    def create_backup(self, server_id, name, backup_type, rotation) -> str:
        """``createBackup``; returns the new image id (from the body, or Location before 2.45)."""
        raise NotImplementedError

    # images
    def get_image(self, image_id) -> Image: raise NotImplementedError
    def download_image(self, image_id, path): raise NotImplementedError
    def upload_image(self, name, path, *, disk_format, container_format) -> str: raise NotImplementedError
    def delete_image(self, image_id): raise NotImplementedError

    # volumes
    def create_volume(self, name, size_gb, *, image_id=None) -> str: raise NotImplementedError
    def get_volume(self, volume_id) -> Volume: raise NotImplementedError
    def delete_volume(self, volume_id): raise NotImplementedError
    def attach_volume(self, server_id, volume_id): raise NotImplementedError
    def detach_volume(self, server_id, volume_id): raise NotImplementedError

    def leftovers(self, prefix) -> list:
        """(kind, id, name) of resources named ``prefix-...`` (kinds server, volume, image, keypair):
        swept at cleanup. A cloud that cannot list them returns []."""
        return []

    # existence checks for cleanup waits (None when gone)
    def server_exists(self, server_id) -> bool: raise NotImplementedError
    def volume_exists(self, volume_id) -> bool: raise NotImplementedError

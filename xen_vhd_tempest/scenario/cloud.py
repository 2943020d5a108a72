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

"""The contract between the story and a front end: every call the story makes, and nothing more.

Two implementations: ``harness.clients.ClientsCloud`` (python-*clients and paramiko: the pytest
harness and ``xen-vhd-tempest run``) and ``tempest_plugin.cloud.TempestCloud`` (tempest's service
clients and RemoteClient). Each API method is one call; the waiters poll those calls with an
explicit timeout (``scenario.waiters``) and a front end may override them. ``guest_shell`` gives
the story a ``Shell`` for commands in a guest. Failures raise the errors below, whose message
names the call.
"""

import abc
import dataclasses

from xen_vhd_tempest.scenario import waiters
from xen_vhd_tempest.scenario.errors import CloudError, ScenarioError, SshError, WaitTimeout

__all__ = ["Cloud", "CloudError", "Flavor", "Image", "ScenarioError", "Server", "Shell", "SshError", "Volume",
           "WaitTimeout", "backup_image_id"]


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


class Shell(abc.ABC):
    """Commands in one guest. ``connect`` retries until ``timeout`` (``check()`` may raise to stop
    early); ``run`` returns stdout, raising ``SshError`` on a non-zero exit when ``check``, with
    ``input`` on the command's stdin; a command is never re-run."""

    @abc.abstractmethod
    def connect(self, timeout=300.0, check=None) -> "Shell": ...

    @abc.abstractmethod
    def run(self, command, timeout=600.0, check=True, input=None) -> str: ...

    @abc.abstractmethod
    def close(self): ...


class Cloud(abc.ABC):
    """The calls the story makes. Implementations raise CloudError with the API's message."""

    name = "cloud"

    # -- lookups ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def find_image(self, ref) -> Image: ...

    @abc.abstractmethod
    def find_flavor(self, ref) -> Flavor: ...

    @abc.abstractmethod
    def find_network(self, ref) -> str | None: ...

    # -- keypairs --------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_keypair(self, name) -> str:
        """Create a keypair; returns the private key (PEM/OpenSSH text)."""

    @abc.abstractmethod
    def delete_keypair(self, name): ...

    # -- servers ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_server(self, name, *, flavor_id, key_name, image_id=None, boot_volume_id=None,
                      network_id=None) -> str: ...

    @abc.abstractmethod
    def get_server(self, server_id) -> Server: ...

    @abc.abstractmethod
    def server_exists(self, server_id) -> bool: ...

    @abc.abstractmethod
    def delete_server(self, server_id): ...

    @abc.abstractmethod
    def console_output(self, server_id, lines=60) -> str: ...

    @abc.abstractmethod
    def ssh_host(self, server: Server) -> str:
        """The address the runner reaches ``server``'s SSH at (floating or fixed)."""

    @abc.abstractmethod
    def create_backup(self, server_id, name, backup_type, rotation) -> str:
        """``createBackup``; returns the new image id (from the body, or Location before 2.45)."""

    # -- images ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_image(self, image_id) -> Image: ...

    @abc.abstractmethod
    def download_image(self, image_id, path): ...

    @abc.abstractmethod
    def upload_image(self, name, path, *, disk_format, container_format) -> str: ...

    @abc.abstractmethod
    def delete_image(self, image_id): ...

    # -- volumes ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_volume(self, name, size_gb, *, image_id=None) -> str: ...

    @abc.abstractmethod
    def get_volume(self, volume_id) -> Volume: ...

    @abc.abstractmethod
    def volume_exists(self, volume_id) -> bool: ...

    @abc.abstractmethod
    def delete_volume(self, volume_id): ...

    @abc.abstractmethod
    def attach_volume(self, server_id, volume_id): ...

    @abc.abstractmethod
    def detach_volume(self, server_id, volume_id): ...

    # -- guests ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def guest_shell(self, host, port, user, *, private_key=None, password=None, host_key=None) -> Shell:
        """A ``Shell`` for one guest (not connected yet). ``host_key``: the key(s) the cloud
        published for that guest, or None (accepted for that connection only)."""

    # -- what a run left behind --------------------------------------------------------------
    @abc.abstractmethod
    def leftovers(self, prefix) -> list:
        """(kind, id, name) of this project's resources named ``prefix-...`` (kinds server, volume,
        image, keypair): what a run created even if it never learnt the id. Swept at cleanup."""

    # -- waiters: polling the calls above with an explicit timeout; a front end may override ----
    def wait_server_status(self, server_id, status, *, timeout, progress=None) -> Server:
        return waiters.server_status(self, server_id, status, timeout=timeout, progress=progress)

    def wait_image_active(self, image_id, *, timeout, progress=None) -> Image:
        return waiters.image_active(self, image_id, timeout=timeout, progress=progress)

    def wait_volume_status(self, volume_id, status, *, timeout, progress=None) -> Volume:
        return waiters.volume_status(self, volume_id, status, timeout=timeout, progress=progress)

    def wait_server_gone(self, server_id, *, timeout, progress=None):
        waiters.gone(f"server {server_id} deletion", lambda: self.server_exists(server_id), timeout=timeout,
                     progress=progress)

    def wait_volume_gone(self, volume_id, *, timeout, progress=None):
        waiters.gone(f"volume {volume_id} deletion", lambda: self.volume_exists(volume_id), timeout=timeout,
                     progress=progress)

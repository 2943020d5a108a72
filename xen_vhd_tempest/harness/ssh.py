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

"""Commands in guests over SSH (paramiko), retried while the guest is still booting.

Host keys
---------
Two policies, chosen per connection by whether a ``host_key`` is given:

* **Published keys (the lab).** ``host_key`` is the key the cloud published for this server
  (one ``"<type> <base64>"`` string, or a list of them). The guest must present one of them,
  else the connection fails at once with "host key ... does not match": no retry, no
  fallback. The lab reads each guest's host keys from its root disk before booting it and
  publishes them (``GET /lab/status``: ``guests.<server id>.host_keys``); the pytest harness
  passes them for every server it boots on the lab (``Options.host_key_of``).
* **Real clouds: accept for this connection only.** Without a published key the key the guest
  presents is accepted for the life of that one connection and never written to any
  ``known_hosts`` (nor read from one). The servers are created by the run itself seconds
  before, so there is no earlier key to compare with; a volume booted at the same address has
  a new key, and runs on shared clouds must not fight over ``~/.ssh/known_hosts``. This trusts
  the network path between the runner and the guest for the duration of the run: run it from
  a host on the cloud's own network (as tempest's validation does) when that matters.

Commands are never re-run: a connection lost while a command runs fails the step (the command
may have had effects), with a diagnosis saying so.
"""

import io
import logging
import socket
import time

import paramiko

from xen_vhd_tempest.scenario.cloud import Shell, SshError
from xen_vhd_tempest.scenario.waiters import poll_delays

__all__ = ["Ssh", "SshError", "load_private_key"]

# While a guest boots, refused and half-open connections are expected; paramiko's transport
# thread would print each as a traceback. Our own errors say what failed.
logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)


LOST = ("the SSH connection to the guest broke while a command ran (network, guest or hypervisor "
        "failure); the command is not re-run because it may have had effects")


class _RememberForThisConnection(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)


class _RequireKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, expected):
        self.expected = {" ".join(k.split()[:2]) for k in ([expected] if isinstance(expected, str) else expected)}

    def missing_host_key(self, client, hostname, key):
        if f"{key.get_name()} {key.get_base64()}" not in self.expected:
            raise SshError(f"{hostname}: host key {key.get_name()} {key.get_base64()[:24]}... does not match "
                           "the one(s) the cloud published for this server",
                           diagnosis="the SSH server is not the guest the cloud says it is (a wrong address, "
                                     "another guest answering, or a man in the middle)")


def load_private_key(text):
    for cls in (paramiko.Ed25519Key, paramiko.RSAKey, paramiko.ECDSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise SshError("the keypair's private key is in a format paramiko cannot read")


class Ssh(Shell):
    def __init__(self, host, port, user, *, private_key=None, password=None, host_key=None):
        self.host, self.port, self.user = host, port, user
        self.pkey = load_private_key(private_key) if private_key else None
        self.password = password
        self.host_key = host_key
        self.client = None

    def __repr__(self):
        return f"{self.user}@{self.host}:{self.port}"

    def connect(self, timeout=300.0, check=None):
        """Connect, retrying until ``timeout``; ``check()`` may raise to stop early (console failure)."""
        deadline = time.monotonic() + timeout
        last = None
        delays = poll_delays(1.0)      # sshd comes up seconds after boot: retry soon, not every 2 s
        while True:
            client = paramiko.SSHClient()
            policy = _RequireKey(self.host_key) if self.host_key else _RememberForThisConnection()
            client.set_missing_host_key_policy(policy)
            try:
                left = max(deadline - time.monotonic(), 2.0)      # an attempt does not outlast the timeout
                client.connect(self.host, self.port, self.user, pkey=self.pkey, password=self.password,
                               timeout=min(10, left), banner_timeout=min(20, left), auth_timeout=20,
                               look_for_keys=False, allow_agent=False)
                self.client = client
                return self
            except SshError:
                client.close()
                raise
            except (OSError, socket.timeout, paramiko.SSHException, EOFError) as exc:
                client.close()
                last = exc
            if check:
                check()
            if time.monotonic() > deadline:
                raise SshError(f"no SSH to {self} after {timeout:.0f}s: {last}")
            time.sleep(next(delays))

    def run(self, command, timeout=600.0, check=True, input=None):
        """Run ``command`` (``input`` on its stdin); returns stdout (text). Raises SshError on a
        non-zero exit when ``check``."""
        if self.client is None:
            self.connect()
        try:
            stdin, stdout, stderr = self.client.exec_command(command, timeout=timeout)
            if input:
                stdin.write(input)
                stdin.flush()
                stdin.channel.shutdown_write()
            stdin.close()
            out = stdout.read().decode("utf-8", "replace")
            err = stderr.read().decode("utf-8", "replace")
            status = stdout.channel.recv_exit_status()
        except (OSError, socket.timeout, paramiko.SSHException, EOFError) as exc:
            self.close()
            raise SshError(f"{self}: `{command}` failed: {exc or type(exc).__name__}", diagnosis=LOST) from None
        if status == -1:            # the channel closed without an exit status: the connection died
            self.close()
            raise SshError(f"{self}: the SSH connection was lost while `{command}` ran", diagnosis=LOST)
        if check and status:
            raise SshError(f"{self}: `{command}` exited {status}: {err.strip() or out.strip()}")
        return out

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None

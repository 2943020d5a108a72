"""Commands in guests over SSH (paramiko), retried while the guest is still booting.

Host keys: a guest's key is accepted on first contact and kept only for that connection's
life (never written to known_hosts) - a volume booted at the same address has a new key, and
tests on shared clouds must not fight over ~/.ssh/known_hosts. Pass ``host_key`` (the lab
publishes its guests' keys) to require a specific key instead.
"""

import io
import logging
import socket
import time

import paramiko

from xen_vhd_tempest.scenario.cloud import ScenarioError

# While a guest boots, refused and half-open connections are expected; paramiko's transport
# thread would print each as a traceback. Our own errors say what failed.
logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)


class SshError(ScenarioError):
    pass


class _RememberForThisConnection(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)


class _RequireKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, expected):
        self.expected = expected

    def missing_host_key(self, client, hostname, key):
        if f"{key.get_name()} {key.get_base64()}" != self.expected:
            raise SshError(f"{hostname}: host key {key.get_name()} does not match the one the cloud published")


def load_private_key(text):
    for cls in (paramiko.Ed25519Key, paramiko.RSAKey, paramiko.ECDSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise SshError("the keypair's private key is in a format paramiko cannot read")


class Ssh:
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
        while True:
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(_RequireKey(self.host_key) if self.host_key
                                               else _RememberForThisConnection())
            try:
                client.connect(self.host, self.port, self.user, pkey=self.pkey, password=self.password,
                               timeout=10, banner_timeout=20, auth_timeout=20, look_for_keys=False,
                               allow_agent=False)
                self.client = client
                return self
            except (OSError, socket.timeout, paramiko.SSHException, EOFError) as exc:
                client.close()
                last = exc
            if check:
                check()
            if time.monotonic() > deadline:
                raise SshError(f"no SSH to {self} after {timeout:.0f}s: {last}")
            time.sleep(2)

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
            raise SshError(f"{self}: `{command}` failed: {exc or type(exc).__name__}") from None
        if check and status:
            raise SshError(f"{self}: `{command}` exited {status}: {err.strip() or out.strip()}")
        return out

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None

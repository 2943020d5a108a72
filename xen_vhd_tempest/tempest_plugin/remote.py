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

"""``scenario.cloud.Shell`` over tempest.lib's ``RemoteClient``: commands in guests the tempest way.

Commands run with ``[validation] ssh_shell_prologue`` and tempest's debug logging; the client is
built from tempest.conf's ``[validation]`` values here, since ``tempest.lib`` reads no config.
"""

import shlex
import time
import uuid

from oslo_log import log as logging
from tempest import config
from tempest.lib import exceptions as lib_exc
from tempest.lib.common.utils.linux import remote_client

from xen_vhd_tempest.scenario.cloud import Shell, SshError

CONF = config.CONF
LOG = logging.getLogger(__name__)
RC_MARK = "xen-vhd-tempest-exit="
INPUT_PIECE = 4000                   # characters of stdin sent per command


class RemoteSsh(Shell):
    """``scenario.cloud.Shell`` on tempest.lib's ``RemoteClient``.

    ``connect`` retries in short attempts so ``check()`` (the story's console check) can stop
    the wait early; ``run`` gives each command its own timeout and returns stdout, raising
    ``SshError`` on a non-zero exit when ``check``; ``input`` goes to the command's stdin.
    ``host_key`` is not enforced: tempest's client accepts the guest's key, as tempest does for
    every scenario.
    """

    ATTEMPT = 10

    def __init__(self, host, port, user, *, private_key=None, password=None, host_key=None, servers_client=None,
                 server=None):
        self.host, self.port, self.user = host, port, user
        v = CONF.validation
        self.remote = remote_client.RemoteClient(
            host, user, password=password, pkey=private_key, server=server, servers_client=servers_client,
            ssh_timeout=v.ssh_timeout, connect_timeout=v.connect_timeout,
            console_output_enabled=CONF.compute_feature_enabled.console_output,
            ssh_shell_prologue=v.ssh_shell_prologue, ping_count=v.ping_count, ping_size=v.ping_size,
            ssh_key_type=v.ssh_key_type)
        self.remote.ssh_client.port = port
        self.connected = False

    def __repr__(self):
        return f"{self.user}@{self.host}:{self.port}"

    def connect(self, timeout=300.0, check=None):
        deadline = time.monotonic() + timeout
        client = self.remote.ssh_client
        saved = client.timeout
        client.timeout = self.ATTEMPT
        try:
            while True:
                try:
                    self.remote.validate_authentication()
                    self.connected = True
                    return self
                except lib_exc.SSHTimeout as exc:
                    last = exc
                if check:
                    check()
                if time.monotonic() > deadline:
                    raise SshError(f"no SSH to {self} after {timeout:.0f}s: {last}")
        finally:
            client.timeout = saved

    def run(self, command, timeout=600.0, check=True, input=None):
        client = self.remote.ssh_client
        client.timeout = int(max(timeout, 1))
        staged = None
        try:
            if input is not None:
                # tempest's client closes stdin at once, and dropbear caps a command's length
                # (MAX_CMD_LEN): the input goes to a file in the guest, a few KiB per command.
                staged = f"/tmp/xen-vhd-tempest-input-{uuid.uuid4().hex[:12]}"
                for piece in _pieces(input, INPUT_PIECE):
                    self.remote.exec_command(f"printf '%s' {shlex.quote(piece)} >> {staged}")
                command = f"( {command} ) < {staged}"
            if check:
                return self.remote.exec_command(command)
            # RemoteClient raises on a non-zero exit and keeps no stdout: report the status instead.
            out = self.remote.exec_command(f"rc=0; ( {command} ) || rc=$?; echo; echo {RC_MARK}$rc")
            return out[:out.rindex(RC_MARK)][:-1]          # without the newline the first echo added
        except lib_exc.SSHExecCommandFailed as exc:
            raise SshError(f"{self}: {exc}") from None
        except (lib_exc.SSHTimeout, lib_exc.TimeoutException, OSError, EOFError) as exc:
            raise SshError(f"{self}: `{command}` failed: {exc or type(exc).__name__}") from None
        finally:
            if staged:
                try:
                    self.remote.exec_command(f"rm -f {staged}")
                except Exception as exc:       # the command's own outcome matters more
                    LOG.warning("could not remove %s on %s: %s", staged, self, exc)

    def close(self):
        self.connected = False        # tempest's client opens one connection per command


def _pieces(text, size):
    """``text`` in pieces of at most ``size`` characters, cut after a newline where possible."""
    while text:
        cut = text.rfind("\n", 0, size) + 1 if len(text) > size else len(text)
        cut = cut or size
        yield text[:cut]
        text = text[cut:]


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

"""The lab's HTTP plumbing: requests in, responses out, nothing about clouds.

One ``ThreadingHTTPServer`` on a loopback port serves every service under a path
prefix (``/identity``, ``/compute``, ``/image``, ``/volume``, ``/lab``), the way
devstack puts them behind Apache. A :class:`Service` is a route table (each service's
``urls.py``) over a responses object (its ``responses.py``: HTTP in and out, calling the
``models``, which hold state). A :class:`~.errors.LabError` becomes the service's own error
body here (``errors.BODIES``).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable, NamedTuple
from urllib.parse import parse_qs, urlsplit

from .errors import BODIES, LabError, bad_request, generic_body, policy_forbidden

# oslo.middleware's sizelimit default (osapi_max_request_body_size): 112 KiB.
MAX_JSON_BODY = 114688
STREAM_CHUNK = 1024 * 1024


REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 300: "Multiple Choices",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict",
    411: "Length Required", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
}


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict = field(default_factory=dict)
    length: int | None = None  # required when body is an iterable

    @classmethod
    def json(cls, status, obj, headers=None):
        data = json.dumps(obj).encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return cls(status, data, h)

    @classmethod
    def empty(cls, status=204, headers=None):
        return cls(status, b"", dict(headers or {}))


class Request:
    """What a handler sees: method, service-relative path, query, headers, body."""

    def __init__(self, handler: BaseHTTPRequestHandler, method: str, path: str, query: str,
                 base_url: str):
        self._handler = handler
        self.method = method
        self.path = path
        self.query = parse_qs(query, keep_blank_values=True)
        self.headers = handler.headers
        self.base_url = base_url  # e.g. http://127.0.0.1:PORT/compute
        self.host_url = base_url.rsplit("/", 1)[0]
        self.params: dict = {}
        self.context = None  # auth context, set by the dispatcher
        self._consumed = False
        self.request_id = "req-" + str(uuid.uuid4())

    # -- query helpers
    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[-1] if values else default

    # -- body
    def _chunked(self) -> bool:
        return "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()

    def stream(self, limit: int | None = None):
        """Yield the body in chunks (Content-Length or chunked); 413 past ``limit``."""
        self._consumed = True
        rfile = self._handler.rfile
        total = 0
        if self._chunked():
            while True:
                line = rfile.readline(65537)
                if not line:
                    raise bad_request("Truncated chunked body")
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    self._handler.close_connection = True
                    raise bad_request("Malformed chunked body") from None
                if size == 0:
                    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                total += size
                if limit is not None and total > limit:
                    self._handler.close_connection = True
                    raise LabError(413, "Request is too large.", kind="overLimit")
                remaining = size
                while remaining:
                    data = rfile.read(min(remaining, STREAM_CHUNK))
                    if not data:
                        raise bad_request("Truncated chunked body")
                    remaining -= len(data)
                    yield data
                rfile.readline(3)  # CRLF after the chunk
        else:
            length = self.headers.get("Content-Length")
            if not length:
                return
            try:
                remaining = int(length)
            except ValueError:
                self._handler.close_connection = True
                raise bad_request("Invalid Content-Length") from None
            if limit is not None and remaining > limit:
                self._handler.close_connection = True
                raise LabError(413, "Request is too large.", kind="overLimit")
            while remaining > 0:
                data = rfile.read(min(remaining, STREAM_CHUNK))
                if not data:
                    break
                remaining -= len(data)
                yield data

    def body(self, limit: int = MAX_JSON_BODY) -> bytes:
        return b"".join(self.stream(limit))

    def json(self, required=True):
        """The body as JSON: 400 when malformed (or absent and required), 413 when too big."""
        raw = self.body()
        if not raw.strip():
            if required:
                raise bad_request("The request body is empty or malformed")
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("Malformed request body") from None

    def drain(self):
        if not self._consumed:
            try:
                for _ in self.stream(limit=64 * 1024 * 1024):
                    pass
            except LabError:
                self._handler.close_connection = True


class Route(NamedTuple):
    """One row of a service's ``urls.py``."""
    method: str
    path: str                # ``{name}`` segments become ``request.params[name]``
    handler: str             # the name of the responses object's method
    public: bool = False     # answered without a token
    versioned: bool = True   # the responses object's ``prepare(request)`` runs first (microversions)
    # the role the service's default policy asks for: reader for reads, member for writes, unless
    # named (admin-only APIs; nova's keypairs belong to the user, whatever the role)
    role: str | None = None
    rule: str | None = None  # the policy rule a 403 names (default: the handler's name)

    def required_role(self) -> str:
        return self.role or ("reader" if self.method in ("GET", "HEAD") else "member")


class Service:
    """Routes under one prefix over a responses object, an auth hook, the service's error body.

    ``responses`` may define ``prepare(request)`` (run before versioned routes, after auth) and
    ``decorate(request, response)`` (e.g. microversion headers, run on every answer)."""

    def __init__(self, prefix: str, responses, routes: Iterable[Route], *, authenticate=None,
                 strict_slashes=False, rbac=False):
        self.prefix = prefix
        # nova, cinder and glance enforce their 2024 "secure RBAC" defaults on every token-checked route
        self.rbac = rbac
        # nova, glance and cinder route with ``routes``/exact paths: ``/v2/images/`` is not
        # ``/v2/images`` (404); version roots take either
        self.strict_slashes = strict_slashes
        self.responses = responses
        self.authenticate = authenticate  # (request) -> context or raises Unauthorized
        self.prepare = getattr(responses, "prepare", None)
        self.decorate = getattr(responses, "decorate", None)
        self.routes = [(route, re.compile("^" + re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", route.path) + "$"),
                        getattr(responses, route.handler)) for route in routes]

    def dispatch(self, request: Request) -> Response:
        allowed = []
        path = request.path.rstrip("/") or "/"
        if self.strict_slashes and path.count("/") > 1 and request.path.endswith("/"):
            path = request.path
        for route, regex, handler in self.routes:
            m = regex.match(path)
            if not m:
                continue
            if route.method != request.method and not (route.method == "GET" and request.method == "HEAD"):
                allowed.append(route.method)
                continue
            request.params = m.groupdict()
            if not route.public and self.authenticate is not None:
                request.context = self.authenticate(request)
                if self.rbac and route.required_role() not in request.context["roles"]:
                    raise policy_forbidden(self.prefix, route.rule or route.handler)
            elif self.authenticate is not None:
                request.context = None
            if route.versioned and self.prepare is not None:
                self.prepare(request)
            return handler(request)
        if allowed:
            raise LabError(405, "The method is not allowed for the requested URL.",
                           kind="badMethod", headers={"Allow": ", ".join(sorted(set(allowed)))})
        raise LabError(404, "The resource could not be found.", kind="itemNotFound")

    def error_response(self, error: LabError) -> Response:
        return error_response(error, error.style or self.prefix)


def error_response(error: LabError, style: str | None = None) -> Response:
    """``error`` in the words of service ``style`` (``errors.BODIES``; others: cinder's shape)."""
    body = BODIES.get(style, generic_body)(error)
    if isinstance(body, str):
        response = Response(error.status, body.encode(), {"Content-Type": "text/plain; charset=UTF-8"})
    else:
        response = Response.json(error.status, body)
    response.headers.update(error.headers)
    return response


class LabHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, services: dict[str, Service], log=None):
        self.services = services
        self.log = log
        # (service prefix, method, path) -> fault_injection.ApiFault | None
        self.fault_hook = None
        super().__init__(address, _Handler)

    @property
    def base_url(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xen-vhd-tempest-lab"
    # Headers and body are separate writes: with Nagle on, a keep-alive client's delayed ACK
    # held every body ~40 ms (the load test's p50 was 48 ms for any call).
    disable_nagle_algorithm = True
    sys_version = ""

    def log_message(self, fmt, *args):  # noqa: D401 - quiet unless the lab keeps a log
        log = self.server.log
        if log is not None:
            log("%s %s" % (self.address_string(), fmt % args))

    def _serve(self):
        split = urlsplit(self.path)
        parts = split.path.split("/", 2)
        prefix = parts[1] if len(parts) > 1 else ""
        service = self.server.services.get(prefix)
        base_url = f"{self.server.base_url}/{prefix}"
        rest = "/" + (parts[2] if len(parts) > 2 else "")
        request = Request(self, self.command, rest, split.query, base_url)
        try:
            if service is None:
                raise LabError(404, "The resource could not be found.")
            fault = self.server.fault_hook(prefix, self.command, rest) if self.server.fault_hook else None
            if fault is not None and fault.hang is not None:
                time.sleep(fault.hang)      # no answer: the client's timeout is shorter
                self.close_connection = True
                return
            try:
                if fault is not None:
                    raise LabError(fault.status, "Injected fault: the service failed to handle the request "
                                   f"(lab fault injection, request {request.request_id}).", kind="computeFault")
                response = service.dispatch(request)
            except LabError as error:
                response = service.error_response(error)
            if service.decorate is not None:
                service.decorate(request, response)
        except LabError as error:
            response = error_response(error)
        except Exception as error:  # a lab bug: say so in a 500 rather than hang the client
            import traceback
            traceback.print_exc()
            response = Response.json(500, {"computeFault": {"code": 500, "message": f"lab bug: {error!r}"}})
        request.drain()
        self._send(request, response)

    def _send(self, request, response: Response):
        body = response.body
        if isinstance(body, (bytes, bytearray)):
            length = len(body)
            chunks = [bytes(body)] if body else []
        else:
            length = response.length
            chunks = body
        self.send_response(response.status, REASONS.get(response.status))
        headers = {k.lower(): (k, v) for k, v in response.headers.items()}
        for key, value in headers.values():
            self.send_header(key, str(value))
        if "content-type" not in headers and response.status != 204:
            self.send_header("Content-Type", "text/plain; charset=UTF-8")
        if response.status != 204:
            self.send_header("Content-Length", str(length or 0))
        if "x-openstack-request-id" not in headers:
            self.send_header("X-OpenStack-Request-ID", request.request_id)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            close = getattr(chunks, "close", None)
            if close:
                close()
            return
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


def serve(host: str, port: int, services: dict[str, Service], log=None) -> tuple[LabHTTPServer, threading.Thread]:
    if host not in ("127.0.0.1", "localhost") and not host.startswith("127."):
        raise ValueError(f"the lab binds loopback only, not {host}")
    server = LabHTTPServer((host, port), services, log=log)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    thread = threading.Thread(target=server.serve_forever, name="lab-http", daemon=True)
    thread.start()
    return server, thread

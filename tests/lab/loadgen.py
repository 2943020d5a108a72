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

"""API load on a lab: N clients looping create / show / list (paged) / delete over images,
volumes and keypairs, with a token issued now and then; every response timed per service.

    stats = run_load(lab_info, clients=8, seconds=60)
    stats.report()  ->  per service: requests, req/s, p50/p99 ms, 5xx; and the failures seen

Glance and Cinder lists are paged (``limit`` + ``marker``/``next``, as clients page them);
the lab's Nova keypair list has no paging (``limit``/``marker`` are Nova 2.35's), so keypairs
are listed whole. Each client names what it creates ``load-<client>-<n>`` so leaks are found by
name afterwards.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import requests


def _public_key():
    """An OpenSSH public key to import (the lab generates none for an import)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " load@lab"


PUBLIC_KEY = _public_key()


@dataclass
class Stats:
    seconds: float = 0.0
    latencies: dict = field(default_factory=lambda: defaultdict(list))   # service -> [s]
    statuses: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    failures: list = field(default_factory=list)    # (service, method, path, status or error, body)
    iterations: int = 0
    marker_races: int = 0       # a page's marker deleted by another client meanwhile
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, service, method, path, status, took, body=""):
        with self.lock:
            self.latencies[service].append(took)
            self.statuses[service][status] += 1
            if not isinstance(status, int) or status >= 500:
                self.failures.append((service, method, path, status, body[:300]))

    @property
    def server_errors(self):
        return sum(n for s in self.statuses.values() for code, n in s.items()
                   if not isinstance(code, int) or code >= 500)

    @property
    def requests(self):
        return sum(len(v) for v in self.latencies.values())

    def per_service(self):
        out = {}
        for service, lats in sorted(self.latencies.items()):
            lats = sorted(lats)
            out[service] = {
                "requests": len(lats), "rps": len(lats) / self.seconds if self.seconds else 0.0,
                "p50_ms": 1000 * lats[len(lats) // 2], "p99_ms": 1000 * lats[min(len(lats) - 1, int(len(lats) * 0.99))],
                "5xx": sum(n for c, n in self.statuses[service].items() if not isinstance(c, int) or c >= 500),
            }
        return out

    def report(self):
        lines = [f"{self.requests} requests in {self.seconds:.1f} s ({self.requests / self.seconds:.1f}/s), "
                 f"{self.iterations} create-delete cycles, {self.server_errors} 5xx/errors, "
                 f"{self.marker_races} pages whose marker another client had deleted"]
        for service, s in self.per_service().items():
            lines.append(f"  {service:9} {s['requests']:6} req {s['rps']:7.1f}/s  p50 {s['p50_ms']:7.1f} ms  "
                         f"p99 {s['p99_ms']:7.1f} ms  5xx {s['5xx']}")
        for f in self.failures[:10]:
            lines.append(f"  failure: {f}")
        return "\n".join(lines)


class Client:
    def __init__(self, info, index, stats, who="demo"):
        self.info, self.index, self.stats = info, index, stats
        self.http = requests.Session()
        self.creds = info["credentials"][who]
        self.count = 0
        self.token, self.project = None, None
        self.authenticate()

    # -- plumbing
    def call(self, service, method, url, *, expect=None, **kw):
        headers = dict(kw.pop("headers", {}))
        if self.token:
            headers.setdefault("X-Auth-Token", self.token)
        t = time.monotonic()
        try:
            r = self.http.request(method, url, headers=headers, timeout=60, **kw)
        except requests.RequestException as error:
            self.stats.record(service, method, url, type(error).__name__, time.monotonic() - t, str(error))
            raise
        self.stats.record(service, method, url, r.status_code, time.monotonic() - t,
                          r.text if r.status_code >= 500 else "")
        if expect is not None and r.status_code not in expect:
            raise AssertionError(f"{method} {url} -> {r.status_code} (wanted {expect}): {r.text[:300]}")
        return r

    def authenticate(self):
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": self.creds["username"], "password": self.creds["password"], "domain": {"id": "default"}}}},
            "scope": {"project": {"name": self.creds["project_name"], "domain": {"id": "default"}}}}}
        r = self.call("identity", "POST", self.info["auth_url"] + "/v3/auth/tokens", json=body, expect=(201,))
        self.token = r.headers["X-Subject-Token"]
        self.project = r.json()["token"]["project"]["id"]

    def name(self):
        self.count += 1
        return f"load-{self.index}-{self.count}"

    def wait(self, service, url, done, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            r = self.call(service, "GET", url)
            if done(r):
                return r
            if time.monotonic() > deadline:
                raise AssertionError(f"{url}: not done after {timeout}s ({r.status_code} {r.text[:200]})")
            time.sleep(0.1)

    def pages(self, service, url, key, next_of, gone, limit=5, most=3):
        """Follow up to ``most`` pages of a list. A marker another client deleted meanwhile gets
        the real service's answer (``gone``: glance 400, cinder 404) and ends the listing."""
        for page in range(most):
            r = self.call(service, "GET", url, expect=(200,) if page == 0 else (200, gone))
            if r.status_code == gone:
                with self.stats.lock:
                    self.stats.marker_races += 1
                return
            body = r.json()
            url = next_of(body, limit)
            if not url or not body[key]:
                return

    # -- the loops
    def image_cycle(self):
        base = self.info["url"] + "/image"
        r = self.call("image", "POST", base + "/v2/images", expect=(201,),
                      json={"name": self.name(), "disk_format": "raw", "container_format": "bare"})
        image = r.json()["id"]
        self.call("image", "PUT", f"{base}/v2/images/{image}/file", data=os.urandom(4096),
                  headers={"Content-Type": "application/octet-stream"}, expect=(204,))
        assert self.call("image", "GET", f"{base}/v2/images/{image}", expect=(200,)).json()["status"] == "active"
        self.pages("image", f"{base}/v2/images?limit=5", "images",
                   lambda b, n: base + b["next"] if b.get("next") else None, gone=400)
        self.call("image", "DELETE", f"{base}/v2/images/{image}", expect=(204,))
        self.call("image", "GET", f"{base}/v2/images/{image}", expect=(404,))

    def volume_cycle(self):
        base = f"{self.info['url']}/volume/v3/{self.project}"
        r = self.call("volume", "POST", base + "/volumes", expect=(202,),
                      json={"volume": {"size": 1, "name": self.name()}})
        vol = r.json()["volume"]["id"]
        self.wait("volume", f"{base}/volumes/{vol}", lambda r: r.json()["volume"]["status"] == "available")

        def next_page(body, limit):
            vols = body["volumes"]
            return f"{base}/volumes/detail?limit={limit}&marker={vols[-1]['id']}" if len(vols) == limit else None
        self.pages("volume", f"{base}/volumes/detail?limit=5", "volumes", next_page, gone=404)
        self.call("volume", "DELETE", f"{base}/volumes/{vol}", expect=(202,))
        self.wait("volume", f"{base}/volumes/{vol}", lambda r: r.status_code == 404)

    def keypair_cycle(self):
        base = self.info["url"] + "/compute/v2.1"
        name = self.name()
        self.call("compute", "POST", base + "/os-keypairs", expect=(200, 201),
                  json={"keypair": {"name": name, "public_key": PUBLIC_KEY}})
        self.call("compute", "GET", base + "/os-keypairs", expect=(200,))        # the lab: no paging
        self.call("compute", "GET", f"{base}/os-keypairs/{name}", expect=(200,))
        self.call("compute", "DELETE", f"{base}/os-keypairs/{name}", expect=(202, 204))
        self.call("compute", "GET", f"{base}/os-keypairs/{name}", expect=(404,))

    def loop(self, until, errors):
        rnd = random.Random(self.index)
        cycles = (self.image_cycle, self.volume_cycle, self.keypair_cycle)
        while time.monotonic() < until:
            try:
                if rnd.random() < 0.1:
                    self.authenticate()
                rnd.choice(cycles)()
                with self.stats.lock:
                    self.stats.iterations += 1
            except Exception as error:      # counted; the run goes on
                errors.append(f"client {self.index}: {type(error).__name__}: {error}")


def run_load(info, *, clients=8, seconds=60.0) -> tuple[Stats, list]:
    """``clients`` threads for ``seconds``; returns (stats, the loop errors seen)."""
    stats, errors = Stats(), []
    workers = [Client(info, i, stats) for i in range(clients)]
    t0 = time.monotonic()
    until = t0 + seconds
    threads = [threading.Thread(target=c.loop, args=(until, errors), daemon=True) for c in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 180)
    stats.seconds = time.monotonic() - t0
    return stats, errors


def leaked(info, state_dir) -> dict:
    """What the clients left: records named load-* (admin view) and data files without records."""
    admin = Client(info, "admin", Stats(), who="admin")
    out = {}
    images = admin.call("image", "GET", info["url"] + "/image/v2/images?limit=1000", expect=(200,)).json()["images"]
    out["images"] = [i["id"] for i in images if (i.get("name") or "").startswith("load-")]
    vols = admin.call("volume", "GET", f"{info['url']}/volume/v3/{admin.project}/volumes/detail?all_tenants=1",
                      expect=(200,)).json()["volumes"]
    out["volumes"] = [v["id"] for v in vols if (v.get("name") or "").startswith("load-")]
    db = json.loads((state_dir / "db.json").read_text())
    out["keypairs"] = [k for k in db.get("keypairs", {}) if k.split("/", 1)[-1].startswith("load-")]
    image_ids = set(db.get("images", {}))
    out["image files"] = [p.name for p in (state_dir / "images").iterdir() if p.name not in image_ids]
    vol_ids = {f"{v}.raw" for v in db.get("volumes", {})}
    out["volume files"] = [p.name for p in (state_dir / "volumes").iterdir() if p.name not in vol_ids]
    return {k: v for k, v in out.items() if v}

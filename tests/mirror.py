"""A tailscale package mirror on 127.0.0.1, for the install-tailscale tests (unit and
integration): it serves files from a dict and counts the requests."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer

from spacetail.install.pins import DEFAULT_VERSION

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
PKG = f"tailscale_{DEFAULT_VERSION}_amd64.tgz"


def sha256_line(data: bytes) -> bytes:
    """A .sha256 file as pkgs.tailscale.com serves it: the hex digest alone."""
    return hashlib.sha256(data).hexdigest().encode() + b"\n"


class Mirror:
    """A package mirror on 127.0.0.1 that serves files from a dict and counts requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        # Extra response headers by path (a registry's Docker-Content-Digest).
        self.headers: dict[str, dict[str, str]] = {}
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                # A proxied request carries an absolute URL; a direct one only a path.
                path = urllib.parse.urlsplit(self.path).path
                with mirror.lock:
                    mirror.requests[path] += 1
                    body = mirror.files.get(path)
                    extra = mirror.headers.get(path, {})
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/stable"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def publish(self, version: str, arch: str, package: bytes, sha: bytes | None = None) -> None:
        name = f"/stable/tailscale_{version}_{arch}.tgz"
        self.files[name] = package
        self.files[name + ".sha256"] = sha256_line(package) if sha is None else sha

    def publish_listing(self, version: str, arches: tuple[str, ...] = ("amd64", "arm64")) -> None:
        """The folder's JSON listing, as `/stable/?mode=json` answers (the fields read here)."""
        tarballs = {arch: f"tailscale_{version}_{arch}.tgz" for arch in arches}
        listing = {"TarballsVersion": version, "Tarballs": tarballs}
        self.files["/stable/"] = json.dumps(listing).encode()

    def package_requests(self, name: str = PKG) -> int:
        return self.requests[f"/stable/{name}"]

    def publish_image(self, repository: str, tag: str, digest: str) -> None:
        """A registry's anonymous token and the manifest of REPOSITORY:TAG, whose digest the
        Docker-Content-Digest header says (as public.ecr.aws answers)."""
        self.files["/token/"] = json.dumps({"token": "anonymous"}).encode()
        path = f"/v2/{repository}/manifests/{tag}"
        self.files[path] = b'{"schemaVersion": 2}'
        self.headers[path] = {"Docker-Content-Digest": digest}

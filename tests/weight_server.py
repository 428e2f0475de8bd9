"""Weight files served from 127.0.0.1 by pytest-httpserver, with byte ranges, cut connections and errors."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from werkzeug import Request, Response


@dataclass
class WeightServer:
    """What the test server holds and what it was asked for."""

    base: str  # URL of the folder the files are in
    files: dict[str, bytes]
    ranges: list[str | None] = field(default_factory=list)  # the Range header of each request for a file
    redirected: list[str | None] = field(default_factory=list)  # the Range header of each redirected request
    cuts: list[int] = field(default_factory=list)  # cut the next answers after this many bytes, one per answer
    status: int | None = None  # answer every request with this HTTP status
    ignore_ranges: bool = False

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


def hub_name(stem: str, data: bytes) -> str:
    """A torch hub file name carrying the first 8 hex digits of ``data``'s SHA-256."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"


def serve_weights(httpserver, files: dict[str, bytes]) -> WeightServer:
    """Publish ``files`` (name -> bytes) under a fresh folder on ``httpserver``; ``moved/<name>`` redirects."""
    prefix = f"/w{uuid.uuid4().hex[:8]}"
    server = WeightServer(httpserver.url_for(prefix), files)

    def handler(request: Request) -> Response:
        name = request.path.removeprefix(prefix + "/")
        if name.startswith("moved/"):  # as a mirror sending files on to a CDN
            server.redirected.append(request.headers.get("Range"))
            return Response("", 302, headers={"Location": server.url(name.removeprefix("moved/"))})
        server.ranges.append(request.headers.get("Range"))
        if server.status is not None:
            return Response("server trouble", server.status)
        data = files.get(name)
        if data is None:
            return Response("not found", 404)
        found = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
        if server.ignore_ranges or not found:
            return Response(data, 200)
        start = int(found.group(1))
        if start >= len(data):
            return Response("", 416, headers={"Content-Range": f"bytes */{len(data)}"})
        end = min(int(found.group(2) or len(data) - 1), len(data) - 1)
        body = data[start : end + 1]
        headers = {"Content-Range": f"bytes {start}-{end}/{len(data)}", "Content-Length": str(len(body))}
        if server.cuts:
            return Response(_cut(body, server.cuts.pop(0)), 206, headers=headers)
        return Response(body, 206, headers=headers)

    httpserver.expect_request(re.compile(f"^{prefix}/.*$")).respond_with_handler(handler)
    return server


def _cut(body: bytes, after: int) -> Iterator[bytes]:
    """The first ``after`` bytes, then the connection drops (werkzeug closes it on the error)."""
    yield body[:after]
    raise ConnectionAbortedError("test server cut the connection")

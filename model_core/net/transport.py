"""How the bytes of a weight file travel: one HTTP range request at a time, and what a failure means.

``download.py`` asks a ``Transport`` for byte ranges. ``UrllibTransport`` serves
the command line and the worker (the usual proxy environment variables apply);
the Processing algorithm brings one through QGIS's network stack. Both turn
failures into ``TransportFailure`` messages a user can act on. Torch-free.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

TIMEOUT_S = 30.0
TRANSIENT_HTTP = (408, 429, 500, 502, 503, 504)
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass(frozen=True)
class Reply:
    """A server's answer to one range request."""

    status: int
    body: bytes
    content_range: str | None = None  # "bytes first-last/total" of a 206 or a 416


class TransportFailure(Exception):
    """A request that got no usable answer; ``transient`` ones are worth trying again."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class Transport(Protocol):
    """Fetches one byte range of a URL."""

    def get(self, url: str, start: int, end: int) -> Reply:
        """Bytes ``start``-``end`` (inclusive) of ``url``; raises ``TransportFailure`` when none come."""


def http_failure(status: int, reason: str, url: str, proxy: str | None = None) -> TransportFailure:
    """The failure for an HTTP error status, with what it means for the user."""
    if status == 407:
        which = f"the proxy {proxy}" if proxy else "the proxy"
        return TransportFailure(
            f"{which} refused the request (HTTP 407, proxy authentication required): give the proxy's user and "
            "password (in QGIS: Settings > Options > Network; on the command line: "
            "HTTPS_PROXY=http://user:password@host:port)"
        )
    hint = {
        401: "the server asks for a login",
        403: "the server refuses access",
        404: "the file is not at that address (check BASE_URL if you set one)",
    }.get(status, "the server has a problem; try again later" if status >= 500 else "")
    host = urlsplit(url).netloc
    return TransportFailure(
        f"{host} answered HTTP {status} {reason}".rstrip() + (f": {hint}" if hint else ""),
        transient=status in TRANSIENT_HTTP,
    )


def unreachable(url: str, reason: object, proxy: str | None = None) -> TransportFailure:
    """The failure for a server (or proxy) that cannot be reached at all."""
    if proxy:
        return TransportFailure(
            f"cannot reach the proxy {proxy} ({reason}); check the proxy settings (HTTPS_PROXY/HTTP_PROXY, "
            "or QGIS's Settings > Options > Network)"
        )
    host = urlsplit(url).hostname or url
    return TransportFailure(
        f"cannot reach {host} ({reason}): this computer seems to be offline, or a firewall or proxy blocks it"
    )


class UrllibTransport:
    """HTTP(S) through Python's urllib; HTTPS_PROXY, HTTP_PROXY and NO_PROXY apply as usual."""

    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener()

    def _proxy(self, url: str) -> str | None:
        parts = urlsplit(url)
        proxy = urllib.request.getproxies().get(parts.scheme)
        return None if not proxy or urllib.request.proxy_bypass(parts.hostname or "") else proxy

    def get(self, url: str, start: int, end: int) -> Reply:
        request = urllib.request.Request(url, headers={"Range": f"bytes={start}-{end}", "User-Agent": "scl-deeplab"})
        proxy = self._proxy(url)
        try:
            response = self._opener.open(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:
                return Reply(416, b"", exc.headers.get("Content-Range"))
            raise http_failure(exc.code, str(exc.reason), url, proxy) from exc
        except urllib.error.URLError as exc:
            transient = isinstance(exc.reason, TimeoutError)
            failure = unreachable(url, exc.reason, proxy)
            failure.transient = transient
            raise failure from exc
        except TimeoutError as exc:
            raise TransportFailure(f"no answer within {self.timeout_s:.0f} s", transient=True) from exc
        with response:
            try:
                body = response.read()
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                raise TransportFailure("the connection was cut during the transfer", transient=True) from exc
            return Reply(response.status, body, response.headers.get("Content-Range"))


def parse_content_range(header: str | None) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of a Content-Range header; None where it gives none."""
    match = _CONTENT_RANGE.search(header or "")
    if not match:
        return None, None, None
    first, last, total = match.groups()
    return (
        int(first) if first else None,
        int(last) if last else None,
        int(total) if total and total != "*" else None,
    )

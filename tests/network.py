"""The network as tests see it: only 127.0.0.1, and a local proxy that asks for a login."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


def only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test on any connection outside 127.0.0.1, and forget the environment's proxies."""
    real = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        assert host in ("127.0.0.1", "::1", "localhost"), f"test tried to reach {host}"
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class _AskForProxyLogin(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(407, "Proxy Authentication Required")
        self.send_header("Proxy-Authenticate", 'Basic realm="office"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def proxy_asking_for_login() -> Iterator[int]:
    """A proxy on 127.0.0.1 that answers every request with HTTP 407; yields its port."""
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AskForProxyLogin)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        yield proxy.server_address[1]
    finally:
        proxy.shutdown()
        proxy.server_close()

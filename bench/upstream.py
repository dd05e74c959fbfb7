"""A token endpoint for benchmarks: accepts any refresh token, answers after a delay.

`/token` answers after `delay` seconds; `/hang/token` holds each request for
`hang` seconds (a provider that stopped answering). It counts requests and
the most it ever had in flight at once.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class Upstream:
    """A ThreadingHTTPServer in a background thread; use it as a context manager."""

    def __init__(self, *, delay: float = 0.1, hang: float = 10.0) -> None:
        self.delay = delay
        self.hang = hang
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.request_queue_size = 1024
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Forget the counts."""
        with self.lock:
            self.requests = self.max_in_flight = 0

    def _answer(self, path: str) -> dict[str, Any]:
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._stop.wait(self.hang if path.startswith("/hang") else self.delay)
        finally:
            with self.lock:
                self.in_flight -= 1
        return {
            "access_token": secrets.token_urlsafe(24),
            "refresh_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 3600,
            "issued": time.time(),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: without TCP_NODELAY, Nagle and
            # delayed ACKs add up to 40 ms to every answer, which real servers do not.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps(upstream._answer(self.path)).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (a timeout): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

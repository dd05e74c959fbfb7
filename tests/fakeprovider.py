"""A fake OAuth2 authorization server on 127.0.0.1 for end-to-end tests.

Strict where real providers are strict: one-time codes bound to client and
redirect URI, PKCE S256 (RFC 7636 section 4.6), client authentication
(RFC 6749 section 2.3.1), and refresh-token rotation with replay detection:
replaying a spent refresh token or code revokes the whole grant, as Salesforce
and certified servers do (RFC 9700 section 4.14.2). Thread-safe, so gunicorn
storms can hit it from many workers at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

CLIENT_ID = "tk-client"
CLIENT_SECRET = "tk-client-secret-0123456789"


@dataclass
class _Grant:
    """One authorization: everything issued from one code, revoked together."""

    scope: str
    access: dict[str, float] = field(default_factory=dict)  # token -> expires_at
    spent: set[str] = field(default_factory=set)  # rotated-out refresh tokens
    revoked: bool = False


@dataclass(frozen=True)
class Canned:
    """A scripted /token answer: an outage, a broken body, throttling, a slow reply."""

    status: int = 503
    body: dict[str, Any] | bytes = field(
        default_factory=lambda: {"error": "temporarily_unavailable"}
    )
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (longer than the client's timeout: a hang)


@dataclass
class _Code:
    grant: _Grant
    redirect_uri: str
    challenge: str | None
    used: bool = False


class FakeProvider:
    """An OAuth2 provider in a background thread; use it as a context manager."""

    def __init__(
        self,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        redirect_uris: Iterable[str] = (),
        client_auth: str = "client_secret_basic",  # or client_secret_post, any
        require_pkce: bool = True,
        expires_in: int | None = 3600,
        rotate_refresh_tokens: bool = True,
        extra_fields: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = set(redirect_uris)
        self.client_auth = client_auth
        self.require_pkce = require_pkce
        self.expires_in = expires_in
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.extra_fields = dict(extra_fields or {})
        self.clock = clock
        self.delay = 0.0  # seconds before each /token answer (a slow upstream)
        self.gate: threading.Event | None = None  # /token waits for it (an unset one hangs)
        self.lock = threading.RLock()
        self.token_requests = 0  # every POST /token received
        self.code_exchanges = 0  # grant_type=authorization_code requests received
        self.refresh_requests = 0  # grant_type=refresh_token requests received
        self.abandoned_requests = 0  # dropped unprocessed: the client hung up while held
        self.replay_detected = False
        self.issued_access_tokens: list[str] = []
        self.authorize_requests: list[dict[str, str]] = []
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _Grant] = {}  # current and spent refresh tokens
        self._access: dict[str, _Grant] = {}
        self._fail_next: list[Canned] = []
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.authorize_url = self.url + "/authorize"
        self.token_url = self.url + "/token"
        self.resource_url = self.url + "/resource"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # frees handlers waiting on the gate
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail_next(
        self, count: int = 1, status: int = 503, body: dict[str, Any] | None = None
    ) -> None:
        """Answer the next `count` token requests with `status` (an outage, by default)."""
        reply = body if body is not None else {"error": "temporarily_unavailable"}
        self.script(*[Canned(status, reply)] * count)

    def script(self, *replies: Canned) -> None:
        """Answer the next token requests with these canned replies, in order."""
        with self.lock:
            self._fail_next.extend(replies)

    # -- endpoints ------------------------------------------------------------------

    def _authorize(self, q: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        # RFC 6749 4.1.2.1: never redirect to an unverified redirect URI.
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            return 400, {"error": "invalid_request", "error_description": "client or redirect"}, {}
        with self.lock:
            self.authorize_requests.append(q)
            challenge = q.get("code_challenge")
            if q.get("response_type") != "code":
                params = {"error": "unsupported_response_type"}
            elif self.require_pkce and (not challenge or q.get("code_challenge_method") != "S256"):
                params = {"error": "invalid_request", "error_description": "PKCE S256 required"}
            else:
                code = secrets.token_urlsafe(16)
                grant = _Grant(scope=q.get("scope", ""))
                self._codes[code] = _Code(grant, redirect_uri, challenge)
                params = {"code": code}
        if "state" in q:
            params["state"] = q["state"]
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return 302, {}, {"Location": redirect_uri + separator + urlencode(params)}

    def _token(
        self,
        form: dict[str, str],
        authorization: str,
        client_connected: Callable[[], bool] = lambda: True,
    ) -> Canned | None:
        """Answer one POST /token; None drops a request whose client hung up meanwhile."""
        grant_type = form.get("grant_type")
        with self.lock:
            self.token_requests += 1
            self.code_exchanges += int(grant_type == "authorization_code")
            self.refresh_requests += int(grant_type == "refresh_token")
            canned = self._fail_next.pop(0) if self._fail_next else None
            delay, gate = self.delay, self.gate
        if canned is not None and canned.delay:
            delay = max(delay, canned.delay)
        if delay:
            self._closing.wait(delay)
        while gate is not None and not gate.wait(0.05) and not self._closing.is_set():
            pass
        if not client_connected():
            # Held before processing (a slow queue in front of the provider) and the
            # client is gone: the provider never acts on it, so nothing rotates.
            with self.lock:
                self.abandoned_requests += 1
            return None
        if canned is not None:
            return canned
        if not self._client_ok(form, authorization):
            return Canned(401, {"error": "invalid_client"})
        with self.lock:
            if grant_type == "authorization_code":
                return Canned(*self._exchange(form))
            if grant_type == "refresh_token":
                return Canned(*self._rotate(form.get("refresh_token", "")))
        return Canned(400, {"error": "unsupported_grant_type"})

    def _client_ok(self, form: dict[str, str], authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        in_body = "client_secret" in form
        if scheme.lower() == "basic" and not in_body and self.client_auth != "client_secret_post":
            try:
                user, _, password = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                return False
            return (unquote_plus(user), unquote_plus(password)) == (
                self.client_id,
                self.client_secret,
            )
        if in_body and not authorization and self.client_auth != "client_secret_basic":
            return (form.get("client_id"), form["client_secret"]) == (
                self.client_id,
                self.client_secret,
            )
        return False  # no credentials, or two methods at once (RFC 6749 section 2.3)

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        code = self._codes.get(form.get("code", ""))
        if code is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown code"}
        if code.used:  # RFC 6749 4.1.2: a reused code revokes what it issued
            self._revoke(code.grant)
            return 400, {"error": "invalid_grant", "error_description": "code reused"}
        code.used = True
        if form.get("redirect_uri") != code.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
        if code.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE mismatch"}
        return 200, self._issue(code.grant, new_refresh=True)

    def _rotate(self, refresh_token: str) -> tuple[int, dict[str, Any]]:
        grant = self._refresh.get(refresh_token)
        if grant is None or grant.revoked:
            return 400, {"error": "invalid_grant", "error_description": "invalid refresh token"}
        if refresh_token in grant.spent:
            self._revoke(grant)
            return 400, {"error": "invalid_grant", "error_description": "refresh token reused"}
        if self.rotate_refresh_tokens:
            grant.spent.add(refresh_token)
        return 200, self._issue(grant, new_refresh=self.rotate_refresh_tokens)

    def _revoke(self, grant: _Grant) -> None:
        self.replay_detected = True
        grant.revoked = True
        grant.access.clear()

    def _issue(self, grant: _Grant, *, new_refresh: bool) -> dict[str, Any]:
        access = secrets.token_urlsafe(24)
        lifetime = self.expires_in if self.expires_in is not None else 10**9
        grant.access[access] = self.clock() + lifetime
        self._access[access] = grant
        self.issued_access_tokens.append(access)
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer"}
        if new_refresh:
            body["refresh_token"] = refresh = secrets.token_urlsafe(24)
            self._refresh[refresh] = grant
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return {**body, "scope": grant.scope, **self.extra_fields}

    def token_is_valid(self, access_token: str) -> bool:
        """True while `access_token` is issued, unexpired and its grant not revoked."""
        with self.lock:
            grant = self._access.get(access_token)
            return grant is not None and grant.access.get(access_token, 0.0) > self.clock()

    # -- HTTP plumbing ------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            # Headers and body go out as two writes: without TCP_NODELAY, Nagle and
            # delayed ACKs add up to 40 ms to every answer, which real servers do not.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                if parts.path == "/authorize":
                    self._reply(*provider._authorize(query))
                elif parts.path in ("/resource", "/userinfo"):
                    scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                    if scheme.lower() == "bearer" and provider.token_is_valid(token):
                        self._reply(200, {"ok": True}, {})
                    else:
                        self._reply(401, {"error": "invalid_token"}, {"WWW-Authenticate": "Bearer"})
                else:
                    self._reply(404, {"error": "not_found"}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                if urlsplit(self.path).path != "/token":
                    self._reply(404, {"error": "not_found"}, {})
                    return
                authorization = self.headers.get("Authorization", "")
                answer = provider._token(form, authorization, self._client_connected)
                if answer is None:
                    self.close_connection = True
                    return
                headers = {"Cache-Control": "no-store", **answer.headers}
                self._reply(answer.status, answer.body, headers)

            def _client_connected(self) -> bool:
                # A client waiting for its answer sends nothing more: readable means gone.
                readable, _, _ = select.select([self.connection], [], [], 0)
                if not readable:
                    return True
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) != b""
                except OSError:
                    return False

            def _reply(
                self, status: int, body: dict[str, Any] | bytes, headers: dict[str, str]
            ) -> None:
                if isinstance(body, bytes):
                    data = body
                else:
                    data = json.dumps(body).encode() if body else b""
                    if data:
                        headers = {"Content-Type": "application/json", **headers}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler

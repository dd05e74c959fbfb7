"""The hot path: `GET /api/token` answered in front of Flask, with Flask's own code.

Serving a stored token is what TokenKeep does thousands of times a minute,
and Flask's request context, URL map and Response objects cost more than
the work itself. This WSGI layer answers the common case (GET of
/api/token or /api/token.php with a plain `provider=ALIAS[&min_valid=N]`
query and a key that authenticates) through the very functions the Flask
route uses: KeyRing.authenticate, TokenService.get_token and the payloads
module (body, headers, errors, observation). Anything else goes to Flask
untouched and before any side effect: other routes and methods, unusual
query strings, and missing or wrong keys, whose failures Flask counts for
throttling. tests/test_hotpath.py holds both paths to the same bytes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from tokenkeep.errors import InvalidToken, TokenKeepError
from tokenkeep.models import ALIAS_RE
from tokenkeep.payloads import (
    JSON_HEADERS,
    RequestObserver,
    bearer_key,
    error_headers,
    internal_error,
    json_bytes,
    min_valid_param,
    token_body,
)
from tokenkeep.service import TokenService

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
TOKEN_ROUTES = frozenset({"/api/token", "/api/token.php"})
_QUERY = re.compile(rf"provider=({ALIAS_RE.pattern})(?:&min_valid=([0-9]{{1,9}}))?")
# Hosts Flask certainly accepts (werkzeug refuses a DNS label over 63 characters);
# anything else goes to Flask, which decides.
_HOST = re.compile(
    r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}(?::[0-9]{1,5})?|\[[0-9a-fA-F:.]+\](?::[0-9]{1,5})?"
)
_REASONS = {s.value: f"{s.value} {s.phrase.upper()}" for s in HTTPStatus}  # as werkzeug


class TokenFastPath:
    """WSGI middleware serving the hot route; delegates everything else to `app`."""

    def __init__(self, app: WSGIApp, service: TokenService, observe: RequestObserver) -> None:
        self.app = app
        self.service = service
        self.observe = observe

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Answer GET /api/token for an authenticated caller, else hand over to Flask."""
        route = environ.get("PATH_INFO")
        if environ.get("REQUEST_METHOD") != "GET" or route not in TOKEN_ROUTES:
            return self.app(environ, start_response)
        query = _QUERY.fullmatch(environ.get("QUERY_STRING", ""))
        key = bearer_key(environ.get("HTTP_AUTHORIZATION", ""))
        if query is None or key is None or not _HOST.fullmatch(environ.get("HTTP_HOST", "")):
            return self.app(environ, start_response)
        try:
            caller = self.service.keys.authenticate(key)
        except InvalidToken:
            return self.app(environ, start_response)  # Flask counts the failure
        started = time.perf_counter()
        alias, min_valid = query[1], query[2]
        headers = dict(JSON_HEADERS)
        try:
            caller.require(alias)
            result = self.service.get_token(
                alias, min_valid_param([min_valid] if min_valid else [])
            )
            body, warning = token_body(result, self.service.clock())
            status = 200
            if warning is not None:
                headers["Warning"] = warning
        except Exception as exc:
            error = exc if isinstance(exc, TokenKeepError) else internal_error(exc, route)
            body, status = error.to_dict(), error.status
            headers.update(error_headers(error))
        data = json_bytes(body)
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(data))
        start_response(_REASONS[status], list(headers.items()))
        self.observe("GET", route, alias, status, time.perf_counter() - started)
        return [data]

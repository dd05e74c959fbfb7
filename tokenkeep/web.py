"""Flask application factory: routes, the bearer check, one error handler, HTML pages."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
import os
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from tokenkeep.config import Settings, load_settings, resolve_config_path
from tokenkeep.errors import (
    InvalidRequest,
    InvalidToken,
    StateError,
    TokenKeepError,
    TooManyRequests,
    UpstreamUnavailable,
)
from tokenkeep.models import iso8601
from tokenkeep.service import TokenService
from tokenkeep.singleflight import TokenResult
from tokenkeep.throttle import FailureThrottle

log = logging.getLogger("tokenkeep.web")
STATE_COOKIE = "tokenkeep_state"
BROWSER_PATHS = frozenset({"/auth", "/auth.php", "/callback", "/callback.php"})
MAX_MIN_VALID = 86400 * 365
HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
RESERVED_FIELDS = ("access_token", "token_type", "expires_at", "expires_in", "scope", "provider")


class AdminRequired(TokenKeepError):
    """The operator pages need HTTP Basic with the admin password."""

    code = "invalid_token"
    status = 401


def create_app(
    settings: Settings | None = None,
    *,
    service: TokenService | None = None,
    config_path: str | None = None,
) -> Flask:
    """Build the WSGI app; tests and gunicorn both call this."""
    if settings is None:
        settings = load_settings(resolve_config_path(config_path, os.environ))
    if service is None:
        from tokenkeep.bootstrap import build_service

        service = build_service(settings)
    app = Flask(__name__)
    app.config["TOKENKEEP_SERVICE"] = service
    _register_routes(app, settings, service)
    return app


def _register_routes(app: Flask, settings: Settings, service: TokenService) -> None:
    admin_password = settings.admin_password.encode()
    throttle = FailureThrottle(service.clock)

    def failed(error: TokenKeepError) -> TokenKeepError:
        """Count a failed authentication; past the limit, answer 429 instead.

        A request that presents no credential at all (a browser's first visit
        to /auth, before it shows the login box) guesses nothing: not counted.
        """
        if "Authorization" not in request.headers and "sig" not in request.args:
            return error
        wait = throttle.record_failure(request.remote_addr or "unknown")
        if wait is not None:
            return TooManyRequests(
                "too many failed authentications from this address; wait and retry",
                retry_after=wait,
            )
        return error

    def require_bearer(alias: str | None) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise failed(InvalidToken("send the API key as 'Authorization: Bearer KEY'"))
        try:
            caller = service.keys.authenticate(key.strip())
        except InvalidToken as exc:
            raise failed(exc) from None
        if alias is not None:
            caller.require(service.check_alias(alias))

    def require_operator(alias: str | None) -> None:
        """HTTP Basic as admin, or a valid signed one-time link for this provider."""
        args = request.args
        if "sig" in args:
            try:
                service.keys.check_link(
                    service.check_alias(alias),
                    args.get("expires", ""),
                    args.get("nonce", ""),
                    args.get("sig", ""),
                )
            except InvalidToken as exc:
                raise failed(exc) from None
            return
        try:
            require_admin()
        except AdminRequired as exc:
            raise failed(exc) from None

    def require_admin() -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, ValueError):  # incl. UnicodeDecodeError, non-ASCII input
            user, password = "", ""
        ok_user = hmac.compare_digest(user.encode(), b"admin")
        ok_password = hmac.compare_digest(password.encode(), admin_password)
        if scheme.lower() != "basic" or not (ok_user and ok_password):
            raise AdminRequired("log in as 'admin' with the admin_password from the config")

    def provider_param_or_none() -> str | None:
        values = request.args.getlist("provider")
        return values[0] if len(values) == 1 and values[0] else None

    def provider_param() -> str:
        values = request.args.getlist("provider")
        if len(values) > 1:
            raise InvalidRequest("give the provider parameter once")
        if not values or not values[0]:
            raise InvalidRequest("the provider parameter is required")
        return values[0]

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            service.repo.ping()
        except Exception:
            log.exception("health check failed")
            return _json({"status": "unavailable"}, 503)
        return _json({"status": "ok"}, 200)

    @app.get("/api/token")
    @app.get("/api/token.php")
    def api_token() -> Response:
        alias = provider_param_or_none()
        require_bearer(alias)
        alias = provider_param()
        min_valid = _min_valid(request.args.getlist("min_valid"))
        return _token_response(service.get_token(alias, min_valid), service)

    @app.post("/api/token/refresh")
    @app.post("/api/token/refresh.php")
    def api_refresh() -> Response:
        require_bearer(provider_param_or_none())
        return _token_response(service.force_refresh(provider_param()), service)

    @app.get("/auth")
    @app.get("/auth.php")
    def auth() -> Response:
        require_operator(provider_param_or_none())
        alias = provider_param()
        start = service.start_authorization(alias)
        response = Response(status=302, headers={"Location": start.url})
        response.set_cookie(
            STATE_COOKIE,
            start.browser_binding,
            max_age=settings.state_ttl_seconds,
            httponly=True,
            samesite="Lax",
            secure=settings.secure_cookies,
            path="/",
        )
        return _html_headers(response)

    @app.get("/callback")
    @app.get("/callback.php")
    def callback() -> Response:
        args = request.args
        hint = args.get("provider") or None  # the PHP-era redirect URI carried it
        binding = request.cookies.get(STATE_COOKIE)
        if args.get("error"):
            try:
                pending = service.take_state(args.get("state"), binding, hint)
                alias: str | None = pending.alias
            except StateError:
                alias = None
            return _page(
                "denied.html",
                400,
                alias=alias,
                error=args.get("error", "")[:100],
                description=args.get("error_description", "")[:300],
            )
        pending = service.take_state(args.get("state"), binding, hint)
        provider, record = service.complete_authorization(pending, args.get("code"), args.to_dict())
        response = _page(
            "connected.html",
            200,
            alias=provider.alias,
            scope=record.tokens.scope,
            expires_at=iso8601(record.tokens.expires_at),
            has_refresh=record.tokens.refresh_token is not None,
            public_url=settings.public_url,
        )
        response.delete_cookie(STATE_COOKIE, path="/")
        return response

    @app.errorhandler(Exception)
    def handle_error(exc: Exception) -> Response:
        if isinstance(exc, TokenKeepError):
            error = exc
        elif isinstance(exc, HTTPException):
            error = TokenKeepError(exc.description or exc.name)
            error.status = exc.code or 500
            error.code = exc.name.lower().replace(" ", "_")
        else:
            log.error("unhandled %s on %s", type(exc).__name__, request.path, exc_info=exc)
            error = TokenKeepError("internal error; see the server log")
        if request.path in BROWSER_PATHS:
            response = _page(
                "error.html", error.status, error=error.code, message=error.description
            )
        else:
            response = _json(error.to_dict(), error.status)
        retry_after = getattr(error, "retry_after", None)
        if isinstance(error, TooManyRequests | UpstreamUnavailable) and retry_after:
            response.headers["Retry-After"] = str(math.ceil(retry_after))
        if error.status == 401:
            if isinstance(error, AdminRequired):
                response.headers["WWW-Authenticate"] = 'Basic realm="TokenKeep", charset="UTF-8"'
            else:
                response.headers["WWW-Authenticate"] = (
                    f'Bearer realm="TokenKeep", error="{error.code}"'
                )
        if isinstance(exc, HTTPException) and exc.code == 405:
            allowed = exc.get_headers().copy()
            response.headers.update({k: v for k, v in allowed if k == "Allow"})
        return response


def _min_valid(values: list[str]) -> int | None:
    if not values:
        return None
    value = values[0]
    if len(values) > 1 or not value.isascii() or not value.isdigit() or len(value) > 9:
        raise InvalidRequest("min_valid must be a whole number of seconds, 0 or more, given once")
    if int(value) > MAX_MIN_VALID:
        raise InvalidRequest(f"min_valid must be at most {MAX_MIN_VALID}")
    return int(value)


def _token_response(result: TokenResult, service: TokenService) -> Response:
    record = result.record
    tokens = record.tokens
    now = service.clock()
    body: dict[str, Any] = {k: v for k, v in tokens.extras.items() if k not in RESERVED_FIELDS}
    body.update(
        {
            "access_token": tokens.access_token,
            "token_type": tokens.token_type,
            "expires_at": iso8601(tokens.expires_at),
            "expires_in": None
            if tokens.expires_at is None
            else max(0, int(tokens.expires_at - now)),
            "scope": tokens.scope,
            "provider": record.alias,
        }
    )
    response = _json(body, 200)
    if result.warning:
        body["warning"] = result.warning
        response = _json(body, 200)
        response.headers["Warning"] = f'199 tokenkeep "{_header_text(result.warning)}"'
    return response


def _header_text(text: str, limit: int = 200) -> str:
    """Printable ASCII without quotes or backslashes, safe inside a quoted header value."""
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    cleaned = "".join(c if c.isprintable() and c not in '"\\' else " " for c in ascii_text)
    return cleaned[:limit]


def _json(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _page(template: str, status: int, **context: Any) -> Response:
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    return _html_headers(response)


def _html_headers(response: Response) -> Response:
    response.headers.update(HTML_HEADERS)
    return response

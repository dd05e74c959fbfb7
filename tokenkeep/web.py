"""Flask application factory: routes, the bearer check, one error handler, HTML pages."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import time
from typing import Any

from flask import Flask, Response, g, render_template, request
from werkzeug.exceptions import HTTPException

from tokenkeep.config import Settings, load_settings, resolve_config_path
from tokenkeep.errors import (
    AdminRequired,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    StateError,
    TokenKeepError,
    TooManyRequests,
)
from tokenkeep.hotpath import TokenFastPath
from tokenkeep.metrics import CONTENT_TYPE, Metrics
from tokenkeep.models import iso8601
from tokenkeep.pages import denied, failure_for, status_rows, until
from tokenkeep.payloads import (
    HTML_HEADERS,
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
from tokenkeep.singleflight import TokenResult
from tokenkeep.throttle import FailureThrottle

log = logging.getLogger("tokenkeep.web")
STATE_COOKIE = "tokenkeep_state"
BROWSER_PATHS = frozenset({"/", "/auth", "/auth.php", "/callback", "/callback.php"})


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
    app.url_map.merge_slashes = False  # `/api//token` is a 404, not a redirect built from Host
    app.config["TOKENKEEP_SERVICE"] = service
    metrics = Metrics()
    service.events.listeners.append(metrics.observe_event)
    observe = RequestObserver(metrics, json_log=settings.log_format == "json")
    _observe_requests(app, observe)
    _register_routes(app, settings, service, metrics)
    app.wsgi_app = TokenFastPath(app.wsgi_app, service, observe)  # type: ignore[method-assign]
    return app


def _observe_requests(app: Flask, observe: RequestObserver) -> None:
    """Time every answer Flask gives and hand it to the observer (metrics, JSON log)."""

    @app.before_request
    def start_timer() -> None:
        g.tokenkeep_started = time.perf_counter()

    @app.after_request
    def observed(response: Response) -> Response:
        # The route template, never the path or query: those can carry codes.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        started = g.get("tokenkeep_started", time.perf_counter())
        alias = request.args.get("provider")
        observe(request.method, route, alias, response.status_code, time.perf_counter() - started)
        return response


def _register_routes(
    app: Flask, settings: Settings, service: TokenService, metrics: Metrics
) -> None:
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
        key = bearer_key(request.headers.get("Authorization", ""))
        if key is None:
            raise failed(InvalidToken("send the API key as 'Authorization: Bearer KEY'"))
        try:
            caller = service.keys.authenticate(key)
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

    def require_master() -> None:
        require_bearer(None)
        key = request.headers.get("Authorization", "").partition(" ")[2].strip()
        if not hmac.compare_digest(key.encode(), settings.api_secret_token.encode()):
            raise InsufficientScope("/metrics needs the master key (api_secret_token)")

    @app.get("/metrics")
    def metrics_() -> Response:
        require_master()
        text = metrics.render(service.repo.list_statuses(), service.events.totals())
        response = Response(text, status=200, content_type=CONTENT_TYPE)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def status_page() -> Response:
        try:
            require_admin()
        except AdminRequired as exc:
            raise failed(exc) from None
        rows = status_rows(service.repo.list_statuses(), service.clock())
        return _page("status.html", 200, rows=rows, public_url=settings.public_url)

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
        min_valid = min_valid_param(request.args.getlist("min_valid"))
        return _token_response(service.get_token(alias, min_valid), service)

    @app.post("/api/token/refresh")
    @app.post("/api/token/refresh.php")
    def api_refresh() -> Response:
        require_bearer(provider_param_or_none())
        return _token_response(service.force_refresh(provider_param()), service)

    @app.get("/auth.php")
    @app.get("/auth")  # registered first, so url_for("auth") builds the current URL
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
            failure = denied(args.get("error", ""), args.get("error_description", ""), alias)
            return _page("failed.html", 400, failure=failure)
        pending = service.take_state(args.get("state"), binding, hint)
        try:
            provider, record = service.complete_authorization(
                pending, args.get("code"), args.to_dict()
            )
        except TokenKeepError as exc:  # the provider is known now: offer to start again
            failure = failure_for(exc, pending.alias, callback=True)
            return _page("failed.html", exc.status, failure=failure)
        expires_at = record.tokens.expires_at
        response = _page(
            "connected.html",
            200,
            alias=provider.alias,
            scopes=(record.tokens.scope or "").split(),
            expires_at=iso8601(expires_at),
            expires_in=None if expires_at is None else until(expires_at, service.clock()),
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
            # A malformed request (e.g. an invalid Host) keeps the documented 400 code.
            error.code = (
                "invalid_request" if exc.code == 400 else exc.name.lower().replace(" ", "_")
            )
        else:
            error = internal_error(exc, request.path)
        if request.path in BROWSER_PATHS:
            failure = failure_for(error, callback=request.path.startswith("/callback"))
            response = _page("failed.html", error.status, failure=failure)
        else:
            response = _json(error.to_dict(), error.status)
        response.headers.update(error_headers(error))
        if isinstance(exc, HTTPException) and exc.code == 405:
            allowed = exc.get_headers().copy()
            response.headers.update({k: v for k, v in allowed if k == "Allow"})
        return response


def _token_response(result: TokenResult, service: TokenService) -> Response:
    body, warning = token_body(result, service.clock())
    response = _json(body, 200)
    if warning is not None:
        response.headers["Warning"] = warning
    return response


def _json(body: dict[str, Any], status: int) -> Response:
    response = Response(json_bytes(body), status=status, mimetype="application/json")
    response.headers.update(JSON_HEADERS)
    return response


def _page(template: str, status: int, **context: Any) -> Response:
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    return _html_headers(response)


def _html_headers(response: Response) -> Response:
    response.headers.update(HTML_HEADERS)
    return response

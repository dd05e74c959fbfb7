"""Exception hierarchy: each class carries its error `code` and HTTP `status`.

The service raises these; the web layer renders them as one JSON shape and
the CLI prints them as one line. Descriptions never contain secrets or raw
exception text from third parties.
"""

from __future__ import annotations

from typing import Any


class TokenKeepError(Exception):
    """Base class: a failure with a stable `code` and an HTTP `status`."""

    code = "server_error"
    status = 500
    exit_code = 1

    def __init__(self, description: str, **extra: Any) -> None:
        super().__init__(description)
        self.description = description
        self.extra: dict[str, Any] = extra

    def to_dict(self) -> dict[str, Any]:
        """Return the documented JSON error body."""
        body: dict[str, Any] = {"error": self.code, "error_description": self.description}
        body.update(self.extra)
        return body


class ConfigError(TokenKeepError):
    """The configuration is missing, malformed or unsafe."""

    code = "config_error"
    exit_code = 2


class InvalidRequest(TokenKeepError):
    """A parameter is missing or malformed."""

    code = "invalid_request"
    status = 400
    exit_code = 2


class InvalidToken(TokenKeepError):
    """The caller's bearer key is missing or wrong."""

    code = "invalid_token"
    status = 401


class AdminRequired(TokenKeepError):
    """The operator pages need HTTP Basic as admin with the admin password."""

    code = "invalid_token"
    status = 401


class TooManyRequests(TokenKeepError):
    """Too many failed authentications from this address; wait and retry."""

    code = "too_many_requests"
    status = 429

    def __init__(self, description: str, *, retry_after: float) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class InsufficientScope(TokenKeepError):
    """The caller's key may not read this provider."""

    code = "insufficient_scope"
    status = 403


class UnknownProvider(TokenKeepError):
    """No provider is registered under this alias."""

    code = "unknown_provider"
    status = 404


class NotConnected(TokenKeepError):
    """The provider is registered but was never authorized."""

    code = "not_connected"
    status = 409


class ReauthorizationRequired(TokenKeepError):
    """The grant is gone (revoked, expired, rejected); an operator must re-authorize."""

    code = "reauthorization_required"
    status = 409


class UpstreamError(TokenKeepError):
    """The provider answered, but not with a usable token."""

    code = "upstream_error"
    status = 502

    def __init__(
        self, description: str, *, provider_error: str | None = None, **extra: Any
    ) -> None:
        super().__init__(description, **extra)
        self.provider_error = provider_error


class PermanentUpstreamError(UpstreamError):
    """The provider rejected the grant or the client for good (invalid_grant, ...)."""


class UpstreamUnavailable(TokenKeepError):
    """The provider could not be reached or is failing for now; try later."""

    code = "upstream_unavailable"
    status = 503

    def __init__(
        self,
        description: str,
        *,
        retry_after: float | None = None,
        provider_error: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(description, **extra)
        self.retry_after = retry_after
        self.provider_error = provider_error


class StateError(TokenKeepError):
    """The OAuth `state` of a callback is missing, unknown, expired, reused or foreign."""

    code = "invalid_request"
    status = 400

    def __init__(
        self, description: str, *, reason: str = "unknown", alias: str | None = None
    ) -> None:
        super().__init__(description)
        self.reason = reason  # missing | foreign | unknown | expired | mismatch
        self.alias = alias  # the provider the state was for, when it is known

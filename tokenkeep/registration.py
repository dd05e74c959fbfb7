"""Validate a provider registration and merge it with what is stored."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from urllib.parse import urlsplit

from tokenkeep.errors import InvalidRequest
from tokenkeep.models import AUTH_METHODS, Provider, ProviderChanges

_LOOPBACK_NAMES = {"localhost"}


def validate_url(name: str, url: str) -> str:
    """An absolute https URL (http only for loopback hosts, as local test providers use)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidRequest(f"{name} is not a valid URL: {url!r}") from None
    if parts.scheme not in ("https", "http") or not host or parts.fragment:
        raise InvalidRequest(f"{name} must be an absolute https:// URL without a fragment")
    if any(c.isspace() for c in url) or parts.username or parts.password:
        raise InvalidRequest(f"{name} must not contain spaces or credentials")
    if parts.scheme == "http" and not _is_loopback(host):
        raise InvalidRequest(
            f"{name} must use https:// (plain http is only accepted for 127.0.0.1 and localhost)"
        )
    return url


def build_provider(
    alias: str, existing: Provider | None, changes: ProviderChanges, now: float
) -> Provider:
    """The provider to store: a new one from `changes`, or `existing` with them applied."""
    if existing is None:
        missing = [
            flag
            for flag, value in (
                ("--client-id", changes.client_id),
                ("--client-secret", changes.client_secret),
                ("--authorize-url", changes.authorize_url),
                ("--token-url", changes.token_url),
            )
            if not value
        ]
        if missing:
            raise InvalidRequest(f"a new provider needs {', '.join(missing)}")
        provider = Provider(
            alias=alias,
            client_id="",
            client_secret="",
            authorize_url="",
            token_url="",
            created_at=now,
            updated_at=now,
        )
    else:
        provider = existing
    provider = changes.apply(provider, now)
    if changes.redirect_uri == "":
        provider = replace(provider, redirect_uri=None)
    _validate(provider)
    return provider


def _validate(p: Provider) -> None:
    validate_url("authorize URL", p.authorize_url)
    validate_url("token URL", p.token_url)
    if p.redirect_uri:
        validate_url("redirect URI", p.redirect_uri)
    if p.auth_method not in AUTH_METHODS:
        raise InvalidRequest(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    for name, value in (("client id", p.client_id), ("client secret", p.client_secret)):
        if not value or value != value.strip() or "\n" in value:
            raise InvalidRequest(f"{name} must be non-empty, without surrounding spaces")
    for scope in p.scopes:
        if not scope or any(c.isspace() for c in scope):
            raise InvalidRequest(f"scope {scope!r} must be non-empty and without spaces")
    reserved = {"response_type", "client_id", "redirect_uri", "state", "code_challenge"}
    for key in p.authorize_params:
        if not key or key in reserved:
            raise InvalidRequest(f"--param {key!r} is set by TokenKeep itself")
    if p.default_lifetime_seconds is not None and p.default_lifetime_seconds <= 0:
        raise InvalidRequest("default lifetime must be a positive number of seconds")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""Quirks: how a provider departs from RFC 6749, as plain, generic data.

Presets set them (presets.json); the OAuth client, the classifier and the
authorization flow read them. No field names a provider: each is a mechanism
(a host allow-list, callback parameters to keep, extra error codes, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HOST_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")


@dataclass(frozen=True)
class Quirks:
    """Provider behaviour beyond RFC 6749, usually set by a preset; every field is generic.

    Stored as one JSON object per provider; `from_dict` refuses unknown fields, so
    preset data can only use what the code understands.
    """

    # Hosts a callback may move the token endpoint to, and the callback parameter
    # that names the server (Zoho's `accounts-server`). Checked before any secret is sent.
    token_hosts: tuple[str, ...] = ()
    token_host_param: str | None = None
    # Callback query parameter -> extra returned by the token API (QuickBooks realmId).
    callback_params: Mapping[str, str] = field(default_factory=dict)
    # Token-response fields handed to callers; None hands out every extra field.
    response_extras: tuple[str, ...] | None = None
    # Error codes that mean the grant is gone, beyond the RFC 6749 ones.
    permanent_errors: tuple[str, ...] = ()
    # Regular expressions over "code description" that mean "throttled, retry later".
    transient_patterns: tuple[str, ...] = ()
    # `issued_at` is epoch milliseconds; the expiry basis when there is no expires_in.
    issued_at_ms: bool = False
    # The separator of the scope the provider sends back; normalised to spaces.
    response_scope_separator: str | None = None
    # An `expires_in` above this many is milliseconds (legacy Zoho without expires_in_sec).
    expires_in_ms_above: int | None = None
    # Seconds to wait after throttling that came without Retry-After (Zoho locks for 10 min).
    throttle_wait_seconds: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view with only the fields that differ from the defaults."""
        default = Quirks()
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value != getattr(default, name):
                out[name] = dict(value) if isinstance(value, Mapping) else _jsonable(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quirks:
        """Build from JSON data; ValueError names the first field that is not understood."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown quirk {unknown[0]!r}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if value is None and name in _NULLABLE_QUIRKS:
                values[name] = None
            elif name in _LIST_QUIRKS:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{name} must be a list of strings")
                values[name] = tuple(value)
            elif name == "callback_params":
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()
                ):
                    raise ValueError("callback_params must map strings to strings")
                values[name] = dict(value)
            elif name == "issued_at_ms":
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
                values[name] = value
            elif name in ("expires_in_ms_above", "throttle_wait_seconds"):
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ValueError(f"{name} must be a positive integer")
                values[name] = value
            elif isinstance(value, str) and value:
                values[name] = value
            else:
                raise ValueError(f"{name} must be a non-empty string")
        quirks = cls(**values)
        for pattern in quirks.transient_patterns:
            try:
                re.compile(pattern)
            except re.error:
                raise ValueError(f"transient pattern {pattern!r} is not a valid regex") from None
        for host in quirks.token_hosts:
            if not HOST_RE.fullmatch(host):
                raise ValueError(f"token host {host!r} must be a lower-case host name")
        return quirks


_LIST_QUIRKS = frozenset(
    {"token_hosts", "response_extras", "permanent_errors", "transient_patterns"}
)
_NULLABLE_QUIRKS = frozenset(
    {
        "token_host_param",
        "response_extras",
        "response_scope_separator",
        "expires_in_ms_above",
        "throttle_wait_seconds",
    }
)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value

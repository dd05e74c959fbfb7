"""Move providers and tokens over from the PHP original, in one transaction.

Each provider keeps the redirect URI registered at the provider (the old
`/callback.php?provider=ALIAS` keeps working) and authenticates with
`client_secret_post`, as the original did. Running it twice changes nothing,
and tokens TokenKeep obtained later than the original's are never replaced.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tokenkeep.errors import InvalidRequest
from tokenkeep.models import ProviderChanges, TokenSet, is_valid_alias, iso8601
from tokenkeep.php_source import PhpDump, PhpProvider, PhpToken
from tokenkeep.registration import build_provider
from tokenkeep.repository import Repository

ACTIONS = ("imported", "updated", "unchanged", "skipped")
_MILLISECONDS = 1e11  # unix seconds pass this in the year 5138


@dataclass(frozen=True)
class ImportResult:
    """What the import did with one provider of the original."""

    alias: str
    action: str  # imported | updated | unchanged | skipped
    detail: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportReport:
    """The outcome of one import run."""

    results: list[ImportResult]
    ignored: list[str]  # rows of the source that belong to no provider

    @property
    def changed(self) -> bool:
        """True when the run wrote anything."""
        return any(r.action in ("imported", "updated") for r in self.results)

    def summary(self) -> dict[str, int]:
        """How many providers got each action."""
        return {a: sum(r.action == a for r in self.results) for a in ACTIONS}


def import_php(
    repo: Repository,
    dump: PhpDump,
    *,
    now: float,
    on_import: Callable[[str, str], None] | None = None,
) -> ImportReport:
    """Import every provider (and its tokens) of `dump`; all or nothing.

    `on_import(alias, detail)` runs inside the transaction for each provider
    written, so a record of the import commits together with it.
    """
    tokens, ignored = _tokens_by_provider(dump, {p.id for p in dump.providers})
    seen: set[str] = set()
    plans: list[tuple[PhpProvider, ProviderChanges, TokenSet | None, list[str]]] = []
    for row in dump.providers:
        alias = _alias(row)
        if alias in seen:
            raise InvalidRequest(f"providers row id={row.id}: alias {alias!r} appears twice")
        seen.add(alias)
        notes: list[str] = []
        changes = _changes(row, notes)
        token_set = _token_set(tokens.get(row.id), now, notes)
        plans.append((row, changes, token_set, notes))
    results = []
    with repo.db.transaction():
        for row, changes, token_set, notes in sorted(plans, key=lambda p: str(p[0].alias)):
            alias = str(row.alias)
            try:
                result = _apply(repo, alias, changes, token_set, now, notes)
            except InvalidRequest as exc:
                raise InvalidRequest(f"providers row id={row.id} ({alias}): {exc}") from None
            if on_import is not None and result.action in ("imported", "updated"):
                on_import(alias, result.detail)
            results.append(result)
    return ImportReport(results=results, ignored=ignored)


def _apply(
    repo: Repository,
    alias: str,
    changes: ProviderChanges,
    token_set: TokenSet | None,
    now: float,
    notes: list[str],
) -> ImportResult:
    existing = repo.get_provider(alias)
    provider = build_provider(alias, existing, changes, now)
    kept = tuple(notes)
    if existing is None:
        repo.save_provider(provider)
        if token_set is not None:
            repo.store_authorized(alias, token_set, now)
        return ImportResult(alias, "imported", _what(token_set), kept)
    same = replace(provider, updated_at=existing.updated_at) == existing
    current = repo.get_token(alias)
    if token_set is None or (current is not None and _same_tokens(current.tokens, token_set)):
        if same:
            return ImportResult(alias, "unchanged", "already imported", kept)
        return ImportResult(
            alias, "skipped", "already registered in TokenKeep with other settings; kept", kept
        )
    if current is not None and token_set.obtained_at <= current.tokens.obtained_at:
        when = iso8601(current.tokens.obtained_at)
        return ImportResult(
            alias,
            "skipped",
            f"TokenKeep holds tokens as new or newer (obtained {when}); not overwritten",
            kept,
        )
    repo.save_provider(provider)
    repo.store_authorized(alias, token_set, now)
    return ImportResult(alias, "updated", _what(token_set), kept)


def _what(token_set: TokenSet | None) -> str:
    if token_set is None:
        return "provider only (no tokens in the source: authorize it at /auth)"
    expiry = iso8601(token_set.expires_at) or "no expiry"
    refresh = "with" if token_set.refresh_token else "without"
    return f"provider and tokens (expires {expiry}, {refresh} refresh token)"


def _same_tokens(a: TokenSet, b: TokenSet) -> bool:
    return a.access_token == b.access_token and a.refresh_token == b.refresh_token


def _alias(row: PhpProvider) -> str:
    alias = row.alias
    if not isinstance(alias, str) or not is_valid_alias(alias):
        shown = repr(alias)[:70]
        raise InvalidRequest(
            f"providers row id={row.id}: alias {shown} is not a valid TokenKeep alias "
            "(1-64 of a-z, 0-9, '_', '-', starting with a letter or digit); rename it in a copy "
            "of the file"
        )
    return alias


def _changes(row: PhpProvider, notes: list[str]) -> ProviderChanges:
    for name in ("client_id", "client_secret", "auth_url", "token_url"):
        if not _text(getattr(row, name)):
            raise InvalidRequest(f"providers row id={row.id} ({row.alias}): {name} is empty")
    scopes_text = _text(row.scopes) or ""
    separator = "," if "," in scopes_text else " "
    scopes = tuple(s for s in re.split(r"[\s,]+", scopes_text) if s)
    if not scopes:
        notes.append("no scopes in the source")
    redirect_uri = _text(row.redirect_uri)
    if not redirect_uri:
        notes.append("no redirect_uri in the source: PUBLIC_URL/callback is used")
    return ProviderChanges(
        client_id=_text(row.client_id),
        client_secret=_text(row.client_secret),
        authorize_url=_text(row.auth_url),
        token_url=_text(row.token_url),
        scopes=scopes,
        scope_separator=separator,
        auth_method="client_secret_post",
        redirect_uri=redirect_uri or "",
    )


def _tokens_by_provider(
    dump: PhpDump, provider_ids: set[Any]
) -> tuple[dict[Any, PhpToken], list[str]]:
    chosen: dict[Any, PhpToken] = {}
    ignored = []
    for row in dump.tokens:
        if row.provider_id not in provider_ids:
            ignored.append(f"tokens row for provider_id={row.provider_id!r}: no such provider")
            continue
        previous = chosen.get(row.provider_id)
        if previous is None or (_seconds(row.updated_at) or 0) > (
            _seconds(previous.updated_at) or 0
        ):
            if previous is not None:
                ignored.append(f"older duplicate tokens row for provider_id={row.provider_id!r}")
            chosen[row.provider_id] = row
        else:
            ignored.append(f"older duplicate tokens row for provider_id={row.provider_id!r}")
    return chosen, ignored


def _token_set(row: PhpToken | None, now: float, notes: list[str]) -> TokenSet | None:
    if row is None:
        return None
    access, refresh = _text(row.access_token), _text(row.refresh_token)
    if not access and not refresh:
        notes.append("tokens row holds neither token: provider only")
        return None
    expires_at = _timestamp(row.expires_at, "expires_at", notes)
    updated_at = _timestamp(row.updated_at, "updated_at", notes)
    if refresh and (not access or expires_at is None):
        # Unknown validity: refresh on first use rather than serve a dead token.
        notes.append("no access token or expiry in the source: refreshed on first use")
        expires_at = now if expires_at is None else min(expires_at, now)
    elif expires_at is None:
        notes.append("no expiry and no refresh token: served until the provider rejects it")
    return TokenSet(
        access_token=access or "",
        refresh_token=refresh,
        expires_at=expires_at,
        obtained_at=updated_at if updated_at is not None else now,
    )


def _timestamp(value: Any, name: str, notes: list[str]) -> float | None:
    seconds = _seconds(value)
    if value is not None and value != "" and seconds is None:
        notes.append(f"{name} {str(value)[:30]!r} is not unix seconds: treated as unknown")
    if seconds is not None and seconds > _MILLISECONDS:
        notes.append(f"{name} looks like milliseconds: divided by 1000")
        seconds /= 1000
    return seconds


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value > 0 else None
    text = _text(value)
    if text and re.fullmatch(r"\d{1,16}(\.\d+)?", text):
        return float(text)
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value is None:
        return None
    text = str(value).strip()
    return text or None

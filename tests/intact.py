"""Helpers shared by the bad-input batteries: no 500, no traceback, the connection intact."""

from __future__ import annotations

from tokenkeep.repository import Repository

Snapshot = tuple[object, ...]


def snapshot(repo: Repository, alias: str = "acme") -> Snapshot:
    """What must survive any bad input: the stored tokens, their state and the provider."""
    record = repo.get_token(alias)
    provider = repo.get_provider(alias)
    assert record is not None and provider is not None
    tokens = record.tokens
    return (
        tokens.access_token,
        tokens.refresh_token,
        tokens.expires_at,
        tokens.scope,
        record.status,
        record.failure_count,
        record.lease_owner,
        provider.client_id,
        provider.client_secret,
        provider.token_url,
        provider.authorize_url,
    )


def pending_count(repo: Repository) -> int:
    """How many authorizations were started and not yet completed."""
    row = repo.db.conn.execute("SELECT COUNT(*) FROM pending_authorizations").fetchone()
    return int(row[0])

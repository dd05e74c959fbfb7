"""All of TokenKeep's SQL: providers, tokens, refresh leases, pending authorizations.

Secrets are encrypted on the way in and decrypted on the way out, so nothing
above this module sees ciphertext and nothing below it sees plaintext.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from tokenkeep.crypto import Cipher
from tokenkeep.db import Database
from tokenkeep.models import (
    NOT_CONNECTED,
    PendingAuthorization,
    Provider,
    ProviderStatus,
    TokenRecord,
    TokenSet,
)
from tokenkeep.quirks import Quirks

_KEY_CHECK = "tokenkeep-key-check"
_PLAIN_PROVIDER_COLUMNS = (
    "alias", "client_id", "authorize_url", "token_url", "scope_separator", "auth_method",
    "redirect_uri", "default_lifetime_seconds", "preset", "created_at", "updated_at",
)  # fmt: skip
_PLAIN_RECORD_COLUMNS = (
    "status", "authorized_at", "last_error", "last_error_code", "last_error_at",
    "failure_count", "next_attempt_at", "lease_owner", "lease_until", "version", "token_url",
)  # fmt: skip


class Repository:
    """Reads and writes TokenKeep's state in one SQLite database."""

    def __init__(self, db: Database, cipher: Cipher) -> None:
        self.db = db
        self.cipher = cipher

    # -- housekeeping -------------------------------------------------------

    def ping(self) -> None:
        """Raise if the database does not answer."""
        self.db.conn.execute("SELECT 1").fetchone()

    def check_key(self) -> None:
        """Fail fast (ConfigError) when the configured key cannot read this database."""
        row = self.db.conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
        if row is not None:
            self.cipher.decrypt(row["value"])
            return
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('key_check', ?)",
                (self.cipher.encrypt(_KEY_CHECK),),
            )

    # -- providers ----------------------------------------------------------

    def get_provider(self, alias: str) -> Provider | None:
        """The provider registered under `alias`, or None."""
        row = self.db.conn.execute("SELECT * FROM providers WHERE alias = ?", (alias,)).fetchone()
        return None if row is None else self._provider(row)

    def save_provider(self, provider: Provider) -> None:
        """Insert or update a provider in place; its tokens are never touched (defect 1)."""
        values = {
            "alias": provider.alias,
            "client_id": provider.client_id,
            "client_secret_enc": self.cipher.encrypt(provider.client_secret),
            "authorize_url": provider.authorize_url,
            "token_url": provider.token_url,
            "scopes": json.dumps(list(provider.scopes)),
            "scope_separator": provider.scope_separator,
            "auth_method": provider.auth_method,
            "pkce": int(provider.pkce),
            "redirect_uri": provider.redirect_uri,
            "authorize_params": json.dumps(dict(provider.authorize_params)),
            "token_params": json.dumps(dict(provider.token_params)),
            "default_lifetime_seconds": provider.default_lifetime_seconds,
            "preset": provider.preset,
            "quirks": json.dumps(provider.quirks.to_dict()),
            "created_at": provider.created_at,
            "updated_at": provider.updated_at,
        }
        columns = ", ".join(values)
        placeholders = ", ".join(f":{k}" for k in values)
        updates = ", ".join(
            f"{k} = excluded.{k}" for k in values if k not in ("alias", "created_at")
        )
        with self.db.transaction() as conn:
            conn.execute(
                f"INSERT INTO providers ({columns}) VALUES ({placeholders}) "  # noqa: S608
                f"ON CONFLICT(alias) DO UPDATE SET {updates}",
                values,
            )

    def delete_provider(self, alias: str) -> bool:
        """Delete a provider with its tokens and pending authorizations."""
        with self.db.transaction() as conn:
            cursor = conn.execute("DELETE FROM providers WHERE alias = ?", (alias,))
            return cursor.rowcount == 1

    def list_statuses(self) -> list[ProviderStatus]:
        """Every provider with its connection state, by alias."""
        rows = self.db.conn.execute(
            "SELECT p.alias, p.token_url, p.auth_method, t.status, t.expires_at, t.obtained_at,"
            " t.has_refresh, t.last_error, t.last_error_at, t.provider_id AS connected,"
            " t.lease_owner"
            " FROM providers p LEFT JOIN tokens t ON t.provider_id = p.id ORDER BY p.alias"
        ).fetchall()
        return [
            ProviderStatus(
                alias=r["alias"],
                status=r["status"] if r["connected"] is not None else NOT_CONNECTED,
                expires_at=r["expires_at"],
                obtained_at=r["obtained_at"],
                has_refresh_token=bool(r["has_refresh"]),
                last_error=r["last_error"],
                last_error_at=r["last_error_at"],
                token_url=r["token_url"],
                auth_method=r["auth_method"],
                refreshing=r["lease_owner"] is not None,
            )
            for r in rows
        ]

    # -- pending authorizations ---------------------------------------------

    def save_pending(self, pending: PendingAuthorization, now: float) -> None:
        """Store a started authorization (and drop expired ones)."""
        verifier = pending.code_verifier
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM pending_authorizations WHERE expires_at < ?", (now,))
            conn.execute(
                "INSERT INTO pending_authorizations (state_hash, provider_id, code_verifier_enc,"
                " redirect_uri, created_at, expires_at)"
                " SELECT ?, id, ?, ?, ?, ? FROM providers WHERE alias = ?",
                (
                    pending.state_hash,
                    None if verifier is None else self.cipher.encrypt(verifier),
                    pending.redirect_uri,
                    pending.created_at,
                    pending.expires_at,
                    pending.alias,
                ),
            )

    def take_pending(self, state_hash: str) -> PendingAuthorization | None:
        """Remove and return a pending authorization: a state can be used once."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT a.*, p.alias FROM pending_authorizations a"
                " JOIN providers p ON p.id = a.provider_id WHERE a.state_hash = ?",
                (state_hash,),
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM pending_authorizations WHERE state_hash = ?", (state_hash,))
        enc = row["code_verifier_enc"]
        return PendingAuthorization(
            state_hash=row["state_hash"],
            alias=row["alias"],
            code_verifier=None if enc is None else self.cipher.decrypt(enc),
            redirect_uri=row["redirect_uri"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
        )

    # -- tokens and the refresh lease ----------------------------------------

    def get_token(self, alias: str) -> TokenRecord | None:
        """The stored token record of a provider, or None when never authorized."""
        row = self.db.conn.execute(
            "SELECT t.* FROM tokens t JOIN providers p ON p.id = t.provider_id WHERE p.alias = ?",
            (alias,),
        ).fetchone()
        return None if row is None else self._record(alias, row)

    def store_authorized(
        self, alias: str, tokens: TokenSet, now: float, token_url: str | None = None
    ) -> None:
        """Store the tokens of a completed authorization; clears any earlier failure."""
        values = {**self._token_values(tokens), "alias": alias, "now": now, "url": token_url}
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO tokens (provider_id, secrets_enc, token_type, scope, expires_at,"
                " has_refresh, obtained_at, authorized_at, status, token_url)"
                " SELECT id, :secrets, :token_type, :scope, :expires_at, :has_refresh,"
                " :obtained_at, :now, 'connected', :url FROM providers WHERE alias = :alias"
                " ON CONFLICT(provider_id) DO UPDATE SET secrets_enc = excluded.secrets_enc,"
                " token_type = excluded.token_type, scope = excluded.scope,"
                " expires_at = excluded.expires_at, has_refresh = excluded.has_refresh,"
                " obtained_at = excluded.obtained_at, authorized_at = excluded.authorized_at,"
                " token_url = excluded.token_url,"
                " status = 'connected', last_error = NULL, last_error_code = NULL,"
                " last_error_at = NULL,"
                " failure_count = 0, next_attempt_at = NULL, lease_owner = NULL,"
                " lease_until = NULL, version = version + 1",
                values,
            )

    def claim_lease(self, alias: str, owner: str, now: float, until: float) -> bool:
        """Take the refresh lease if it is free or expired; True when this caller owns it."""
        # Not durable: a lease lost in a power cut is a free lease, which is what
        # recovery would do anyway; the tokens written after the refresh are durable.
        with self.db.transaction(durable=False) as conn:
            cursor = conn.execute(
                "UPDATE tokens SET lease_owner = ?, lease_until = ?"
                " WHERE provider_id = (SELECT id FROM providers WHERE alias = ?)"
                " AND (lease_until IS NULL OR lease_until < ?)",
                (owner, until, alias, now),
            )
            return cursor.rowcount == 1

    def release_lease(self, alias: str, owner: str) -> None:
        """Give up the lease without changing the tokens."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE tokens SET lease_owner = NULL, lease_until = NULL"
                " WHERE provider_id = (SELECT id FROM providers WHERE alias = ?)"
                " AND lease_owner = ?",
                (alias, owner),
            )

    def complete_refresh(self, alias: str, owner: str, tokens: TokenSet) -> None:
        """Write refreshed tokens and release the lease in one transaction."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE tokens SET secrets_enc = :secrets, token_type = :token_type,"
                " scope = :scope, expires_at = :expires_at, has_refresh = :has_refresh,"
                " obtained_at = :obtained_at, status = 'connected', last_error = NULL,"
                " last_error_code = NULL,"
                " last_error_at = NULL, failure_count = 0, next_attempt_at = NULL,"
                " lease_owner = CASE WHEN lease_owner = :owner THEN NULL ELSE lease_owner END,"
                " lease_until = CASE WHEN lease_owner = :owner THEN NULL ELSE lease_until END,"
                " version = version + 1"
                " WHERE provider_id = (SELECT id FROM providers WHERE alias = :alias)",
                {**self._token_values(tokens), "alias": alias, "owner": owner},
            )

    def record_failure(
        self,
        alias: str,
        owner: str,
        *,
        error: str,
        code: str,
        now: float,
        next_attempt_at: float | None,
        needs_reauth: bool,
    ) -> None:
        """Record a failed refresh (tokens untouched) and release the lease."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE tokens SET last_error = :error, last_error_code = :code,"
                " last_error_at = :now,"
                " failure_count = failure_count + 1, next_attempt_at = :next,"
                " status = CASE WHEN :reauth THEN 'needs_reauth' ELSE status END,"
                " lease_owner = CASE WHEN lease_owner = :owner THEN NULL ELSE lease_owner END,"
                " lease_until = CASE WHEN lease_owner = :owner THEN NULL ELSE lease_until END"
                " WHERE provider_id = (SELECT id FROM providers WHERE alias = :alias)",
                {
                    "error": error,
                    "code": code,
                    "now": now,
                    "next": next_attempt_at,
                    "reauth": int(needs_reauth),
                    "owner": owner,
                    "alias": alias,
                },
            )

    # -- row mapping ----------------------------------------------------------

    def _token_values(self, tokens: TokenSet) -> dict[str, Any]:
        blob = {"a": tokens.access_token, "r": tokens.refresh_token, "x": dict(tokens.extras)}
        return {
            "secrets": self.cipher.encrypt(json.dumps(blob)),
            "token_type": tokens.token_type,
            "scope": tokens.scope,
            "expires_at": tokens.expires_at,
            "has_refresh": int(tokens.refresh_token is not None),
            "obtained_at": tokens.obtained_at,
        }

    def _record(self, alias: str, row: sqlite3.Row) -> TokenRecord:
        blob = json.loads(self.cipher.decrypt(row["secrets_enc"]))
        tokens = TokenSet(
            access_token=blob["a"],
            token_type=row["token_type"],
            refresh_token=blob["r"],
            expires_at=row["expires_at"],
            scope=row["scope"],
            extras=blob["x"],
            obtained_at=row["obtained_at"],
        )
        return TokenRecord(alias=alias, tokens=tokens, **{k: row[k] for k in _PLAIN_RECORD_COLUMNS})

    def _provider(self, row: sqlite3.Row) -> Provider:
        return Provider(
            **{k: row[k] for k in _PLAIN_PROVIDER_COLUMNS},
            client_secret=self.cipher.decrypt(row["client_secret_enc"]),
            scopes=tuple(json.loads(row["scopes"])),
            pkce=bool(row["pkce"]),
            authorize_params=json.loads(row["authorize_params"]),
            token_params=json.loads(row["token_params"]),
            quirks=Quirks.from_dict(json.loads(row["quirks"])),
        )

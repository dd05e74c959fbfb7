"""The SQL for scoped API keys, spent auth links and key rotation.

The second half of the repository layer (repository.py holds providers and
tokens); no other module writes SQL.
"""

from __future__ import annotations

import json
import sqlite3

from tokenkeep.crypto import Cipher
from tokenkeep.db import Database
from tokenkeep.models import ApiKey

_ENCRYPTED_COLUMNS = (
    ("providers", "id", "client_secret_enc"),
    ("tokens", "provider_id", "secrets_enc"),
    ("pending_authorizations", "state_hash", "code_verifier_enc"),
    ("meta", "key", "value"),
)


class KeyStore:
    """Reads and writes API keys and auth-link nonces."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def find_api_key(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, or None."""
        row = self.db.conn.execute(
            "SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)
        ).fetchone()
        return None if row is None else _api_key(row)

    def touch_api_key(self, name: str, now: float) -> None:
        """Record a use (callers rate-limit this to keep writes off the hot path)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE api_keys SET last_used_at = ? WHERE name = ?", (now, name))

    def create_api_key(
        self, name: str, key_hash: str, providers: tuple[str, ...] | None, now: float
    ) -> bool:
        """Store a new key's hash; False when the name is taken."""
        scope = None if providers is None else json.dumps(list(providers))
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO api_keys (name, key_hash, providers, created_at)"
                " VALUES (?, ?, ?, ?)",
                (name, key_hash, scope, now),
            )
            return cursor.rowcount == 1

    def list_api_keys(self) -> list[ApiKey]:
        """Every key, by name."""
        rows = self.db.conn.execute("SELECT * FROM api_keys ORDER BY name").fetchall()
        return [_api_key(r) for r in rows]

    def revoke_api_key(self, name: str) -> bool:
        """Delete a key; False when there is none of that name."""
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount == 1

    def spend_link(self, nonce_hash: str, expires_at: float, now: float) -> bool:
        """Mark an auth-link nonce used; False when it already was."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM used_auth_links WHERE expires_at < ?", (now,))
            cursor = conn.execute(
                "INSERT OR IGNORE INTO used_auth_links (nonce_hash, expires_at) VALUES (?, ?)",
                (nonce_hash, expires_at),
            )
            return cursor.rowcount == 1

    def reencrypt_all(self, old: Cipher, new: Cipher) -> int:
        """Re-encrypt every secret under `new` in one transaction; return how many."""
        count = 0
        with self.db.transaction() as conn:
            for table, key, column in _ENCRYPTED_COLUMNS:
                where = " WHERE key = 'key_check'" if table == "meta" else ""
                rows = conn.execute(
                    f"SELECT {key}, {column} FROM {table}{where}"  # noqa: S608 - fixed names
                ).fetchall()
                for row in rows:
                    if row[1] is None:
                        continue
                    fresh = new.encrypt(old.decrypt(row[1]))
                    conn.execute(
                        f"UPDATE {table} SET {column} = ? WHERE {key} = ?",  # noqa: S608
                        (fresh, row[0]),
                    )
                    count += 1
        return count


def _api_key(row: sqlite3.Row) -> ApiKey:
    providers = row["providers"]
    return ApiKey(
        name=row["name"],
        providers=None if providers is None else tuple(json.loads(providers)),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )

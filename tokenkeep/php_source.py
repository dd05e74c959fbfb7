"""Read the PHP original's SQLite file, read-only, into plain rows.

The file is opened through a `file:...?mode=ro` URI, so nothing here can
write to it; every problem with it is one InvalidRequest naming the fix.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenkeep.errors import InvalidRequest

PROVIDER_COLUMNS = (
    "id",
    "alias",
    "client_id",
    "client_secret",
    "auth_url",
    "token_url",
    "scopes",
    "redirect_uri",
)
TOKEN_COLUMNS = ("provider_id", "access_token", "refresh_token", "expires_at", "updated_at")


@dataclass(frozen=True)
class PhpProvider:
    """One row of the original's `providers` table, values as stored."""

    id: Any
    alias: Any
    client_id: Any
    client_secret: Any = field(repr=False)
    auth_url: Any
    token_url: Any
    scopes: Any
    redirect_uri: Any


@dataclass(frozen=True)
class PhpToken:
    """One row of the original's `tokens` table, values as stored."""

    provider_id: Any
    access_token: Any = field(repr=False)
    refresh_token: Any = field(repr=False)
    expires_at: Any
    updated_at: Any


@dataclass(frozen=True)
class PhpDump:
    """Everything read from the original's database."""

    providers: list[PhpProvider]
    tokens: list[PhpToken]


def read_php_database(path: Path) -> PhpDump:
    """Read the providers and tokens of the PHP original's SQLite file, read-only."""
    if not path.exists():
        raise InvalidRequest(f"{path}: no such file; give the PHP original's SQLite database")
    if not path.is_file():
        raise InvalidRequest(f"{path}: not a file; give the PHP original's SQLite database")
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error:
        raise InvalidRequest(
            f"{path}: cannot be opened read-only (check its permissions)"
        ) from None
    try:
        try:
            _check_schema(conn, path)
            providers = conn.execute(
                f"SELECT {', '.join(PROVIDER_COLUMNS)} FROM providers ORDER BY id"  # noqa: S608
            ).fetchall()
            tokens = conn.execute(
                f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens"  # noqa: S608
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise InvalidRequest(
                    f"{path}: not an SQLite database; give the PHP original's database file"
                ) from None
            # SQLite's own text (locked, malformed, unreadable) names no secret.
            raise InvalidRequest(f"{path}: cannot be read ({str(exc)[:100]})") from None
    finally:
        conn.close()
    return PhpDump(
        providers=[PhpProvider(*row) for row in providers],
        tokens=[PhpToken(*row) for row in tokens],
    )


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    for table, wanted in (("providers", PROVIDER_COLUMNS), ("tokens", TOKEN_COLUMNS)):
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            raise InvalidRequest(
                f"{path}: has no {table!r} table; this is not the PHP original's database"
            )
        missing = [c for c in wanted if c not in have]
        if missing:
            raise InvalidRequest(
                f"{path}: table {table!r} lacks column(s) {', '.join(missing)}; "
                "this is not the PHP original's schema"
            )

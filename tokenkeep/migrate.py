"""Apply the numbered SQL migrations shipped inside the package.

Each file `NNNN_name.sql` runs in one transaction together with the bump of
`PRAGMA user_version` to NNNN, so a failed migration leaves nothing behind.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

from tokenkeep.db import Database
from tokenkeep.errors import ConfigError

_NAME_RE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """The migrations shipped in the installed package, in order."""
    folder = resources.files("tokenkeep") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME_RE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        # A broken install, not a bad database: say so rather than blame the folder.
        raise ConfigError(
            f"this TokenKeep install ships migrations numbered {versions}, not 1..N "
            "without gaps; reinstall the package"
        )
    return found


def current_version(db: Database) -> int:
    """The schema version recorded in the database."""
    row = db.conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def pending_migrations(db: Database) -> list[Migration]:
    """Migrations not yet applied to this database."""
    version = current_version(db)
    return [m for m in available_migrations() if m.version > version]


def migrate(db: Database) -> list[Migration]:
    """Apply every pending migration; return the ones applied."""
    applied = []
    conn = db.conn
    for migration in available_migrations():
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check inside the write lock: another process may have migrated.
            if current_version(db) >= migration.version:
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {migration.version:d}")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(migration)
    return applied


def _statements(sql: str) -> list[str]:
    """Split a script into complete statements (executescript would COMMIT early)."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer)
            buffer = ""
    if buffer.strip() and not buffer.strip().startswith("--"):
        statements.append(buffer)
    return statements

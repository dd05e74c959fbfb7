"""The repository and migrations on real SQLite files."""

from __future__ import annotations

import base64
import dataclasses
import os
import stat
import threading
from pathlib import Path

import pytest
from conftest import CLIENT_SECRET, connect, register

from tokenkeep import migrate as migrate_module
from tokenkeep.bootstrap import open_repository
from tokenkeep.config import Settings
from tokenkeep.db import Database
from tokenkeep.errors import ConfigError
from tokenkeep.migrate import Migration, available_migrations, current_version, migrate
from tokenkeep.models import PendingAuthorization
from tokenkeep.repository import Repository
from tokenkeep.service import TokenService


def test_migrations_bring_a_new_database_to_the_latest_version_once(tmp_path: Path):
    db = Database(tmp_path / "t.db")
    applied = migrate(db)
    assert [m.version for m in applied] == [m.version for m in available_migrations()]
    assert current_version(db) == len(available_migrations())
    assert migrate(db) == []


def test_a_failing_migration_leaves_neither_its_changes_nor_the_version_bump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = Database(tmp_path / "t.db")
    migrate(db)
    version = current_version(db)
    broken = Migration(version + 1, "broken", "CREATE TABLE half_done (x);\nSELECT * FROM nope;\n")
    monkeypatch.setattr(
        migrate_module, "available_migrations", lambda: [*available_migrations(), broken]
    )
    with pytest.raises(Exception, match="nope"):
        migrate(db)
    assert current_version(db) == version
    tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables


def test_connections_use_wal_full_sync_foreign_keys_and_a_busy_timeout(repo: Repository):
    conn = repo.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_each_thread_reuses_its_own_connection(repo: Repository):
    assert repo.db.conn is repo.db.conn
    seen = []
    thread = threading.Thread(target=lambda: seen.append(repo.db.conn))
    thread.start()
    thread.join()
    assert seen[0] is not repo.db.conn


def test_database_and_its_wal_files_are_private(connected: TokenService, settings: Settings):
    base = settings.database_path
    for path in (base, Path(f"{base}-wal"), Path(f"{base}-shm")):
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_no_secret_is_stored_in_plaintext(connected: TokenService, settings: Settings, clock):
    connected.repo.save_pending(
        PendingAuthorization("hash", "acme", "verifier-secret-value", "http://x/cb", 0, 9e9),
        clock(),
    )
    connected.repo.db.conn.execute("PRAGMA wal_checkpoint(FULL)")
    files = [settings.database_path, Path(f"{settings.database_path}-wal")]
    data = b"".join(p.read_bytes() for p in files if p.exists())
    for secret in (CLIENT_SECRET, "access-1", "refresh-1", "verifier-secret-value"):
        assert secret.encode() not in data, secret


def test_a_state_can_be_taken_once(connected: TokenService, clock):
    pending = PendingAuthorization("h1", "acme", None, "http://x/cb", clock(), clock() + 600)
    connected.repo.save_pending(pending, clock())
    assert connected.repo.take_pending("h1") == pending
    assert connected.repo.take_pending("h1") is None


def test_expired_pending_authorizations_are_purged_on_the_next_start(connected, clock):
    old = PendingAuthorization("old", "acme", None, "http://x/cb", clock(), clock() + 600)
    connected.repo.save_pending(old, clock())
    clock.advance(601)
    new = PendingAuthorization("new", "acme", None, "http://x/cb", clock(), clock() + 600)
    connected.repo.save_pending(new, clock())
    count = connected.repo.db.conn.execute("SELECT COUNT(*) FROM pending_authorizations")
    assert count.fetchone()[0] == 1


def test_removing_a_provider_removes_its_tokens_and_pending_states(connected, clock):
    pending = PendingAuthorization("h", "acme", None, "http://x/cb", clock(), clock() + 600)
    connected.repo.save_pending(pending, clock())
    assert connected.repo.delete_provider("acme")
    conn = connected.repo.db.conn
    assert conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM pending_authorizations").fetchone()[0] == 0
    assert not connected.repo.delete_provider("acme")


def test_upsert_keeps_the_provider_row_and_its_tokens(service: TokenService):
    register(service)
    connect(service)
    before = service.repo.db.conn.execute("SELECT id FROM providers").fetchone()[0]
    register(service, token_url="https://provider.test/v2/token")
    after = service.repo.db.conn.execute("SELECT id FROM providers").fetchone()[0]
    assert before == after
    assert service.repo.get_token("acme") is not None


def test_the_lease_can_be_claimed_by_one_owner_at_a_time(connected, clock):
    repo = connected.repo
    now = clock()
    assert repo.claim_lease("acme", "a", now, now + 15)
    assert not repo.claim_lease("acme", "b", now + 1, now + 16)
    assert repo.claim_lease("acme", "b", now + 16, now + 31)  # a's lease lapsed
    repo.release_lease("acme", "a")  # a stale owner cannot release b's lease
    assert repo.get_token("acme").lease_owner == "b"


def test_a_wrong_encryption_key_is_a_clear_error_and_loses_nothing(
    connected: TokenService, settings: Settings
):
    fresh_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    wrong = dataclasses.replace(settings, encryption_key=fresh_key)
    with pytest.raises(ConfigError, match="encryption_key"):
        open_repository(wrong)
    assert open_repository(settings).get_token("acme") is not None

"""import-php: move over from the PHP original's SQLite file, read-only, idempotent."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from click.testing import CliRunner, Result
from conftest import FakeClock, register
from flask.testing import FlaskClient

from tokenkeep.cli import main
from tokenkeep.repository import Repository
from tokenkeep.service import TokenService

OLD_REDIRECT = "https://old.example.com/callback.php?provider=zoho"
ZOHO_TOKEN_URL = "https://accounts.zoho.test/oauth/v2/token"
PHP_SCHEMA = """
CREATE TABLE providers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alias TEXT, client_id TEXT, client_secret TEXT,
    auth_url TEXT, token_url TEXT, scopes TEXT, redirect_uri TEXT
);
CREATE TABLE tokens (
    provider_id INTEGER, access_token TEXT, refresh_token TEXT,
    expires_at INTEGER, updated_at INTEGER
);
"""


@pytest.fixture(autouse=True)
def _no_tokenkeep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOKENKEEP_"):
            monkeypatch.delenv(name)


@pytest.fixture
def clock() -> FakeClock:
    """The CLI imports with the real clock; the app's clock starts at the same time."""
    return FakeClock(time.time())


def php_database(
    path: Path, providers: list[tuple[object, ...]], tokens: list[tuple[object, ...]]
) -> Path:
    """A database with the PHP original's schema and these rows."""
    conn = sqlite3.connect(path)
    conn.executescript(PHP_SCHEMA)
    conn.executemany("INSERT INTO providers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", providers)
    conn.executemany("INSERT INTO tokens VALUES (?, ?, ?, ?, ?)", tokens)
    conn.commit()
    conn.close()
    return path


def zoho_row(**overrides: object) -> tuple[object, ...]:
    row = {
        "id": 1,
        "alias": "zoho",
        "client_id": "zoho-client",
        "client_secret": "zoho-secret-value",
        "auth_url": "https://accounts.zoho.test/oauth/v2/auth",
        "token_url": ZOHO_TOKEN_URL,
        "scopes": "ZohoCRM.modules.ALL,ZohoCRM.settings.READ",
        "redirect_uri": OLD_REDIRECT,
    }
    row.update(overrides)
    return tuple(row.values())


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The original's database: two connected providers, one never authorized, one orphan."""
    now = int(time.time())
    pipedrive = (
        2,
        "pipedrive",
        "pd-client",
        "pd-secret-value",
        "https://oauth.pipedrive.test/auth",
    )
    never = (3, "never", "n-client", "n-secret-value", "https://n.test/auth")
    (tmp_path / "php").mkdir()
    return php_database(
        tmp_path / "php" / "tokens.sqlite",
        [
            zoho_row(),
            (*pipedrive, "https://oauth.pipedrive.test/token", "deals:read users:read", None),
            (*never, "https://n.test/token", None, None),
        ],
        [
            (1, "zoho-access-old", "zoho-refresh-old", now - 60, now - 3660),  # expired
            (2, "pd-access", "pd-refresh", now + 3000, now - 600),
            (99, "orphan-access", "orphan-refresh", now, now),
        ],
    )


def run(runner: CliRunner, config: Path, *args: str) -> Result:
    return runner.invoke(main, ["--config", str(config), *args])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_import_reports_one_line_per_provider_and_a_summary(
    runner: CliRunner, config_file: Path, source: Path
) -> None:
    result = run(runner, config_file, "import-php", str(source))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["never", "imported"]
    assert any(line.split()[:2] == ["pipedrive", "imported"] for line in lines)
    assert any(line.split()[:2] == ["zoho", "imported"] for line in lines)
    assert "ignored: tokens row for provider_id=99: no such provider" in lines
    assert lines[-1] == "3 imported, 0 updated, 0 unchanged, 0 skipped"
    assert "secret-value" not in result.output
    assert "pd-access" not in result.output and "refresh-old" not in result.output


def test_imported_tokens_are_served_at_once_without_reauthorization(
    runner: CliRunner, config_file: Path, source: Path, client: FlaskClient, api_headers: dict
) -> None:
    assert run(runner, config_file, "import-php", str(source)).exit_code == 0
    response = client.get("/api/token?provider=pipedrive", headers=api_headers)
    assert response.status_code == 200, response.json
    assert response.json["access_token"] == "pd-access"


@responses.activate
def test_an_expired_imported_token_is_refreshed_with_the_imported_refresh_token(
    runner: CliRunner, config_file: Path, source: Path, client: FlaskClient, api_headers: dict
) -> None:
    assert run(runner, config_file, "import-php", str(source)).exit_code == 0
    responses.post(
        ZOHO_TOKEN_URL,
        json={"access_token": "zoho-access-new", "expires_in": 3600, "token_type": "Bearer"},
    )
    response = client.get("/api/token?provider=zoho", headers=api_headers)
    assert response.status_code == 200, response.json
    assert response.json["access_token"] == "zoho-access-new"
    sent = parse_qs(responses.calls[0].request.body)
    assert sent["grant_type"] == ["refresh_token"]
    assert sent["refresh_token"] == ["zoho-refresh-old"]
    assert sent["client_secret"] == ["zoho-secret-value"]  # client_secret_post, as the original
    assert "Authorization" not in responses.calls[0].request.headers


def test_the_old_redirect_uri_is_kept_in_the_auth_redirect(
    runner: CliRunner, config_file: Path, source: Path, client: FlaskClient, admin_headers: dict
) -> None:
    assert run(runner, config_file, "import-php", str(source)).exit_code == 0
    response = client.get("/auth?provider=zoho", headers=admin_headers)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["redirect_uri"] == [OLD_REDIRECT]
    assert query["scope"] == ["ZohoCRM.modules.ALL,ZohoCRM.settings.READ"]


def test_the_source_file_is_never_written(
    runner: CliRunner, config_file: Path, source: Path
) -> None:
    before = sha256(source)
    siblings = sorted(p.name for p in source.parent.iterdir())
    assert run(runner, config_file, "import-php", str(source)).exit_code == 0
    assert run(runner, config_file, "import-php", str(source)).exit_code == 0
    assert sha256(source) == before
    assert sorted(p.name for p in source.parent.iterdir()) == siblings


def test_a_second_run_changes_nothing_and_says_so(
    runner: CliRunner, config_file: Path, source: Path, repo: Repository
) -> None:
    assert run(runner, config_file, "import-php", str(source)).exit_code == 0
    before = [repo.get_token(a) for a in ("zoho", "pipedrive")]
    result = run(runner, config_file, "import-php", str(source))
    assert result.exit_code == 0, result.output
    assert "0 imported, 0 updated, 3 unchanged, 0 skipped" in result.stdout
    assert "Nothing changed" in result.stdout
    assert [repo.get_token(a) for a in ("zoho", "pipedrive")] == before


@responses.activate
def test_newer_tokens_in_tokenkeep_are_not_overwritten_and_the_skip_is_reported(
    runner: CliRunner, config_file: Path, source: Path, client: FlaskClient, api_headers: dict
) -> None:
    assert run(runner, config_file, "import-php", str(source)).exit_code == 0
    responses.post(ZOHO_TOKEN_URL, json={"access_token": "zoho-access-new", "expires_in": 3600})
    assert client.get("/api/token?provider=zoho", headers=api_headers).status_code == 200
    result = run(runner, config_file, "import-php", "--json", str(source))
    body = json.loads(result.stdout)
    zoho = next(r for r in body["results"] if r["provider"] == "zoho")
    assert zoho["action"] == "skipped" and "not overwritten" in zoho["detail"]
    assert body["changed"] is False
    again = client.get("/api/token?provider=zoho", headers=api_headers)
    assert again.json["access_token"] == "zoho-access-new"


def test_json_output_lists_actions_notes_and_a_summary(
    runner: CliRunner, config_file: Path, source: Path
) -> None:
    body = json.loads(run(runner, config_file, "import-php", "--json", str(source)).stdout)
    assert body["summary"] == {"imported": 3, "updated": 0, "unchanged": 0, "skipped": 0}
    assert body["changed"] is True
    never = next(r for r in body["results"] if r["provider"] == "never")
    assert "no scopes in the source" in never["notes"]
    assert never["detail"].startswith("provider only")


def test_providers_are_stored_with_client_secret_post_and_encrypted(
    runner: CliRunner, config_file: Path, source: Path, repo: Repository
) -> None:
    assert run(runner, config_file, "import-php", str(source)).exit_code == 0
    provider = repo.get_provider("pipedrive")
    assert provider is not None
    assert provider.auth_method == "client_secret_post"
    assert provider.scopes == ("deals:read", "users:read") and provider.scope_separator == " "
    assert provider.redirect_uri is None
    raw = repo.db.path.read_bytes()
    assert b"pd-secret-value" not in raw and b"pd-refresh" not in raw


def test_odd_token_rows_get_a_note_instead_of_failing(
    runner: CliRunner, config_file: Path, tmp_path: Path, service: TokenService
) -> None:
    path = php_database(
        tmp_path / "odd.sqlite",
        [zoho_row(), zoho_row(id=2, alias="nulls"), zoho_row(id=3, alias="ms")],
        [
            (1, None, "zoho-refresh", None, None),
            (2, None, None, None, None),
            (3, "ms-access", "ms-refresh", int(time.time() + 600) * 1000, "yesterday"),
        ],
    )
    body = json.loads(run(runner, config_file, "import-php", "--json", str(path)).stdout)
    notes = {r["provider"]: " | ".join(r["notes"]) for r in body["results"]}
    assert "refreshed on first use" in notes["zoho"]
    assert "neither token" in notes["nulls"]
    assert "milliseconds" in notes["ms"] and "'yesterday' is not unix seconds" in notes["ms"]
    record = service.repo.get_token("ms")
    assert record is not None and record.remaining(time.time()) is not None
    assert 0 < (record.remaining(time.time()) or 0) <= 600


def not_sqlite(folder: Path) -> Path:
    path = folder / "x.sqlite"
    path.write_text("not sqlite at all " * 100)
    return path


def schemaless(folder: Path) -> Path:
    path = folder / "y.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda folder: folder / "missing.sqlite", "no such file"),
        (lambda folder: folder, "not a file"),
        (not_sqlite, "not an SQLite database"),
        (schemaless, "has no 'providers' table"),
    ],
    ids=["missing", "directory", "not-sqlite", "wrong-schema"],
)
def test_bad_source_files_are_one_line_and_exit_2(
    runner: CliRunner,
    config_file: Path,
    tmp_path: Path,
    make: Callable[[Path], Path],
    fragment: str,
) -> None:
    result = run(runner, config_file, "import-php", str(make(tmp_path)))
    assert_one_line_error(result, fragment)


def test_a_missing_column_is_a_wrong_schema(
    runner: CliRunner, config_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE providers (id, alias); CREATE TABLE tokens (provider_id);")
    conn.close()
    result = run(runner, config_file, "import-php", str(path))
    assert_one_line_error(result, "lacks column(s) client_id")


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (zoho_row(id=2, alias="Bad Alias"), "alias 'Bad Alias' is not a valid TokenKeep alias"),
        (zoho_row(id=2, alias="bad", token_url="http://evil.test/token"), "must use https://"),
        (zoho_row(id=2, alias="bad", auth_url="not a url"), "row id=2 (bad)"),
        (zoho_row(id=2, alias="bad", client_secret=None), "client_secret is empty"),
        (zoho_row(id=2, alias="zoho"), "appears twice"),
    ],
    ids=["alias", "http-url", "bad-url", "null-secret", "duplicate"],
)
def test_a_bad_row_aborts_the_whole_import_and_writes_nothing(
    runner: CliRunner, config_file: Path, tmp_path: Path, repo: Repository, row, fragment: str
) -> None:
    path = php_database(tmp_path / "bad.sqlite", [zoho_row(), row], [])
    result = run(runner, config_file, "import-php", str(path))
    assert_one_line_error(result, fragment)
    assert "zoho-secret-value" not in result.output
    assert repo.list_statuses() == []


def test_each_imported_provider_is_in_the_event_log_once(
    runner: CliRunner, config_file: Path, source: Path, service: TokenService
) -> None:
    assert run(runner, config_file, "import-php", str(source)).exit_code == 0
    assert run(runner, config_file, "import-php", str(source)).exit_code == 0
    events = service.events.recent()
    assert sorted(e.provider for e in events) == ["never", "pipedrive", "zoho"]
    assert {e.kind for e in events} == {"imported"}
    assert all("secret" not in (e.detail or "") for e in events)


def test_a_transaction_inside_another_joins_it_and_rolls_back_with_it(repo: Repository) -> None:
    with pytest.raises(RuntimeError), repo.db.transaction() as conn:
        with repo.db.transaction():
            conn.execute("INSERT INTO meta (key, value) VALUES ('inner', 'x')")
        raise RuntimeError("the outer work fails")
    assert repo.db.conn.execute("SELECT * FROM meta WHERE key = 'inner'").fetchone() is None
    assert not repo.db.conn.in_transaction


def test_an_alias_registered_but_never_authorized_takes_the_originals_tokens(
    runner: CliRunner, config_file: Path, source: Path, service: TokenService
) -> None:
    register(service, "zoho")  # registered in TokenKeep, never authorized
    body = json.loads(run(runner, config_file, "import-php", "--json", str(source)).stdout)
    zoho = next(r for r in body["results"] if r["provider"] == "zoho")
    assert zoho["action"] == "updated"
    record = service.repo.get_token("zoho")
    provider = service.repo.get_provider("zoho")
    assert record is not None and record.tokens.refresh_token == "zoho-refresh-old"
    assert provider is not None and provider.auth_method == "client_secret_post"
    assert provider.redirect_uri == OLD_REDIRECT

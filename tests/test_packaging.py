"""The wheel carries everything TokenKeep needs at run time, and the suite tests it installed.

Migrations live at the top of the repository and are force-included into the
package at build time; a plain `pip install .` must still find them, the
templates and the stylesheet (design.md, "Installed, not only checked out").
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

import tokenkeep
from tokenkeep.migrate import available_migrations

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel() -> dict[str, bytes]:
    """Build the wheel from the source tree, offline, as `pip install .` would; its files."""
    with tempfile.TemporaryDirectory() as out:
        build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        build += ["--no-index", "--quiet", "-w", out, str(ROOT)]
        result = subprocess.run(
            build,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        (path,) = Path(out).glob("tokenkeep-*.whl")
        with zipfile.ZipFile(path) as archive:
            return {name: archive.read(name) for name in archive.namelist()}


def test_the_wheel_ships_the_migrations_templates_and_stylesheet(wheel: dict[str, bytes]) -> None:
    templates = sorted(p.name for p in (ROOT / "tokenkeep" / "templates").glob("*.html"))

    assert "tokenkeep/migrations/0001_initial.sql" in wheel
    assert "tokenkeep/static/tokenkeep.css" in wheel
    assert "connected.html" in templates
    for template in templates:
        assert f"tokenkeep/templates/{template}" in wheel


def test_the_wheel_ships_the_preset_data_unchanged(wheel: dict[str, bytes]) -> None:
    source = (ROOT / "tokenkeep" / "presets.json").read_bytes()

    assert wheel.get("tokenkeep/presets.json") == source


def test_the_installed_package_loads_every_preset() -> None:
    from tokenkeep.presets import load_presets

    assert "zoho" in load_presets() and "shopify" in load_presets()


def test_every_migration_in_the_repository_is_in_the_wheel_unchanged(
    wheel: dict[str, bytes],
) -> None:
    migrations = sorted(p for p in (ROOT / "migrations").iterdir() if p.is_file())

    assert migrations, "no migrations found in the source tree"
    for path in migrations:
        assert wheel.get(f"tokenkeep/migrations/{path.name}") == path.read_bytes(), path.name


def test_the_wheel_declares_the_tokenkeep_console_script(wheel: dict[str, bytes]) -> None:
    (entry_points,) = [n for n in wheel if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel[entry_points].decode())

    assert parser["console_scripts"]["tokenkeep"].strip() == "tokenkeep.cli:main"


def test_the_suite_runs_against_the_installed_package_not_the_source_tree() -> None:
    installed = Path(tokenkeep.__file__).resolve()

    assert not installed.is_relative_to(ROOT / "tokenkeep"), (
        f"tokenkeep was imported from the source tree ({installed}); run the suite with "
        "`make pytest` (.venv/bin/pytest), which tests the non-editable install"
    )


def test_the_installed_package_finds_every_migration_of_the_source_tree() -> None:
    shipped = {f"{m.version:04d}_{m.name}.sql": m.sql for m in available_migrations()}
    in_repo = {p.name: p.read_text("utf-8") for p in (ROOT / "migrations").glob("*.sql")}

    assert shipped == in_repo, "the installed package is stale or incomplete: run `make install`"

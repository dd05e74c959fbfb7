"""Keep the module boundaries of shared/design.md: edges import frameworks, deps point inward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "tokenkeep"

# third-party (or stdlib edge) module -> the only modules allowed to import it
EDGE_IMPORTS = {
    "flask": {"web"},
    "werkzeug": {"web"},
    "click": {
        "cli",
        "cli_common",
        "cli_providers",
        "cli_refresh",
        "cli_keys",
        "cli_import",
        "cli_events",
    },
    "requests": {"oauth"},
    # php_source reads the PHP original's database (read-only), nothing of TokenKeep's.
    # events.py holds the event log's SQL (a repository-style module, like keystore).
    "sqlite3": {"db", "migrate", "repository", "keystore", "php_source", "events"},
    "gunicorn": {"server"},
    "cryptography": {"crypto"},
}
# module -> TokenKeep modules it must not import (outer layers)
FORBIDDEN_INWARD = {
    "models": {"service", "repository", "oauth", "web", "cli", "db", "bootstrap"},
    "errors": {"service", "repository", "oauth", "web", "cli", "models", "db"},
    "repository": {"service", "oauth", "web", "cli", "bootstrap"},
    "oauth": {"service", "repository", "web", "cli", "db", "bootstrap"},
    "classify": {"service", "repository", "web", "cli", "oauth"},
    "service": {"web", "cli", "bootstrap", "server"},
    "singleflight": {"web", "cli", "bootstrap", "service"},
    "authorization": {"web", "cli", "bootstrap", "service"},
    "refresh_all": {"web", "cli", "bootstrap"},
    "php_source": {"service", "repository", "web", "cli", "db", "bootstrap"},
    "php_import": {"service", "web", "cli", "bootstrap"},
    "events": {"service", "repository", "oauth", "web", "cli", "bootstrap"},
    # alerts gets its HTTP session from bootstrap, so it never imports requests itself.
    "alerts": {"service", "repository", "oauth", "web", "cli", "bootstrap", "db"},
    "metrics": {"service", "repository", "oauth", "web", "cli", "bootstrap", "db"},
    # The hot path shares the web layer's pieces but never Flask itself (see FRAMEWORKS).
    "hotpath": {"web", "cli", "bootstrap", "repository", "db", "oauth"},
    "payloads": {"web", "cli", "bootstrap", "service", "repository", "db", "oauth"},
    # What the pages say is plain data; only web.py renders it.
    "pages": {"service", "repository", "oauth", "web", "cli", "db", "bootstrap"},
    "presets": {"service", "repository", "oauth", "web", "cli", "db", "bootstrap"},
    "quirks": {"service", "repository", "oauth", "web", "cli", "db", "bootstrap", "models"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


MODULES = sorted(p.stem for p in SOURCE.glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_frameworks_are_imported_only_by_their_edge_module(module: str):
    imported = {name.split(".")[0] for name in _imports(SOURCE / f"{module}.py")}
    for package, allowed in EDGE_IMPORTS.items():
        if package in imported:
            assert module in allowed, f"{module}.py imports {package}"


@pytest.mark.parametrize("module", sorted(FORBIDDEN_INWARD))
def test_dependencies_point_inward(module: str):
    imported = {
        name.split(".")[1]
        for name in _imports(SOURCE / f"{module}.py")
        if name.startswith("tokenkeep.")
    }
    assert not imported & FORBIDDEN_INWARD[module]


def test_modules_stay_small():
    for path in SOURCE.glob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 320, f"{path.name} has {lines} lines; split it by job"


def test_nothing_but_the_cli_runs_at_import_time():
    for module in MODULES:
        tree = ast.parse((SOURCE / f"{module}.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                assert module in ("__main__", "cli"), f"{module}.py calls something at import time"

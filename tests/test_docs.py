"""Keep the documentation honest: commands, settings, routes and set-up steps are documented."""

from __future__ import annotations

import base64
import re
import tomllib
from dataclasses import MISSING, fields
from pathlib import Path

import click
import pytest
from flask import Flask

from tokenkeep import errors
from tokenkeep.cli import main
from tokenkeep.config import SECRET_KEYS, Settings, load_settings
from tokenkeep.errors import ConfigError, TokenKeepError

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "config.example.toml"
CHANGELOG = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")


def command_tree(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    """Every command by its full name ("keys create"), subcommands of groups included."""
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        found[prefix + name] = command
        if isinstance(command, click.Group):
            found.update(command_tree(command, f"{prefix}{name} "))
    return found


COMMANDS = command_tree(main)
SETTING_KEYS = sorted(f.name for f in fields(Settings) if f.name != "config_path")
VALID_SECRETS = {
    "api_secret_token": "a" * 32,
    "admin_password": "b" * 16,
    "encryption_key": base64.urlsafe_b64encode(b"k" * 32).decode(),
}


def section(markdown: str, title: str) -> str:
    """The text of the `## title` section, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def code_lines(markdown: str) -> list[str]:
    """The non-empty lines inside fenced code blocks."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def docker_instructions() -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def error_classes() -> list[type[TokenKeepError]]:
    """TokenKeepError and every subclass defined in tokenkeep.errors."""
    found: list[type[TokenKeepError]] = [TokenKeepError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return [cls for cls in found if cls.__module__ == errors.__name__]


def test_the_cli_has_the_core_commands() -> None:
    assert {"init", "migrate", "serve", "register-provider", "refresh-all"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_cli_command_and_subcommand_has_help_text(name: str) -> None:
    help_text = COMMANDS[name].help
    assert help_text and help_text.strip()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_cli_command_is_documented_in_the_readme(name: str) -> None:
    assert re.search(rf"tokenkeep {re.escape(name)}(?![\w-])", README), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_of_every_cli_command_is_in_the_readme(name: str) -> None:
    flags = [
        flag
        for param in COMMANDS[name].params
        if isinstance(param, click.Option)
        for flag in (*param.opts, *param.secondary_opts)
        if flag.startswith("--") and flag != "--help"
    ]
    missing = [flag for flag in flags if not re.search(rf"{re.escape(flag)}(?![\w-])", README)]
    assert missing == [], f"tokenkeep {name}: options missing from README.md"


def test_every_setting_is_a_key_of_the_example_config() -> None:
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert sorted(set(SETTING_KEYS) - set(example)) == []
    assert sorted(set(example) - set(SETTING_KEYS)) == []


@pytest.mark.parametrize("key", SETTING_KEYS)
def test_every_key_of_the_example_config_has_a_comment_above_it(key: str) -> None:
    lines = [line for line in EXAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    index = next(i for i, line in enumerate(lines) if re.match(rf"{key}\s*=", line))
    assert lines[index - 1].startswith("#"), key


@pytest.mark.parametrize("key", SETTING_KEYS)
def test_every_setting_is_in_the_readme(key: str) -> None:
    assert f"`{key}`" in README, key


def test_the_example_config_is_refused_for_its_placeholder_secrets() -> None:
    # Defect 7 of the PHP original: it silently ran with the example's key.
    with pytest.raises(ConfigError, match="placeholder"):
        load_settings(EXAMPLE, env={})


@pytest.mark.parametrize("secret", SECRET_KEYS)
def test_every_secret_of_the_example_config_is_a_placeholder(secret: str) -> None:
    env = {f"TOKENKEEP_{k.upper()}": v for k, v in VALID_SECRETS.items() if k != secret}
    with pytest.raises(ConfigError, match=f"{secret} still holds the example placeholder"):
        load_settings(EXAMPLE, env=env)


def test_the_example_config_shows_the_real_defaults() -> None:
    env = {f"TOKENKEEP_{k.upper()}": v for k, v in VALID_SECRETS.items()}
    settings = load_settings(EXAMPLE, env=env)
    for f in fields(Settings):
        if f.name == "config_path" or f.default is MISSING:
            continue
        if f.name == "database_path":
            assert settings.database_path == EXAMPLE.parent / f.default
        else:
            assert getattr(settings, f.name) == f.default, f.name


def test_the_readme_set_up_section_has_exactly_make_run_and_make_test() -> None:
    assert code_lines(section(README, "Set up")) == ["make run", "make test"]


def test_the_readme_documents_every_route(app: Flask) -> None:
    rules = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert rules
    assert sorted(r for r in rules if not re.search(rf"`{re.escape(r)}[`?\s]", README)) == []


@pytest.mark.parametrize("error", error_classes(), ids=lambda cls: cls.__name__)
def test_the_readme_error_table_has_every_code_with_its_status(
    error: type[TokenKeepError],
) -> None:
    row = rf"^\| `{re.escape(error.code)}` \| {error.status} \|"
    assert re.search(row, README, re.M), f"{error.code} {error.status}"


def test_the_changelog_starts_with_a_title_and_an_unreleased_section() -> None:
    lines = CHANGELOG.splitlines()
    assert lines[0].startswith("# ")
    versions = [line for line in lines if line.startswith("## ")]
    assert versions and re.fullmatch(r"## \[?Unreleased\]?", versions[0])
    unreleased = CHANGELOG.split(versions[0], 1)[1].split("\n## ", 1)[0]
    assert re.search(r"^- \S", unreleased, re.M)


def test_the_license_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 TokenKeep contributors" in text


def test_the_dockerfile_installs_the_package_without_editable_mode() -> None:
    installs = [i for i in docker_instructions() if re.search(r"\bpip install\b", i)]
    assert installs
    for instruction in installs:
        assert re.search(r"\bpip install \.(\s|$)", instruction), instruction
        assert not re.search(r"\s(-e|--editable)\b", instruction), instruction


def test_the_dockerfile_copies_only_files_that_exist_and_are_not_docker_ignored() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    copies = [i.split()[1:-1] for i in docker_instructions() if i.startswith("COPY ")]
    sources = [source for sources in copies for source in sources]
    assert "pyproject.toml" in sources and "README.md" in sources  # the build needs both
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source not in ignored, source


def test_docker_compose_publishes_the_port_the_dockerfile_exposes() -> None:
    exposed = re.findall(r"^EXPOSE\s+(\d+)\s*$", DOCKERFILE, re.M)
    assert len(exposed) == 1
    published = re.findall(r"""^\s*-\s*["']?(?:[\d.]+:)?\d+:(\d+)["']?\s*$""", COMPOSE, re.M)
    assert exposed[0] in published
    assert f"http://127.0.0.1:{exposed[0]}/healthz" in DOCKERFILE

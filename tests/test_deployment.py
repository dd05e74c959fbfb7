"""Deployment files, checked without a Docker engine: Dockerfile, compose, deployment docs."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import click
import pytest
import yaml

from tokenkeep.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
DEPLOYMENT = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(p[0].upper(), p[1] if len(p) > 1 else "") for p in pairs]


def args_of(name: str) -> list[str]:
    return [args for instruction, args in instructions() if instruction == name]


def exec_form(args: str) -> list[str]:
    """A JSON exec-form argument list (`["a", "b"]`)."""
    assert args.startswith("["), f"use the exec form: {args}"
    return list(yaml.safe_load(args))


def fenced(markdown: str, lang: str) -> list[str]:
    """The fenced code blocks of this language ("" for none)."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", markdown, re.M | re.S)
    return [body for found, body in blocks if found == lang]


# -- Dockerfile ------------------------------------------------------------------


def test_the_image_is_built_on_python_3_11_slim() -> None:
    assert args_of("FROM") == ["python:3.11-slim"]


def test_every_path_the_dockerfile_copies_exists() -> None:
    copies = args_of("COPY")
    assert copies
    for args in copies:
        *sources, _destination = args.split()
        for source in sources:
            assert not source.startswith("--"), "no COPY --from/--chown expected"
            assert (ROOT / source).exists(), source


def test_the_container_runs_as_a_non_root_user_created_in_the_image() -> None:
    users = args_of("USER")
    assert users and users[-1] not in ("root", "0", "0:0")
    assert re.search(rf"useradd\b.*\b{re.escape(users[-1])}\b", DOCKERFILE)
    order = [name for name, _ in instructions()]
    assert order.index("USER") > max(i for i, name in enumerate(order) if name == "RUN")


def test_the_healthcheck_calls_healthz_on_the_exposed_port() -> None:
    [health] = args_of("HEALTHCHECK")
    [port] = args_of("EXPOSE")
    assert "CMD" in health
    assert f"http://127.0.0.1:{port}/healthz" in health


def test_the_command_runs_tokenkeep_serve_on_every_interface() -> None:
    [cmd] = args_of("CMD")
    argv = exec_form(cmd)
    assert argv[:2] == ["tokenkeep", "serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert not args_of("ENTRYPOINT")


def test_the_command_resolves_in_the_installed_package() -> None:
    argv = exec_form(args_of("CMD")[0])
    [script] = [ep for ep in metadata.entry_points(group="console_scripts") if ep.name == argv[0]]
    assert script.value == "tokenkeep.cli:main"
    assert script.load() is main
    command = main.commands[argv[1]]
    options = {flag for p in command.params if isinstance(p, click.Option) for flag in p.opts}
    assert {a for a in argv[2:] if a.startswith("--")} <= options


def test_the_image_points_tokenkeep_at_the_config_in_the_data_volume() -> None:
    assert any("TOKENKEEP_CONFIG=/data/config.toml" in env for env in args_of("ENV"))
    assert any("/data" in volume for volume in args_of("VOLUME"))


# -- docker-compose.yml ----------------------------------------------------------


@pytest.fixture
def service() -> dict[str, object]:
    services = COMPOSE["services"]
    assert list(services) == ["tokenkeep"]
    return services["tokenkeep"]


def test_compose_builds_the_image_and_restarts_it(service: dict[str, object]) -> None:
    assert service["build"] == "."
    assert service["restart"] in ("always", "unless-stopped", "on-failure")


def test_compose_keeps_data_in_a_named_volume(service: dict[str, object]) -> None:
    volumes = service["volumes"]
    assert isinstance(volumes, list)
    named = [v.split(":")[0] for v in volumes if v.endswith(":/data")]
    assert named and named[0] in COMPOSE["volumes"]
    assert not named[0].startswith((".", "/"))  # a named volume, not a bind mount


def test_compose_publishes_the_port_on_loopback_only(service: dict[str, object]) -> None:
    ports = service["ports"]
    assert isinstance(ports, list) and ports
    assert all(str(p).startswith("127.0.0.1:") for p in ports)


def test_compose_takes_secrets_from_an_env_file_not_from_the_file_itself(
    service: dict[str, object],
) -> None:
    env_files = service["env_file"]
    assert isinstance(env_files, list)
    paths = [e["path"] if isinstance(e, dict) else e for e in env_files]
    assert ".env" in paths
    environment = service.get("environment") or {}
    secrets = ("API_SECRET_TOKEN", "ADMIN_PASSWORD", "ENCRYPTION_KEY", "ALERT_WEBHOOK_SECRET")
    assert not any(s in str(environment) for s in secrets)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored and "config.toml" in ignored


# -- docs/deployment.md ----------------------------------------------------------


def test_the_deployment_docs_give_a_cron_line_for_refresh_all() -> None:
    cron = [
        line
        for block in fenced(DEPLOYMENT, "")
        for line in block.splitlines()
        if re.match(r"^(\*/\d+|\d+) \S+ \S+ \S+ \S+ ", line)
    ]
    assert cron and all(line.rstrip().endswith("refresh-all") for line in cron)


def test_the_deployment_docs_give_systemd_units_for_serve_and_a_refresh_timer() -> None:
    units = fenced(DEPLOYMENT, "ini")
    service = next(u for u in units if "ExecStart=" in u and " serve" in u)
    oneshot = next(u for u in units if "Type=oneshot" in u)
    timer = next(u for u in units if "[Timer]" in u)
    assert "User=tokenkeep" in service and "Restart=" in service and "[Install]" in service
    assert re.search(r"^ExecStart=\S*tokenkeep refresh-all$", oneshot, re.M)
    assert "OnCalendar=" in timer and "WantedBy=timers.target" in timer
    for unit in (service, oneshot):
        assert "Environment=TOKENKEEP_CONFIG=" in unit


def test_the_deployment_docs_cover_nginx_and_caddy_with_an_https_public_url() -> None:
    [nginx] = fenced(DEPLOYMENT, "nginx")
    [caddy] = fenced(DEPLOYMENT, "caddy")
    assert "listen 443 ssl" in nginx and "proxy_pass http://127.0.0.1:8000" in nginx
    assert "access_log off" in nginx  # codes in /callback's query string
    assert "reverse_proxy 127.0.0.1:8000" in caddy and "log_skip" in caddy
    assert 'public_url = "https://' in DEPLOYMENT


def test_the_readme_links_the_deployment_docs() -> None:
    assert "docs/deployment.md" in (ROOT / "README.md").read_text(encoding="utf-8")

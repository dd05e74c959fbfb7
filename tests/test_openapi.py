"""openapi.yaml describes the HTTP API, and the app keeps to it.

Schemathesis generates requests from the spec (valid and invalid ones, with
and without credentials) and sends them to the WSGI app in-process; every
answer must be a non-5xx documented status whose body and headers match the
spec. A second test keeps the spec honest: every Flask route is in it and
every path in it is a Flask route.
"""

from __future__ import annotations

import base64
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import responses
import schemathesis
import yaml
from conftest import TOKEN_URL
from flask import Flask
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from tokenkeep.config import Settings
from tokenkeep.service import TokenService

SPEC_PATH = Path(__file__).resolve().parents[1] / "openapi.yaml"
SCHEMA = schemathesis.openapi.from_path(SPEC_PATH)
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
MAX_EXAMPLES = 30  # per operation and generation mode: the whole run stays well under 30 s


@pytest.fixture
def provider_stub() -> Iterator[responses.RequestsMock]:
    """Refreshes the generated requests trigger get a valid answer; nothing leaves the host."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post(
            TOKEN_URL,
            json={"access_token": "access-2", "token_type": "bearer", "expires_in": 3600},
        )
        yield rsps


def _credentials(settings: Settings) -> list[dict[str, str]]:
    basic = base64.b64encode(f"admin:{settings.admin_password}".encode()).decode()
    return [
        {"Authorization": f"Bearer {settings.api_secret_token}"},
        {"Authorization": f"Basic {basic}"},
        {"Authorization": "Bearer wrong-key"},
        {},
    ]


# Negative cases need a query parameter to break; a path parameter takes any string.
RUNS = [
    pytest.param(label, mode, id=f"{label}-{mode.value}")
    for label in sorted(OPERATIONS)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE
    or label.startswith(("GET /api", "POST /api", "GET /auth"))
    or label.startswith("GET /callback")
]


@pytest.mark.parametrize(("label", "mode"), RUNS)
def test_the_app_answers_every_generated_request_as_the_spec_says(
    app: Flask,
    connected: TokenService,
    settings: Settings,
    provider_stub: responses.RequestsMock,
    label: str,
    mode: GenerationMode,
) -> None:
    operation = OPERATIONS[label]
    seen: list[int] = []

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(
        case=st.one_of(
            operation.as_strategy(generation_mode=mode),
            operation.as_strategy(generation_mode=mode, query={"provider": "acme"}),
        )
        if "provider" in str(operation.definition.raw)
        else operation.as_strategy(generation_mode=mode),
        headers=st.sampled_from(_credentials(settings)),
    )
    def check(case: Any, headers: dict[str, str]) -> None:
        response = case.call(headers=headers, app=app, buffered=True)  # closes static files
        seen.append(response.status_code)
        case.validate_response(
            response, checks=CHECKS, headers=headers, transport_kwargs={"app": app}
        )

    check()
    if mode is GenerationMode.POSITIVE and "/callback" not in label:  # needs a live state
        assert any(status < 400 for status in seen), seen  # the happy path was exercised too


def _spec_routes() -> set[tuple[str, str]]:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    methods = {"get", "post", "put", "delete", "patch"}
    return {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method in methods
    }


def test_every_flask_route_is_in_openapi_yaml_and_every_path_there_is_a_route(
    app: Flask,
) -> None:
    flask_routes = {
        (rule.rule.replace("<path:", "{").replace("<", "{").replace(">", "}"), method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }

    assert flask_routes == _spec_routes()


def test_openapi_yaml_documents_the_error_shape_and_the_token_headers() -> None:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    components = spec["components"]
    assert components["schemas"]["Error"]["required"] == ["error", "error_description"]
    assert components["schemas"]["Token"]["additionalProperties"] is True
    assert {"bearer", "basic"} <= set(components["securitySchemes"])
    token_headers = components["responses"]["Token"]["headers"]
    assert {"Cache-Control", "Pragma"} <= set(token_headers)


def test_openapi_yaml_ships_in_the_source_distribution() -> None:
    pyproject = tomllib.loads((SPEC_PATH.parent / "pyproject.toml").read_text())
    assert "openapi.yaml" in pyproject["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]

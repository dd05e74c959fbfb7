"""Provider presets: known providers and their quirks, as data (presets.json).

A preset fills in what an operator would otherwise look up: endpoints, client
authentication, the parameters without which no refresh token comes, and the
generic quirks (see models.Quirks). URLs may hold `{placeholders}` that a
region or a `--param NAME=VALUE` fills; those values are never sent as
authorize parameters. Sources: ../shared/providers.md and docs/providers.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from tokenkeep.errors import InvalidRequest
from tokenkeep.models import AUTH_METHODS, ProviderChanges
from tokenkeep.quirks import Quirks

PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Placeholder:
    """A value a preset's URLs need: checked against a pattern, maybe with a default."""

    pattern: str
    help: str
    default: str | None = None


@dataclass(frozen=True)
class Preset:
    """One known provider, as presets.json describes it."""

    name: str
    title: str
    note: str
    console: str
    authorize_url: str
    token_url: str
    auth_method: str
    pkce: bool = True
    scope_separator: str = " "
    scopes: tuple[str, ...] = ()
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    token_params: Mapping[str, str] = field(default_factory=dict)
    default_lifetime_seconds: int | None = None
    placeholders: Mapping[str, Placeholder] = field(default_factory=dict)
    regions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    default_region: str | None = None
    quirks: Quirks = field(default_factory=Quirks)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view for `tokenkeep presets --json`."""
        return {
            "name": self.name,
            "title": self.title,
            "note": self.note,
            "console": self.console,
            "authorize_url": self.authorize_url,
            "token_url": self.token_url,
            "auth_method": self.auth_method,
            "pkce": self.pkce,
            "scopes": list(self.scopes),
            "placeholders": sorted(self.placeholders),
            "regions": list(self.regions),
            "default_region": self.default_region,
            "extras": self.extras(),
        }

    def extras(self) -> list[str]:
        """The extra fields the token API returns for this provider."""
        kept = list(self.quirks.callback_params.values())
        return [*(self.quirks.response_extras or ()), *kept]

    def resolve(
        self,
        *,
        region: str | None = None,
        params: Mapping[str, str] | None = None,
        token_params: Mapping[str, str] | None = None,
        scopes: tuple[str, ...] = (),
    ) -> ProviderChanges:
        """The registration this preset gives, with the operator's values merged in.

        `params` may name placeholders (those fill URLs and are not sent) or be
        extra authorize parameters; `scopes` are added to the preset's own.
        """
        params = dict(params or {})
        values = {k: p.default for k, p in self.placeholders.items() if p.default is not None}
        region = region or self.default_region
        if region is not None:
            if region not in self.regions:
                valid = ", ".join(self.regions) or "none"
                raise InvalidRequest(
                    f"unknown region {region!r} for preset {self.name}; valid regions: {valid}"
                )
            values.update(self.regions[region])
        for name in self.placeholders:
            if name in params:
                values[name] = params.pop(name)
        for name, placeholder in self.placeholders.items():
            value = values.get(name)
            if not value:
                raise InvalidRequest(
                    f"preset {self.name} needs --param {name}=VALUE ({placeholder.help})"
                )
            if not re.fullmatch(placeholder.pattern, value):
                raise InvalidRequest(
                    f"--param {name}={value!r} does not fit preset {self.name}: "
                    f"give {placeholder.help}"
                )
        return ProviderChanges(
            authorize_url=self.authorize_url.format(**values),
            token_url=self.token_url.format(**values),
            scopes=tuple(dict.fromkeys((*self.scopes, *scopes))),
            scope_separator=self.scope_separator,
            auth_method=self.auth_method,
            pkce=self.pkce,
            authorize_params={**self.authorize_params, **params},
            token_params={**self.token_params, **(token_params or {})},
            default_lifetime_seconds=self.default_lifetime_seconds,
            preset=self.name,
            quirks=self.quirks,
        )


def get_preset(name: str) -> Preset:
    """The preset called `name`; InvalidRequest listing the valid names otherwise."""
    presets = load_presets()
    if name not in presets:
        raise InvalidRequest(f"unknown preset {name!r}; valid presets: {', '.join(presets)}")
    return presets[name]


@cache
def load_presets() -> dict[str, Preset]:
    """Every preset shipped in the package, in catalogue order."""
    text = (resources.files("tokenkeep") / "presets.json").read_text("utf-8")
    return parse_presets(json.loads(text))


def parse_presets(data: Mapping[str, Any]) -> dict[str, Preset]:
    """Build presets from JSON data; ValueError names the first thing not understood."""
    return {name: _preset(name, entry) for name, entry in data.items()}


_FIELDS = frozenset(Preset.__dataclass_fields__) - {"name"}
_REQUIRED = frozenset({"title", "note", "console", "authorize_url", "token_url", "auth_method"})


def _preset(name: str, entry: Mapping[str, Any]) -> Preset:
    where = f"preset {name!r}"
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    missing = sorted(_REQUIRED - set(entry))
    if missing:
        raise ValueError(f"{where}: missing field {missing[0]!r}")
    values = dict(entry)
    try:
        values["quirks"] = Quirks.from_dict(entry.get("quirks", {}))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    placeholders = {}
    for key, spec in entry.get("placeholders", {}).items():
        if set(spec) - {"pattern", "help", "default"}:
            raise ValueError(f"{where}: placeholder {key!r} has an unknown field")
        placeholders[key] = Placeholder(**spec)
    values["placeholders"] = placeholders
    values["scopes"] = tuple(entry.get("scopes", ()))
    preset = Preset(name=name, **values)
    _check(preset, where)
    return preset


def _check(preset: Preset, where: str) -> None:
    lifetime = preset.default_lifetime_seconds
    if not isinstance(preset.pkce, bool):
        raise ValueError(f"{where}: pkce must be true or false")
    if lifetime is not None and (not isinstance(lifetime, int) or lifetime <= 0):
        raise ValueError(f"{where}: default_lifetime_seconds must be a positive integer")
    strings = [preset.title, preset.note, preset.console, preset.scope_separator, *preset.scopes]
    for params in (preset.authorize_params, preset.token_params, *preset.regions.values()):
        strings += [*params, *params.values()]
    if not all(isinstance(value, str) for value in strings):
        raise ValueError(f"{where}: texts, scopes and parameters must be strings")
    if preset.auth_method not in AUTH_METHODS:
        raise ValueError(f"{where}: auth_method must be one of {', '.join(AUTH_METHODS)}")
    used = set()
    for url in (preset.authorize_url, preset.token_url):
        if not url.startswith("https://"):
            raise ValueError(f"{where}: {url} is not an https URL")
        used.update(PLACEHOLDER_RE.findall(url))
    if used != set(preset.placeholders):
        raise ValueError(f"{where}: the URLs' placeholders and `placeholders` differ")
    for region, values in preset.regions.items():
        if set(values) - set(preset.placeholders):
            raise ValueError(f"{where}: region {region!r} sets an unknown placeholder")
    if preset.default_region is not None and preset.default_region not in preset.regions:
        raise ValueError(f"{where}: default_region is not one of its regions")

"""HTTP values parsed and formatted without a web framework: query parameters, header text."""

from __future__ import annotations

from tokenkeep.errors import InvalidRequest

MAX_MIN_VALID = 86400 * 365


def min_valid_param(values: list[str]) -> int | None:
    """The `min_valid` query parameter: absent, or one whole number of seconds."""
    if not values:
        return None
    value = values[0]
    if len(values) > 1 or not value.isascii() or not value.isdigit() or len(value) > 9:
        raise InvalidRequest("min_valid must be a whole number of seconds, 0 or more, given once")
    if int(value) > MAX_MIN_VALID:
        raise InvalidRequest(f"min_valid must be at most {MAX_MIN_VALID}")
    return int(value)


def header_text(text: str, limit: int = 200) -> str:
    """Printable ASCII without quotes or backslashes, safe inside a quoted header value."""
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    cleaned = "".join(c if c.isprintable() and c not in '"\\' else " " for c in ascii_text)
    return cleaned[:limit]

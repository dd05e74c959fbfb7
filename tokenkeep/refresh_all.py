"""refresh-all: refresh every due provider in a bounded pool, each isolated.

Every refresh goes through the service's single-flight lease, so overlapping
cron runs and lazy refreshes by the server never refresh a provider twice.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from tokenkeep.errors import TokenKeepError
from tokenkeep.models import NEEDS_REAUTH, NOT_CONNECTED, ProviderStatus, TokenRecord

if TYPE_CHECKING:
    from tokenkeep.service import RefreshOutcome, TokenService

DAY = 86400.0


def run_refresh_all(
    service: TokenService,
    *,
    within: float,
    force: bool,
    keep_alive_days: float | None,
    concurrency: int,
) -> list[RefreshOutcome]:
    """Refresh what is due; one outcome per provider, in alias order."""
    from tokenkeep.service import RefreshOutcome

    now = service.clock()
    outcomes: dict[str, RefreshOutcome] = {}
    due: list[ProviderStatus] = []
    for status in service.repo.list_statuses():
        alias = status.alias
        if status.status == NOT_CONNECTED:
            outcomes[alias] = RefreshOutcome(alias, "skipped", "never authorized")
        elif status.status == NEEDS_REAUTH:
            outcomes[alias] = RefreshOutcome(
                alias, "failed", f"needs re-authorization at {service.reauthorize_url(alias)}"
            )
        elif _is_due(status, now, within, force, keep_alive_days):
            due.append(status)
        else:
            outcomes[alias] = RefreshOutcome(alias, "fresh", "not due", status.expires_at)

    def refresh_one(status: ProviderStatus) -> RefreshOutcome:
        alias = status.alias
        before = status.obtained_at

        def still_due(rec: TokenRecord, t: float) -> bool:
            if rec.tokens.obtained_at != before:
                return False  # refreshed meanwhile by someone else
            return _is_due_record(rec, t, within, force, keep_alive_days)

        try:
            result = service.refresh_when(alias, still_due, serve_stale=False)
        except TokenKeepError as exc:
            return RefreshOutcome(alias, "failed", exc.description)
        except Exception as exc:  # isolate: one provider's bug must not stop the others
            return RefreshOutcome(alias, "failed", f"internal error ({type(exc).__name__})")
        expires_at = result.record.tokens.expires_at
        if result.refreshed:
            return RefreshOutcome(alias, "refreshed", "ok", expires_at)
        if result.record.tokens.obtained_at != before:
            # Another cron run or a lazy refresh by the server got there first.
            return RefreshOutcome(
                alias, "fresh", "refreshed meanwhile by another caller", expires_at
            )
        if result.record.tokens.refresh_token is None:
            return RefreshOutcome(alias, "skipped", "no refresh token", expires_at)
        return RefreshOutcome(alias, "fresh", "not due", expires_at)

    if due:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(due)))) as pool:
            for outcome in pool.map(refresh_one, due):
                outcomes[outcome.alias] = outcome
    return [outcomes[alias] for alias in sorted(outcomes)]


def _is_due(
    s: ProviderStatus, now: float, within: float, force: bool, keep_alive_days: float | None
) -> bool:
    if force:
        return True
    if s.expires_at is not None and s.expires_at - now < within:
        return True
    return (
        keep_alive_days is not None
        and s.obtained_at is not None
        and now - s.obtained_at >= keep_alive_days * DAY
    )


def _is_due_record(
    rec: TokenRecord, now: float, within: float, force: bool, keep_alive_days: float | None
) -> bool:
    if force:
        return True
    left = rec.remaining(now)
    if left is not None and left < within:
        return True
    return keep_alive_days is not None and now - rec.tokens.obtained_at >= keep_alive_days * DAY

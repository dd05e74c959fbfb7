"""Prometheus metrics: request counts, refresh outcomes and latency, provider states.

Request counts and refresh latency are kept in memory, per process: under
gunicorn each worker answers a scrape with its own numbers. Refresh outcomes
come from the event log's running totals in the database, so they count the
refreshes of every process, cron's `refresh-all` included, and survive restarts.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping

from tokenkeep.events import Event
from tokenkeep.models import CONNECTED, NEEDS_REAUTH, NOT_CONNECTED, ProviderStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REFRESH_OUTCOMES = {
    "refreshed": "refreshed",
    "refresh_failed": "failed",
    "needs_reauth": "needs_reauth",
}
STATES = (CONNECTED, NEEDS_REAUTH, NOT_CONNECTED)


class Metrics:
    """This process's counters; renders them with the global ones in text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._buckets = [0] * len(LATENCY_BUCKETS)
        self._latency_sum = 0.0
        self._latency_count = 0

    def observe_request(self, method: str, route: str, status: int) -> None:
        """Count one answered request by its route template (never its query)."""
        with self._lock:
            self._requests[(method, route, status)] += 1

    def observe_event(self, event: Event) -> None:
        """Event listener: time the refreshes this process made."""
        if event.duration_ms is None or event.kind not in ("refreshed", "refresh_failed"):
            return
        seconds = event.duration_ms / 1000
        with self._lock:
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self._buckets[i] += 1
            self._latency_sum += seconds
            self._latency_count += 1

    def render(
        self, statuses: Iterable[ProviderStatus], totals: Mapping[tuple[str, str], int]
    ) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        with self._lock:
            requests = sorted(self._requests.items())
            buckets = list(self._buckets)
            latency_sum, latency_count = self._latency_sum, self._latency_count
        out: list[str] = []
        help_requests = "HTTP requests answered by this worker process, by route and status."
        _family(out, "tokenkeep_http_requests_total", "counter", help_requests)
        for (method, route, status), n in requests:
            labels = _labels(method=method, route=route, status=str(status))
            out.append(f"tokenkeep_http_requests_total{labels} {n}")
        help_refreshes = "Refresh outcomes of every process (from the event log), by provider."
        _family(out, "tokenkeep_refreshes_total", "counter", help_refreshes)
        for (provider, kind), n in sorted(totals.items()):
            if kind in REFRESH_OUTCOMES:
                labels = _labels(provider=provider, outcome=REFRESH_OUTCOMES[kind])
                out.append(f"tokenkeep_refreshes_total{labels} {n}")
        name = "tokenkeep_refresh_duration_seconds"
        _family(out, name, "histogram", "Provider refresh calls made by this worker process.")
        for bound, n in zip(LATENCY_BUCKETS, buckets, strict=True):
            out.append(f'{name}_bucket{{le="{bound:g}"}} {n}')
        out.append(f'{name}_bucket{{le="+Inf"}} {latency_count}')
        out.append(f"{name}_sum {latency_sum:.6f}")
        out.append(f"{name}_count {latency_count}")
        _family(out, "tokenkeep_providers", "gauge", "Registered providers by connection state.")
        states = Counter(s.status for s in statuses)
        for state in STATES:
            out.append(f'tokenkeep_providers{{state="{state}"}} {states.get(state, 0)}')
        return "\n".join(out) + "\n"


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"

"""Single-flight refresh proven with real processes: gunicorn workers, cron runs, kill -9.

The upstream is the fake provider of fakeprovider.py: it counts token
requests, rotates refresh tokens and revokes the whole grant when a spent
refresh token is replayed, so any double refresh shows up as a dead
connection. Tokens are made "expiring" by ageing their stored expiry
(serving.Gateway.age_token); nothing sleeps waiting for an expiry.

The figures asked for by the single-flight issue (storm latency, kill -9
recovery) are printed; run with `-s` to read them.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from fakeprovider import Canned, FakeProvider
from serving import Gateway, Reply, accepted_by, serving

pytestmark = pytest.mark.e2e

WORKERS = 4
STORM = 200
Launch = Callable[..., Gateway]


@pytest.fixture
def upstream() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def launch(tmp_path: Path, upstream: FakeProvider) -> Iterator[Launch]:
    """Start `tokenkeep serve` with 4 workers and the given settings, stopped after the test."""
    with ExitStack() as stack:

        def start(**settings: str) -> Gateway:
            return stack.enter_context(
                serving(tmp_path, workers=WORKERS, settings=settings, provider=upstream)
            )

        yield start


def storm(gateway: Gateway, alias: str, count: int = STORM) -> list[Reply]:
    """`count` concurrent GET /api/token calls, released together by a barrier."""
    barrier = threading.Barrier(count)

    def one(_: int) -> Reply:
        barrier.wait()
        return gateway.token(alias)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def wait_for(condition: Callable[[], object], seconds: float = 20) -> None:
    """Poll `condition` every 20 ms until it holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def report(name: str, replies: list[Reply]) -> None:
    """Print the latency figures of a storm."""
    ms = sorted(r.seconds * 1000 for r in replies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"\n[{name}] {len(ms)} requests, {WORKERS} workers: "
        f"p50 {statistics.median(ms):.0f} ms, p99 {p99:.0f} ms, max {ms[-1]:.0f} ms"
    )


def test_a_storm_on_an_expiring_token_makes_exactly_one_upstream_refresh(
    launch: Launch, upstream: FakeProvider
) -> None:
    gateway = launch()
    gateway.connect()
    gateway.age_token("acme", seconds_left=60)  # inside the 300 s margin
    upstream.delay = 0.1  # the upstream takes 100 ms to answer

    replies = storm(gateway, "acme")

    report("storm", replies)
    assert [r.status for r in replies] == [200] * STORM
    served = {r.json()["access_token"] for r in replies}
    assert upstream.refresh_requests == 1
    assert served == {upstream.issued_access_tokens[-1]}, "not every caller got the new token"
    assert not upstream.replay_detected
    assert not any("Warning" in r.headers for r in replies)
    assert accepted_by(upstream, served.pop())


def test_a_storm_while_the_upstream_fails_makes_one_attempt_and_serves_the_valid_token(
    launch: Launch, upstream: FakeProvider
) -> None:
    gateway = launch()
    gateway.connect()
    gateway.age_token("acme", seconds_left=60)
    before = gateway.stored("acme")
    requests_before = upstream.token_requests
    upstream.script(*[Canned(503)] * 20)  # enough outage for many attempts

    replies = storm(gateway, "acme")

    report("storm-503", replies)
    # One attempt in the backoff window: its first request plus the two
    # jittered retries ProviderClient makes on a 5xx inside one attempt.
    assert upstream.token_requests - requests_before == 3
    assert [r.status for r in replies] == [200] * STORM
    assert {r.json()["access_token"] for r in replies} == {before.tokens.access_token}
    assert all(r.headers["Warning"].startswith("199 tokenkeep ") for r in replies)
    assert all("refresh failed" in r.json()["warning"] for r in replies)
    after = gateway.stored("acme")
    assert after.tokens.refresh_token == before.tokens.refresh_token
    assert after.status == "connected"
    assert after.next_attempt_at is not None and after.next_attempt_at > time.time()


def test_a_worker_killed_mid_refresh_is_replaced_by_another_once_its_lease_expires(
    launch: Launch, upstream: FakeProvider
) -> None:
    timeout = 2  # the lease lasts http_timeout_seconds + 5
    gateway = launch(http_timeout_seconds=str(timeout))
    gateway.connect()
    gateway.age_token("acme", seconds_left=60)
    upstream.gate = threading.Event()  # hold refreshes before the provider acts on them

    with ThreadPoolExecutor(max_workers=1) as pool:
        doomed = pool.submit(gateway.token, "acme")
        wait_for(lambda: upstream.refresh_requests == 1 and gateway.lease_owner_pid("acme"))
        owner = gateway.lease_owner_pid("acme")
        assert owner is not None
        os.kill(owner, signal.SIGKILL)
        killed_at = time.monotonic()
        with pytest.raises(requests.ConnectionError):
            doomed.result(timeout=30)
    upstream.gate.set()
    wait_for(lambda: upstream.abandoned_requests == 1)  # the dead worker's request

    reply = gateway.token("acme")
    recovered = time.monotonic() - killed_at

    print(f"\n[kill -9] a new token was served {recovered:.1f} s after the owner died")
    assert reply.status == 200, reply.text
    assert reply.json()["access_token"] == upstream.issued_access_tokens[-1]
    assert upstream.refresh_requests == 2  # the abandoned one and the takeover
    assert not upstream.replay_detected
    assert accepted_by(upstream, reply.json()["access_token"])
    assert recovered < timeout + 5 + 3
    assert gateway.lease_owner_pid("acme") is None


def test_a_hanging_provider_does_not_hold_up_reads_of_another_provider(
    launch: Launch, upstream: FakeProvider
) -> None:
    gateway = launch()
    with FakeProvider() as hanging:
        gateway.connect("fast", upstream)
        gateway.connect("slow", hanging)
        gateway.age_token("slow", seconds_left=-5)  # expired: its callers must wait
        hanging.gate = threading.Event()
        with ThreadPoolExecutor(max_workers=4) as stuck_pool:
            stuck = [stuck_pool.submit(gateway.token, "slow") for _ in range(4)]
            wait_for(lambda: hanging.refresh_requests == 1)

            with ThreadPoolExecutor(max_workers=4) as pool:
                reads = list(pool.map(lambda _: gateway.token("fast"), range(100)))

            still_hanging = not any(f.done() for f in stuck)
            hanging.gate.set()
            slow = [f.result(timeout=30) for f in stuck]

    report("isolation", reads)
    assert still_hanging, "the slow provider answered before the reads were done"
    assert [r.status for r in reads] == [200] * 100
    assert max(r.seconds for r in reads) < 2.0
    assert upstream.refresh_requests == 0
    assert [r.status for r in slow] == [200] * 4
    assert hanging.refresh_requests == 1


def test_refresh_all_racing_lazy_refreshes_and_another_refresh_all_refreshes_each_once(
    launch: Launch, upstream: FakeProvider
) -> None:
    gateway = launch()
    aliases = [f"p{i}" for i in range(5)]
    for alias in aliases:
        gateway.connect(alias)
        gateway.age_token(alias, seconds_left=60)
    upstream.delay = 0.3  # widen every race window
    refreshes_before = upstream.refresh_requests

    runs = [gateway.cli_process("refresh-all", "--json") for _ in range(2)]
    with ThreadPoolExecutor(max_workers=25) as pool:
        lazy = list(pool.map(gateway.token, aliases * 10))
    outputs = [run.communicate(timeout=60) for run in runs]

    assert upstream.refresh_requests - refreshes_before == len(aliases)
    assert not upstream.replay_detected
    assert [r.status for r in lazy] == [200] * len(lazy)
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
    results = [row for out, _ in outputs for row in json.loads(out)["results"]]
    for alias in aliases:
        outcomes = [row["outcome"] for row in results if row["provider"] == alias]
        assert set(outcomes) <= {"refreshed", "fresh"}
        assert outcomes.count("refreshed") <= 1
        current = gateway.token(alias).json()["access_token"]
        assert current == gateway.stored(alias).tokens.access_token
        assert accepted_by(upstream, current)

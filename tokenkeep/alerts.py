"""Webhook alerts: a provider needs re-authorization, or its refreshes keep failing.

The event listener only enqueues (a bounded queue; a full queue drops the
alert and logs it), so a token request never waits on the webhook. One
daemon thread posts each alert, signed with HMAC-SHA256 over the raw body,
retrying with exponential backoff. The HTTP session, clock and sleep are
injected; this module does not import requests (the composition root hands
it a session of its own).
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from tokenkeep.events import Event
from tokenkeep.models import Clock, iso8601

log = logging.getLogger("tokenkeep.alerts")

SIGNATURE_HEADER = "X-TokenKeep-Signature"
TIMESTAMP_HEADER = "X-TokenKeep-Timestamp"
DELIVERY_HEADER = "X-TokenKeep-Delivery"
QUEUE_SIZE = 100
ATTEMPTS = 5
FIRST_DELAY = 1.0
FLUSH_AT_EXIT_SECONDS = 10.0


class PostResponse(Protocol):
    """What the sender needs from an HTTP response."""

    status_code: int


class PostSession(Protocol):
    """What the sender needs from an HTTP session (requests.Session fits)."""

    def post(self, url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> Any:
        """Send a POST request."""


def sign(secret: str, body: bytes) -> str:
    """The signature header value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class AlertSender:
    """Delivers alert payloads from one background daemon thread."""

    def __init__(
        self,
        session: PostSession,
        url: str,
        secret: str,
        *,
        timeout: float,
        clock: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._session = session
        self._url = url
        self._secret = secret
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.delivered = 0
        self.dropped = 0

    def __repr__(self) -> str:
        return "AlertSender(<url and secret hidden>)"

    def submit(self, payload: dict[str, Any]) -> bool:
        """Queue an alert without waiting; False when the queue is full (dropped)."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.dropped += 1
            log.warning("alert queue full; dropped a %s alert", payload.get("event"))
            return False
        return True

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until every queued alert is handled."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def deliver(self, payload: dict[str, Any]) -> bool:
        """Post one alert, retrying transient failures with backoff; True when accepted."""
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "TokenKeep",
            SIGNATURE_HEADER: sign(self._secret, body),
            TIMESTAMP_HEADER: str(int(self._clock())),
            DELIVERY_HEADER: uuid.uuid4().hex,  # the same on retries: receivers can dedupe
        }
        delay = FIRST_DELAY
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._session.post(
                    self._url, data=body, headers=headers, timeout=self._timeout
                )
                status = int(response.status_code)
            except Exception as exc:  # any transport failure is worth a retry
                status, reason = 0, type(exc).__name__
            else:
                reason = f"HTTP {status}"
                if 200 <= status < 300:
                    self.delivered += 1
                    return True
                if status < 500 and status != 429:
                    break  # the receiver refuses it; retrying will not help
            log.warning("alert webhook attempt %d failed (%s)", attempt, reason)
            if attempt < ATTEMPTS:
                self._sleep(delay)
                delay *= 2
        event, provider = payload.get("event"), payload.get("provider")
        log.error("alert webhook gave up on a %s alert for %s", event, provider)
        return False

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="tokenkeep-alerts", daemon=True
                )
                self._thread.start()
                # A CLI run (cron's refresh-all) exits right after queuing an alert.
                atexit.register(self.flush, FLUSH_AT_EXIT_SECONDS)

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            try:
                self.deliver(payload)
            except Exception as exc:
                log.error("alert delivery crashed (%s)", type(exc).__name__)
            finally:
                self._queue.task_done()


class Alerter:
    """Event listener: turns needs_reauth and long failure streaks into alerts."""

    def __init__(
        self, sender: AlertSender, *, after_failures: int, reauthorize_url: Callable[[str], str]
    ) -> None:
        self.sender = sender
        self.after_failures = after_failures
        self.reauthorize_url = reauthorize_url

    def on_event(self, event: Event) -> None:
        """Queue an alert when a provider needs re-authorization or keeps failing."""
        if event.kind == "needs_reauth":
            kind = "needs_reauth"
        elif event.kind == "refresh_failed" and event.failures == self.after_failures:
            kind = "refresh_failing"  # once per streak, when it reaches the threshold
        else:
            return
        self.sender.submit(
            {
                "event": kind,
                "provider": event.provider,
                "at": iso8601(event.at),
                "code": event.code,
                "detail": event.detail,
                "failures": event.failures,
                "reauthorize_url": self.reauthorize_url(event.provider),
            }
        )

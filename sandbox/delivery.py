"""Delivers webhooks in the background, retrying with exponential backoff as Vonage does."""

import heapq
import itertools
import logging
import queue
import threading
import time
from urllib.parse import urlencode

import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from sandbox.state import Attempt, State, utc_now_iso

# Vonage's own limits: 3 s to connect, 15 s to answer, backoff capped at 15 minutes.
TIMEOUT = (3.0, 15.0)
_TIMEOUT = urllib3.Timeout(connect=TIMEOUT[0], read=TIMEOUT[1])
# the CA bundle requests verified https receivers with (certifi's), kept as it was
_CA_BUNDLE = DEFAULT_CA_BUNDLE_PATH
MAX_BACKOFF_SECONDS = 900.0
# Vonage counts these as an acknowledgement; anything else is retried.
ACKNOWLEDGED = range(200, 206)
# A kept-alive connection idle longer than this is not reused: receivers close idle ones
# (gunicorn after its `keepalive`, 2 s by default, 5 s in ours), and one closed while a request
# is on its way fails that attempt. A thread that delivers at least once a second keeps its own.
IDLE_REUSE_SECONDS = 1.0

log = logging.getLogger(__name__)


class Deliverer:
    """A scheduler thread feeds due attempts to workers, so a waiting retry holds no thread.

    Workers are daemon threads: an attempt stuck in its 15 s timeout never delays shutdown.
    """

    def __init__(
        self,
        state: State,
        *,
        retry_base_seconds: float,
        retry_max_attempts: int,
        workers: int = 16,
    ) -> None:
        self._state = state
        self._retry_base = retry_base_seconds
        self._max_attempts = retry_max_attempts
        self._due: list[tuple[float, int, int]] = []  # (monotonic due time, tie-break, webhook id)
        self._order = itertools.count()
        self._wakeup = threading.Condition()
        self._closed = False
        self._ready: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"webhook-{n}", daemon=True)
            for n in range(workers)
        ]
        self._scheduler = threading.Thread(target=self._run, name="webhook-scheduler", daemon=True)
        for thread in [*self._workers, self._scheduler]:
            thread.start()

    def schedule(self, webhook_id: int, delay: float = 0.0) -> None:
        """Attempt delivery of a recorded webhook after `delay` seconds."""
        with self._wakeup:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), webhook_id))
            self._wakeup.notify()

    def close(self) -> None:
        """Stop scheduling; attempts in flight finish, pending retries are dropped."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._scheduler.join(timeout=5)
        for _ in self._workers:
            self._ready.put(None)

    def _run(self) -> None:
        with self._wakeup:
            while not self._closed:
                if not self._due:
                    self._wakeup.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._wakeup.wait(timeout=wait)
                    continue
                _, _, webhook_id = heapq.heappop(self._due)
                self._ready.put(webhook_id)

    def _work(self) -> None:
        sender = _Sender()
        try:
            while (webhook_id := self._ready.get()) is not None:
                try:
                    self._attempt(webhook_id, sender)
                except Exception:
                    # A bug in one delivery must not silently stop a worker for all the others.
                    log.exception("webhook %d: delivery crashed", webhook_id)
        finally:
            sender.close()

    def _attempt(self, webhook_id: int, sender: "_Sender") -> None:
        webhook = self._state.webhook(webhook_id)
        if webhook is None or webhook.status != "pending" or webhook.url is None:
            return  # dropped by a reset
        started = time.monotonic()
        at = utc_now_iso()
        status_code, error = sender.send(webhook.url, webhook.format, webhook.params)
        attempt = Attempt(at, status_code, error, round((time.monotonic() - started) * 1000))
        number = len(webhook.attempts) + 1
        if status_code in ACKNOWLEDGED:
            status = "delivered"
        elif number >= self._max_attempts:
            status = "failed"
        else:
            status = "pending"
        self._state.record_attempt(webhook_id, attempt, status)
        log.info(
            "webhook %d (%s) attempt %d to %s: %s -> %s",
            webhook_id,
            webhook.kind,
            number,
            webhook.url,
            status_code if error is None else error,
            status,
        )
        if status == "pending":
            backoff = min(self._retry_base * 2 ** (number - 1), MAX_BACKOFF_SECONDS)
            self.schedule(webhook_id, backoff)


class _Sender:
    """One delivering thread's HTTP connection pool, kept between attempts.

    Reusing the receiver's connection spares both ends a TCP connect (and a TLS handshake for an
    https URL) per webhook. urllib3 directly, not through requests: in a profile of a relay run,
    a session's per-request machinery (settings merged, hooks, cookies, the body encoded through
    generic mappings) took more of the sandbox's samples than urllib3's whole request
    (docs/performance.md, section 2), CPU that the benchmark's Vonage takes from the cores the
    proxy runs on. The method, URL, body and content type are as before (only client headers
    such as User-Agent differ). Each attempt is still one HTTP request: no retries of urllib3's
    own and no redirects followed, so a reused connection that fails is an attempt like any
    other, recorded and retried with backoff.
    """

    def __init__(self) -> None:
        self._pool: urllib3.PoolManager | None = None
        self._last_used = 0.0

    def send(
        self, url: str, webhook_format: str, params: dict[str, str]
    ) -> tuple[int | None, str | None]:
        """One HTTP attempt: (status code, None) on an answer, (None, reason) on no answer."""
        if self._pool is not None and time.monotonic() - self._last_used > IDLE_REUSE_SECONDS:
            self.close()
        if self._pool is None:
            # One connection per receiver; no environment proxy is ever consulted (urllib3
            # reads none), so none can capture deliveries to local receivers.
            self._pool = urllib3.PoolManager(
                num_pools=4, maxsize=1, retries=False, timeout=_TIMEOUT, ca_certs=_CA_BUNDLE
            )
        pool = self._pool
        try:
            # A redirect is not an acknowledgement: it is retried like any other non-2xx.
            if webhook_format == "get":
                query = urlencode(params)
                joined = f"{url}{'&' if '?' in url else '?'}{query}" if query else url
                response = pool.request("GET", joined, redirect=False)
            elif webhook_format == "json":
                response = pool.request("POST", url, json=params, redirect=False)
            else:
                response = pool.request(
                    "POST", url, body=urlencode(params), redirect=False,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
        except urllib3.exceptions.HTTPError as exc:
            # Start the next attempt on fresh connections, whatever state this one left.
            self.close()
            return None, f"{_failure_name(exc)}: {exc}"
        # The body is read already (preloaded): the connection is back in the pool for reuse.
        self._last_used = time.monotonic()
        return response.status, None

    def close(self) -> None:
        """Close the pool's connections; the next attempt opens new ones."""
        if self._pool is not None:
            self._pool.clear()
            self._pool = None


def _failure_name(exc: urllib3.exceptions.HTTPError) -> str:
    """What an attempt with no answer records, in the names requests gives these failures."""
    if isinstance(exc, urllib3.exceptions.LocationValueError):
        return "InvalidURL"
    # (a refused connection is a NewConnectionError, which urllib3 derives from the timeout)
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "ConnectionError"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "ConnectTimeout"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "ReadTimeout"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "SSLError"
    return "ConnectionError"

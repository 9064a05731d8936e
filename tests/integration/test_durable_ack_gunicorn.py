"""The durable acknowledgement under gunicorn itself, with each worker class it may run
(GUNICORN_WORKER_CLASS): gthread, the default, and gevent, whose monkey-patched sockets make
redis-py and kombu wait on greenlets. A webhook answers 200 only once its job is in the broker
(Redis, or RabbitMQ with a publisher confirm), 503 within a bound when Redis hangs, and a
retried or concurrent copy is never queued twice.

Real processes: gunicorn with `gunicorn.conf.py`, redis-servers of our own (append-only), the
machine's RabbitMQ in a vhost of our own (skipped, saying why, without one).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from devtools.ports import free_port
from devtools.stack import ROOT
from shared.settings import SignatureMethod
from shared.signatures import sign
from tests.integration.test_durable_ack_rabbitmq import drain
from tests.rabbitmq import private_vhost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "gunicorn-ack-secret"  # noqa: S105 (signs loopback test traffic only)
METHOD = SignatureMethod.SHA256
TIMEOUT = 0.5  # SMSPROXY_PUBLISH_TIMEOUT_SECONDS
# Generous for a noisy 2-core machine: the design target is TIMEOUT plus a little.
BOUND = 4 * TIMEOUT
QUEUE = "inbound"  # kombu's Redis transport keeps the queue as a list of this name
CLASSES = ["gthread", "gevent"]


def signed(message_id: str) -> dict[str, str]:
    params = {"msisdn": "447400123456", "to": "447700900100", "messageId": message_id,
              "text": "hi", "type": "text", "timestamp": str(int(time.time())),
              "nonce": message_id}
    params["sig"] = sign(params, SECRET, METHOD)
    return params


class Web:
    """gunicorn serving web.wsgi:app on a free loopback port, with one worker class."""

    def __init__(self, worker_class: str, redis_url: str, broker_url: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/webhooks/inbound-sms"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SMSPROXY_", "VONAGE_", "GUNICORN_", "CELERY_"))}
        env.update({
            "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT),
            "VONAGE_SIGNATURE_SECRET": SECRET, "VONAGE_SIGNATURE_METHOD": METHOD.value,
            "SMSPROXY_API_TOKENS": "ack-0123456789abcdef0123456789abcdef",
            "SMSPROXY_PUBLISH_TIMEOUT_SECONDS": str(TIMEOUT),
            "GUNICORN_WORKER_CLASS": worker_class, "GUNICORN_WORKERS": "1",
        })
        if broker_url:
            env["CELERY_BROKER_URL"] = broker_url
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "web.wsgi:app", "--config",
             str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{self.port}"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, "gunicorn exited"
            try:
                requests.get(self.url, timeout=1)
                return
            except requests.RequestException:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)

    def post(self, message_id: str) -> requests.Response:
        return requests.post(self.url, data=urllib.parse.urlencode(signed(message_id)),
                             headers={"Content-Type": "application/x-www-form-urlencoded"},
                             timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _message_ids(client: redis.Redis) -> list[str]:
    """The messageIds of the jobs on the queue (kombu's envelope: a base64 body)."""
    ids = []
    for raw in client.lrange(QUEUE, 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.append(args[0]["messageId"])
    return ids


@pytest.mark.parametrize("worker_class", CLASSES)
def test_a_webhook_is_acknowledged_once_its_job_is_in_redis(store, worker_class):
    web = Web(worker_class, store.url)
    client = redis.Redis.from_url(store.url)
    try:
        answer = web.post("m-1")
        # read the moment the answer came: the job is already there
        queued = client.llen(QUEUE)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "queued"}
        assert queued == 1
        again = web.post("m-1")
        assert again.status_code == 200 and again.json() == {"status": "duplicate"}
        assert client.llen(QUEUE) == 1

        # many at once, each id twice: a green (or threaded) server queues each exactly once
        ids = [f"c-{n}" for n in range(40)]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(web.post, ids + ids))
        assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
        assert sorted(a.json()["status"] for a in answers).count("queued") == len(ids)
        assert sorted(_message_ids(client)) == sorted(["m-1", *ids])
    finally:
        client.close()
        web.stop()


@pytest.mark.parametrize("worker_class", CLASSES)
def test_a_hung_redis_is_a_quick_503_and_the_retry_queues_it_once(store, worker_class):
    web = Web(worker_class, store.url)
    client = redis.Redis.from_url(store.url)
    try:
        assert web.post("warm").status_code == 200
        store.pause()  # connections stay open and nothing answers
        started = time.monotonic()
        try:
            answer = web.post("m-hung")
            took = time.monotonic() - started
        finally:
            store.resume()
        assert answer.status_code == 503, answer.text
        assert took < BOUND, f"{took:.2f} s"
        # Vonage retries: the claim of the hung attempt may still be held (503 in_progress),
        # then the retry is queued or finds the hung attempt's job: either way, one job
        deadline = time.monotonic() + 15
        while (retry := web.post("m-hung")).status_code != 200:
            assert retry.status_code == 503, retry.text
            assert time.monotonic() < deadline, "the retry was never acknowledged"
            time.sleep(0.3)
        assert sorted(_message_ids(client)) == ["m-hung", "warm"]
    finally:
        client.close()
        web.stop()


@pytest.mark.parametrize("worker_class", CLASSES)
def test_rabbitmq_confirms_the_job_before_the_answer(store, worker_class):
    with private_vhost(f"gunicorn-{worker_class}") as broker_url:
        web = Web(worker_class, store.url, broker_url)
        try:
            answer = web.post("r-1")
            taken = drain(broker_url)
            assert answer.status_code == 200 and answer.json() == {"status": "queued"}
            assert [t["id"] for t in taken] == ["r-1"]
            again = web.post("r-1")
            assert again.status_code == 200 and again.json() == {"status": "duplicate"}
            assert drain(broker_url) == []
        finally:
            web.stop()

"""Bad input at scale against a running stack (gunicorn, one Celery worker, Redis, the sandbox):
over 5,000 generated requests to the webhooks (GET, form and JSON; signed and unsigned) and to
/v1 (schemathesis, from the OpenAPI document, valid and invalid). No 5xx at all (no dependency is
down), and afterwards no poisoned task loops: the broker queues drain and stay empty, and the
worker is alive and still relays a normal text."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from devtools.stack import API_TOKEN
from shared.settings import SignatureMethod
from shared.signatures import sign
from tests.reliability.harness import (
    broker_backlog,
    check_exactly_once,
    open_conversations,
    relay_sends,
    reliability_stack,
    run_stream,
)
from web.openapi import openapi_document

pytestmark = pytest.mark.reliability

SECRET = "dev-signature-secret"  # the stack's default (sha256)
WEBHOOK_REQUESTS = 3600
V1_REQUESTS = 1600
BOUNDED = dict(derandomize=True, database=None, deadline=None, phases=[Phase.generate],
               suppress_health_check=list(HealthCheck))

KNOWN = ["msisdn", "to", "messageId", "text", "type", "keyword", "message-timestamp",
         "concat", "concat-ref", "concat-total", "concat-part", "status", "err-code", "scts",
         "network-code", "price", "client-ref", "api-key", "nonce", "timestamp", "sig"]


def _values(numbers: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.sampled_from(numbers),
        st.from_regex(r"[0-9]{1,20}", fullmatch=True),
        st.sampled_from(["true", "false", "0", "1", "-1", "99999999999999999999", "", "NaN",
                         "delivered", "failed", "text", "unicode", "\u0663", "\x00", "1e9"]),
        st.integers(-5, 300).map(str),
        st.just("y" * 9000),  # over the 8 KB a value may have
    )


@st.composite
def webhooks(draw, numbers: list[str]):
    path = draw(st.sampled_from(["/webhooks/inbound-sms", "/webhooks/delivery-receipt"]))
    keys = draw(st.lists(st.sampled_from(KNOWN) | st.text(min_size=1, max_size=12),
                         max_size=14, unique=True))
    if draw(st.booleans()):  # mostly well-formed: the fields a real webhook has
        keys = list(dict.fromkeys(["msisdn", "to", "messageId", *keys]))
    params = {k: draw(_values(numbers)) for k in keys}
    if "messageId" in params and draw(st.booleans()):
        params["messageId"] = draw(st.from_regex(r"[0-9A-F]{18}", fullmatch=True))
    how = draw(st.sampled_from(["get", "form", "json", "json-typed", "raw"]))
    signing = draw(st.sampled_from(["signed", "unsigned", "bad", "stale"]))
    if signing != "unsigned":
        params.pop("sig", None)
        params["timestamp"] = str(int(time.time()) - (4000 if signing == "stale" else 0))
        params["nonce"] = draw(st.text(min_size=1, max_size=8))
        params["sig"] = sign(params, SECRET if signing != "bad" else "wrong",
                             SignatureMethod.SHA256)
    body: object = params
    if how == "json-typed":  # JSON values of every type, signed over their string forms
        body = {k: draw(st.sampled_from([v, None, True, 7, 1.5, [v], {"k": v}])) if k != "sig"
                else v for k, v in params.items()}
    raw = draw(st.sampled_from([b"{", b"[]", b"\xff\xfe", b"a=1&a=2&&=", b"null", b"{}"]))
    return path, how, params, body, raw


def _call(session: requests.Session, url: str, how: str, params, body, raw):
    if how == "get":
        return session.get(url, params=params, timeout=10)
    if how == "form":
        return session.post(url, data=params, timeout=10)
    if how in ("json", "json-typed"):
        return session.post(url, data=json.dumps(body), timeout=10,
                            headers={"Content-Type": "application/json"})
    content_type = "application/json" if raw[:1] in b"{[n" else "application/octet-stream"
    return session.post(url, data=raw, timeout=10, headers={"Content-Type": content_type})


def test_generated_requests_never_5xx_and_leave_no_poisoned_task(tmp_path):
    began = time.monotonic()
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    with reliability_stack(tmp_path, workers=1) as stack:
        conversations = open_conversations(stack, 2)
        numbers = [n for c in conversations for n in (c.a, c.b, c.proxy_a, c.proxy_b)]
        session = requests.Session()
        session.trust_env = False

        def record(label: str, response: requests.Response) -> None:
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                server_errors.append(f"{label}: {response.status_code} {response.text[:200]}")

        @settings(max_examples=WEBHOOK_REQUESTS, **BOUNDED)
        @given(webhooks(numbers))
        def fuzz_webhooks(request) -> None:
            path, how, params, body, raw = request
            record(f"{how} {path} {params!r:.200}",
                   _call(session, stack.web_url + path, how, params, body, raw))

        fuzz_webhooks()

        schema = schemathesis.openapi.from_dict(openapi_document())
        operations = [r.ok() for r in schema.get_all_operations()]
        cases = st.one_of([op.as_strategy(generation_mode=mode)
                           for op in operations for mode in GenerationMode])
        auth = st.sampled_from([{"Authorization": f"Bearer {API_TOKEN}"}] * 4 + [{}])

        @settings(max_examples=V1_REQUESTS, **BOUNDED)
        @given(cases, auth)
        def fuzz_v1(case, headers) -> None:
            try:
                response = case.call(base_url=stack.web_url, session=session, headers=headers)
            except requests.exceptions.InvalidHeader:
                return  # requests refuses to send the header; nothing reached the server
            record(f"{case.operation.label} {case.path_parameters} {case.query}", response)

        fuzz_v1()
        fuzz_seconds = time.monotonic() - began
        total = sum(statuses.values())

        # No poisoned task is looping: the queues drain to empty and stay there.
        drained_at, backlog = _drained(stack)
        tasks_before = _tasks_received(stack)
        time.sleep(5)
        still = broker_backlog(stack)
        tasks_after = _tasks_received(stack)
        assert stack.processes["worker1"].poll() is None, "the worker died"
        # and the worker still relays a normal text, exactly once
        earlier = set(relay_sends(stack))  # fuzzed texts on a live route are relayed too
        normal = run_stream(stack, conversations, 4, rate=4)
        relayed = check_exactly_once(stack, normal, timeout=30, before=earlier)
        line = (f"RELIABILITY fuzz: requests={total} (webhooks {WEBHOOK_REQUESTS}, /v1 "
                f"{total - WEBHOOK_REQUESTS}) statuses={dict(sorted(statuses.items()))} "
                f"5xx={len(server_errors)} queues_drained_in={drained_at:.1f}s "
                f"tasks_in_5s_after_drain={tasks_after - tasks_before} "
                f"normal_relay={relayed.describe()} runtime={time.monotonic() - began:.1f}s "
                f"(fuzzing {fuzz_seconds:.1f}s)")
        print(f"\n{line}")
    assert not server_errors, server_errors[:10]
    assert total >= 5000, line
    assert all(n == 0 for n in backlog.values()), backlog
    assert all(n == 0 for n in still.values()), still
    assert tasks_after == tasks_before, line
    assert relayed.ok, relayed.details()


def _drained(stack, timeout: float = 30.0) -> tuple[float, dict[str, int]]:
    started = time.monotonic()
    while True:
        backlog = broker_backlog(stack)
        if all(n == 0 for n in backlog.values()) or time.monotonic() - started > timeout:
            return time.monotonic() - started, backlog
        time.sleep(0.5)


def _tasks_received(stack) -> int:
    return sum(log.read_text(errors="replace").count("] received")
               for log in stack.logs.glob("worker*.log"))


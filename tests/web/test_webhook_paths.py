"""The webhooks' two renderings (web/webhooks.py): the WSGI path for form POSTs and Flask's views
give the same answers, headers, counts and log context, and what the WSGI path does not take
reaches Flask unchanged."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder, run_wsgi_app

from shared.logging import bind_log_context, log_context
from shared.metrics import Counters
from shared.settings import SignatureMethod
from shared.signatures import safe_parameter_names, sign
from tests.doubles import BadPublisher, FakePublisher
from web.app import MAX_REQUEST_BYTES, create_app
from web.form_body import FORM
from web.services import flush_timings
from web.webhooks import FormPostPath

ROOT = Path(__file__).resolve().parents[2]
SECRET = "paths-s3cret"  # noqa: S105 (signs test traffic only)
INBOUND = "/webhooks/inbound-sms"
RECEIPT = "/webhooks/delivery-receipt"


class _Recorder:
    """Flask's `wsgi_app` behind FormPostPath, counting the requests handed to it."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.calls += 1
        return self.app(environ, start_response)  # type: ignore[no-any-return]


class _Side:
    """One app over a store of its own, called either through FormPostPath or past it."""

    def __init__(self, make_settings: Callable[..., Any], publisher: Any, *, fast: bool,
                 server: fakeredis.FakeServer | None = None, **env: str) -> None:
        self.server = server or fakeredis.FakeServer()
        self.store = fakeredis.FakeRedis(server=self.server, decode_responses=True)
        self.publisher = publisher
        self.app = create_app(
            make_settings(**{"VONAGE_SIGNATURE_SECRET": SECRET,
                             "VONAGE_SIGNATURE_METHOD": SignatureMethod.SHA256.value, **env}),
            redis_client=self.store, publisher=publisher)
        path = self.app.wsgi_app
        assert isinstance(path, FormPostPath)
        self.flask = _Recorder(path.app)
        path.app = self.flask
        self.wsgi = path if fast else self.flask

    def call(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes,
                                                       dict[str, str]]:
        app_iter, status, headers = run_wsgi_app(self.wsgi, environ)
        body = b"".join(app_iter)
        return status, list(headers.items()), body, dict(log_context())

    def counts(self) -> dict[str, float]:
        """Every counter, and the timings' counts by kind and code (not their seconds)."""
        flush_timings(self.app)
        return {k: v for k, v in Counters(self.store).snapshot().items()
                if "duration" not in k or "_count" in k}


def _signed(params: dict[str, str]) -> dict[str, str]:
    signed = {**params, "timestamp": str(int(time.time()))}
    signed["sig"] = sign(signed, SECRET, SignatureMethod.SHA256)
    return signed


_INBOUND = {"msisdn": "447400123456", "to": "447700900100", "text": "hi", "type": "text"}
_RECEIPT = {"msisdn": "447400123456", "to": "447700900100", "status": "delivered"}

_IDS = st.sampled_from(["m-1", "m-2", "m-1", "", "x" * 300])  # repeats: duplicates
_TAMPER = st.sampled_from(["sig", "msisdn", "to", "timestamp", "type", "text"])
_VALUES = st.sampled_from(["", "0", "not-a-number", "4474001234567890123", "é", "%FF",
                           "a&b=c", "x" * 9000, "2026-11-24 12:00:00", "binary", "unicode"])
_NAMES = st.sampled_from(["extra", "a.b", "a&to", "näme", "", "api-key", "concat", "status"])


@st.composite
def _webhooks(draw: st.DrawFn) -> bytes:
    """A form body: signed, unsigned, tampered with, hostile or plain bytes."""
    receipt = draw(st.booleans())
    params = dict(_RECEIPT if receipt else _INBOUND)
    params["messageId"] = draw(_IDS)
    for name, value in draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=2)):
        params[name] = value
    if draw(st.integers(0, 3)) > 0 and safe_parameter_names(params):
        params = _signed(params)
    if draw(st.integers(0, 3)) == 0:
        params[draw(_TAMPER)] = draw(_VALUES)
    if draw(st.integers(0, 9)) == 0:
        params.update({f"f{n}": "1" for n in range(70)})  # over MAX_FIELDS
    body = urllib.parse.urlencode(params).encode()
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.binary(max_size=80))
    return body


_OTHER_TYPES = st.sampled_from([f"{FORM}; charset=utf-8", f" {FORM.upper()} ;x=1",
                                f"{FORM}x", "application/json", "text/plain",
                                "multipart/form-data", ""])


def _rarely(draw: st.DrawFn, common: Any, others: st.SearchStrategy[Any]) -> Any:
    """`common` three times in four, else one of `others`: most requests are the common case
    the WSGI path takes, so that a difference there is found."""
    return common if draw(st.integers(0, 3)) > 0 else draw(others)


@st.composite
def _requests(draw: st.DrawFn) -> dict[str, Any]:
    """A webhook request's parts (built into an environ by `_environ`, outside the strategy:
    werkzeug's builder draws from `random`)."""
    return {
        "body": draw(_webhooks()),
        "path": draw(st.sampled_from([INBOUND, RECEIPT]))
        if draw(st.integers(0, 9)) else draw(st.sampled_from([f"{INBOUND}/", "/webhooks/x"])),
        "method": _rarely(draw, "POST", st.sampled_from(["GET", "PUT", "HEAD"])),
        "query": _rarely(draw, "", st.sampled_from(["a=1", "msisdn=447400999999", "&"])),
        "type": _rarely(draw, FORM, _OTHER_TYPES),
        "length": _rarely(draw, "same", st.sampled_from(["none", "short", "long", "huge",
                                                         "junk"])),
        "terminated": draw(st.booleans()),  # as gunicorn serves it
        "chunked": draw(st.integers(0, 9)) == 0,
    }


def _environ(spec: dict[str, Any]) -> dict[str, Any]:
    body = spec["body"]
    environ = EnvironBuilder(path=spec["path"], method=spec["method"],
                             query_string=spec["query"], data=body,
                             content_type=spec["type"]).get_environ()
    length = spec["length"]
    if length == "none":
        environ.pop("CONTENT_LENGTH", None)
    elif length == "short":
        environ["CONTENT_LENGTH"] = str(max(0, len(body) - 3))
    elif length == "long":
        environ["CONTENT_LENGTH"] = str(len(body) + 3)  # the client goes away: a 400
    elif length == "huge":
        environ["CONTENT_LENGTH"] = str(MAX_REQUEST_BYTES + 1)  # werkzeug's 413
    elif length == "junk":
        environ["CONTENT_LENGTH"] = "12a"
    if spec["terminated"]:
        environ["wsgi.input_terminated"] = True
    if spec["chunked"]:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    return environ


def _copy(environ: dict[str, Any]) -> dict[str, Any]:
    import io

    data = environ["wsgi.input"].getvalue()
    return {**environ, "wsgi.input": io.BytesIO(data)}


def _without_received_at(published: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    return [(task, {k: v for k, v in payload.items() if k != "received_at"})
            for task, payload in published]


# two apps per example (~0.3 s): fewer examples, several requests each
@settings(max_examples=50, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(_requests(), min_size=1, max_size=10))
@pytest.mark.parametrize("signed", [True, False])
def test_both_paths_give_the_same_answers_headers_and_counts(make_settings, signed, specs):
    env = {} if signed else {"VONAGE_SIGNATURE_SECRET": ""}  # unsigned webhooks accepted
    fast = _Side(make_settings, FakePublisher(), fast=True, **env)
    flask = _Side(make_settings, FakePublisher(), fast=False, **env)
    for spec in specs:
        environ = _environ(spec)
        bind_log_context(message_id="from-an-earlier-request")
        fast_answer = fast.call(_copy(environ))
        bind_log_context(message_id="from-an-earlier-request")
        assert fast_answer == flask.call(_copy(environ))
    assert _without_received_at(fast.publisher.published) == _without_received_at(
        flask.publisher.published)
    assert fast.counts() == flask.counts()


def test_the_common_case_takes_the_wsgi_path_and_is_acknowledged(make_settings):
    fast = _Side(make_settings, FakePublisher(), fast=True)
    for path, params in ((INBOUND, _INBOUND), (RECEIPT, _RECEIPT)):
        environ = EnvironBuilder(path=path, method="POST", content_type=FORM,
                                 data=urllib.parse.urlencode(
                                     _signed({**params, "messageId": "m-9"}))).get_environ()
        status, headers, body, context = fast.call(environ)
        assert status == "200 OK" and body in (b'{"status":"queued"}\n',  # inbound
                                              b'{"status":"recorded"}\n')  # receipt
        assert headers == [("Content-Type", "application/json"),
                           ("Content-Length", str(len(body)))]
        assert context == {"message_id": "m-9"}
    assert fast.flask.calls == 0
    assert len(fast.publisher.published) == 1


class _Failing(FakePublisher):
    def publish(self, task: Any, payload: Any, *, job: str | None = None) -> None:
        raise RuntimeError("a bug")


class _StoreBroker(BadPublisher):
    broker_is_store = True


@pytest.mark.parametrize("case", ["store", "queue", "queue_is_store", "unexpected"])
def test_outages_and_bugs_answer_the_same_on_both_paths(make_settings, caplog, case):
    sides = []
    for fast in (True, False):
        server = fakeredis.FakeServer()
        publisher: FakePublisher | BadPublisher = {
            "store": FakePublisher, "queue": BadPublisher, "queue_is_store": _StoreBroker,
            "unexpected": _Failing}[case]()
        side = _Side(make_settings, publisher, fast=fast, server=server)
        if case == "store":
            server.connected = False
        sides.append(side)
    body = urllib.parse.urlencode(_signed({**_INBOUND, "messageId": "m-5"}))
    answers = []
    for side in sides:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            answers.append(side.call(EnvironBuilder(
                path=INBOUND, method="POST", content_type=FORM, data=body).get_environ()))
        # the type and the trace, never the request's numbers
        assert "447400123456" not in caplog.text and "447700900100" not in caplog.text
        if case == "unexpected":
            assert "unexpected error: RuntimeError" in caplog.text
    assert answers[0] == answers[1]
    status, headers, _, _ = answers[0]
    assert status == ("500 INTERNAL SERVER ERROR" if case == "unexpected"
                      else "503 SERVICE UNAVAILABLE")
    assert (("Retry-After", "5") in headers) == (case != "unexpected")
    assert sides[0].flask.calls == 0
    counts = []
    for side in sides:
        side.server.connected = True  # the timings kept meanwhile are written once it is back
        counts.append(side.counts())
    assert counts[0] == counts[1]
    code = status.split()[0]
    assert counts[0][
        f'smsproxy_webhook_duration_seconds_count{{code="{code}",kind="inbound"}}'] == 1


@pytest.mark.parametrize("case", ["json", "multipart", "probe", "query", "chunked",
                                  "chunked_terminated", "put", "too_large"])
def test_what_the_wsgi_path_leaves_reaches_flask_and_works(make_settings, case):
    fast = _Side(make_settings, FakePublisher(), fast=True)
    params = _signed({**_INBOUND, "messageId": f"m-{case}"})
    form = urllib.parse.urlencode(params)
    expect = 200
    if case == "json":
        builder = EnvironBuilder(path=INBOUND, method="POST", json=params)
    elif case == "multipart":
        builder = EnvironBuilder(path=INBOUND, method="POST", data=params,
                                 content_type="multipart/form-data")
    elif case == "probe":
        builder = EnvironBuilder(path=INBOUND, method="GET")
    elif case == "query":
        builder = EnvironBuilder(path=INBOUND, method="POST", query_string=form,
                                 content_type=FORM)
    elif case.startswith("chunked"):
        builder = EnvironBuilder(path=INBOUND, method="POST", data=form, content_type=FORM,
                                 headers={"Transfer-Encoding": "chunked"})
    elif case == "put":
        builder = EnvironBuilder(path=INBOUND, method="PUT", data=form, content_type=FORM)
        expect = 405
    else:
        builder = EnvironBuilder(path=INBOUND, method="POST", content_type=FORM,
                                 data=form + "&pad=" + "x" * MAX_REQUEST_BYTES)
        expect = 413
    environ = builder.get_environ()
    if case.startswith("chunked"):
        del environ["CONTENT_LENGTH"]
        if case == "chunked_terminated":
            environ["wsgi.input_terminated"] = True  # gunicorn's dechunked stream
        else:
            expect = 401  # werkzeug reads no body of unknown length: no signature
    status, _, body, _ = fast.call(environ)
    assert fast.flask.calls == 1
    assert int(status.split()[0]) == expect, body
    if expect == 200:
        assert body in (b'{"status":"queued"}\n', b'{"status":"ok"}\n')
        queued = [] if case == "probe" else [params["messageId"]]
        assert [p["messageId"] for _, p in fast.publisher.published] == queued


def test_with_tracing_on_every_webhook_takes_flasks_path():
    # tracing is process-wide once on (shared/tracing.py): a process of its own
    script = (
        "import fakeredis\n"
        "from tests.conftest import build_settings\n"
        "from tests.doubles import FakePublisher\n"
        "from web.app import create_app\n"
        "from web.webhooks import FormPostPath\n"
        "app = create_app(build_settings(OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:9'),\n"
        "                 redis_client=fakeredis.FakeRedis(decode_responses=True),\n"
        "                 publisher=FakePublisher())\n"
        "assert not isinstance(app.wsgi_app, FormPostPath), app.wsgi_app\n"
        "data = {'msisdn': '447400123456', 'to': '447700900100', 'messageId': 'm', 'text': 'hi'}\n"
        "print(app.test_client().post('/webhooks/inbound-sms', data=data).status_code)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT,  # noqa: S603
                         env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == "200"

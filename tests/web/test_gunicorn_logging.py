import io
import json
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from web.gunicorn_logging import ProxyLogger

QUERY = "msisdn=447700900001&to=447700900002&messageId=m-1&text=Hi%2C+north+entrance"


def _environ():
    return {"REQUEST_METHOD": "GET", "RAW_URI": f"/webhooks/inbound-sms?{QUERY}",
            "PATH_INFO": "/webhooks/inbound-sms", "QUERY_STRING": QUERY,
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "HTTP_REFERER": f"https://x.example/?{QUERY}"}


def _logger(monkeypatch, log_format: str, *args: str) -> ProxyLogger:
    monkeypatch.setenv("SMSPROXY_LOG_FORMAT", log_format)
    config = Config()
    for arg in args:
        name, value = arg.split("=", 1)
        config.set(name, value)
    return ProxyLogger(config)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_access_log_never_holds_the_query_values(monkeypatch, log_format):
    logger = _logger(monkeypatch, log_format, "accesslog=-",
                     'access_log_format=%(r)s %(q)s %(f)s %({query_string}e)s %({raw_uri}e)s')
    stream = io.StringIO()
    for handler in logger.access_log.handlers:
        handler.setStream(stream)
    response = SimpleNamespace(status="200 OK", headers=[], sent=10)
    request = SimpleNamespace(headers=[])
    logger.access(response, request, _environ(), SimpleNamespace(seconds=0, microseconds=1))
    lines = stream.getvalue().splitlines()
    assert lines, "the access log wrote nothing"
    line = lines[-1]
    for secret in ("447700900001", "447700900002", "north", "Hi"):
        assert secret not in line
    assert "msisdn=…" in line
    if log_format == "json":
        assert json.loads(line)["message"].startswith("GET /webhooks/inbound-sms?msisdn=…")


def test_error_lines_are_json_and_scrubbed(monkeypatch):
    logger = _logger(monkeypatch, "json")
    stream = io.StringIO()
    for handler in logger.error_log.handlers:
        handler.setStream(stream)
    logger.error_log.log(logging.ERROR, "Error handling request %s", f"/x?{QUERY}")
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["logger"] == "gunicorn.error" and line["level"] == "ERROR"
    assert "447700900001" not in line["message"]


def test_an_invalid_format_stops_gunicorn_naming_the_variable(monkeypatch):
    from shared.settings import SettingsError

    with pytest.raises(SettingsError, match="SMSPROXY_LOG_FORMAT"):
        _logger(monkeypatch, "yaml")

"""The handsets page, served by a real sandbox process: escaping, forms, guards, loopback only."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from webhook_receiver import Receiver

from sandbox.cli import build_parser, config_from_args
from sandbox.config import SandboxConfig, is_loopback
from sandbox.testing import SandboxProcess, run_sandbox

VIRTUAL = "447700900100"
RIDER = "447400123456"
DRIVER = "447400654321"
EVERYWHERE = "0.0.0.0"  # noqa: S104 - the address the page must refuse
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def page_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    with run_sandbox(
        tmp_path_factory.mktemp("handsets"), handsets_port=0, phones=f"{RIDER},{DRIVER}",
        retry_base_seconds=0.05, retry_max_attempts=2,
    ) as sb:
        yield sb


@pytest.fixture
def hs(page_sandbox: SandboxProcess) -> SandboxProcess:
    page_sandbox.client.reset()
    return page_sandbox


@pytest.fixture
def browser_session(hs: SandboxProcess) -> Iterator[requests.Session]:
    """A session that keeps the page's cookie (its notices), as a browser does."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


def page(hs: SandboxProcess, session: requests.Session) -> str:
    response = session.get(f"{hs.handsets_url}/handsets", timeout=5)
    assert response.status_code == 200
    return response.text


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def proxy_sends(hs: SandboxProcess, to: str, text: str) -> None:
    """What the proxy does: /sms/json from an owned number to a handset."""
    response = hs.client._session.post(f"{hs.url}/sms/json", timeout=5, data={
        "api_key": "sandbox-key", "api_secret": "sandbox-secret",
        "from": VIRTUAL, "to": to, "text": text,
    })
    assert response.json()["messages"][0]["status"] == "0"


def test_the_page_lists_the_configured_phones_and_the_virtual_numbers(
    hs: SandboxProcess, browser_session: requests.Session
) -> None:
    hs.client.add_owned([{"country": "GB", "msisdn": VIRTUAL}])
    html = page(hs, browser_session)
    assert f'id="phone-{RIDER}"' in html and f'id="phone-{DRIVER}"' in html
    assert f'<option value="{VIRTUAL}">' in html
    # no proxy API given: no form that could not work
    assert "New conversation" not in html


def test_hostile_bodies_render_as_text(
    hs: SandboxProcess, browser_session: requests.Session
) -> None:
    hs.client.add_owned([{"country": "GB", "msisdn": VIRTUAL}])
    proxy_sends(hs, RIDER, HOSTILE)
    hs.client.send_from_handset(DRIVER, VIRTUAL, HOSTILE)

    html = page(hs, browser_session)
    live = browser_session.get(f"{hs.handsets_url}/handsets/live", timeout=5).json()

    escaped = (
        "&lt;script&gt;window.pwned = 1&lt;/script&gt;&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"
    )
    fragments = [html, *(p[part] for p in live["phones"] for part in ("timeline", "card"))]
    for fragment in fragments:
        assert "<script>window" not in fragment and "<img src=x" not in fragment
    assert html.count(escaped) == 2  # received by the rider, sent by the driver
    # the only script is the page's own file, and the policy forbids any other
    response = browser_session.get(f"{hs.handsets_url}/handsets", timeout=5)
    assert re.findall(r"<script[^>]*>", response.text) == [
        '<script src="/handsets/static/handsets.js" defer>'
    ]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_a_phone_texts_through_the_form_as_an_inbound_webhook(
    hs: SandboxProcess, browser_session: requests.Session, receiver: Receiver
) -> None:
    hs.client.add_owned([{"country": "GB", "msisdn": VIRTUAL, "moHttpUrl": receiver.url}])
    token = csrf(page(hs, browser_session))

    response = browser_session.post(
        f"{hs.handsets_url}/handsets/{RIDER}/send",
        data={"csrf": token, "to": f"+{VIRTUAL}", "text": "hello from the page"},
        timeout=5, allow_redirects=False,
    )

    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/handsets#phone-{RIDER}")
    [webhook] = receiver.wait_for(1)
    assert webhook.params["msisdn"] == RIDER and webhook.params["to"] == VIRTUAL
    assert webhook.params["text"] == "hello from the page"
    html = page(hs, browser_session)
    assert "hello from the page" in html and f"to <span class=\"number\">+{VIRTUAL}" in html


def test_a_refused_text_is_a_notice_on_the_phone(
    hs: SandboxProcess, browser_session: requests.Session
) -> None:
    token = csrf(page(hs, browser_session))
    # the redirect back to the page shows the notice once
    html = browser_session.post(
        f"{hs.handsets_url}/handsets/{RIDER}/send",
        data={"csrf": token, "to": VIRTUAL, "text": "anyone?"}, timeout=5,
    ).text
    assert f"{VIRTUAL} is not a number the account owns" in html
    assert "is not a number the account owns" not in page(hs, browser_session)
    assert hs.client.webhooks() == []


def test_phones_can_be_added_and_a_bad_number_is_refused(
    hs: SandboxProcess, browser_session: requests.Session
) -> None:
    token = csrf(page(hs, browser_session))
    added, refused = (
        browser_session.post(f"{hs.handsets_url}/handsets/phones",
                             data={"csrf": token, "number": number}, timeout=5).text
        for number in ("+44 7400 111111", "12345")
    )
    assert 'id="phone-447400111111"' in added
    assert "12345 is not a valid international number" in refused


def test_live_answers_204_until_something_changes(
    hs: SandboxProcess, browser_session: requests.Session
) -> None:
    live = f"{hs.handsets_url}/handsets/live"
    version = browser_session.get(live, timeout=5).json()["version"]
    assert browser_session.get(live, params={"since": version}, timeout=5).status_code == 204
    hs.client.add_owned([{"country": "GB", "msisdn": VIRTUAL}])
    proxy_sends(hs, DRIVER, "your ride is here")
    update = browser_session.get(live, params={"since": version}, timeout=5).json()
    [driver] = [p for p in update["phones"] if p["phone"] == DRIVER]
    assert "your ride is here" in driver["timeline"] and update["version"] != version


def test_a_post_without_the_page_token_is_refused(
    hs: SandboxProcess, browser_session: requests.Session
) -> None:
    hs.client.add_owned([{"country": "GB", "msisdn": VIRTUAL}])
    for data in ({"to": VIRTUAL, "text": "forged"}, {"csrf": "guess", "to": VIRTUAL, "text": "x"}):
        response = browser_session.post(
            f"{hs.handsets_url}/handsets/{RIDER}/send", data=data, timeout=5
        )
        assert response.status_code == 403
    assert hs.client.webhooks() == []


def test_a_foreign_host_name_is_refused(hs: SandboxProcess) -> None:
    """A name rebound to 127.0.0.1 must not let another site read the page (and its token)."""
    response = requests.get(
        f"{hs.handsets_url}/handsets", headers={"Host": "evil.example:80"}, timeout=5
    )
    assert response.status_code == 421
    for host in ("localhost", "127.0.0.1", "[::1]"):
        ok = requests.get(f"{hs.handsets_url}/handsets", headers={"Host": f"{host}:1"}, timeout=5)
        assert ok.status_code == 200, host


def test_the_page_is_off_unless_asked(tmp_path: Path) -> None:
    with run_sandbox(tmp_path) as sb:
        assert sb.handsets_url is None
        # nor is it on the Vonage listener
        assert sb.client._session.get(f"{sb.url}/handsets", timeout=5).status_code == 404


@pytest.mark.parametrize("host", [EVERYWHERE, "192.0.2.1", "example.com", "::"])
def test_the_page_binds_to_loopback_only_unless_told(host: str) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        SandboxConfig(handsets_port=0, handsets_host=host)
    assert SandboxConfig(handsets_port=0, handsets_host=host, handsets_allow_remote=True)
    # the sandbox's own listener is not the page's: compose binds it to 0.0.0.0
    assert SandboxConfig(host=host)


def test_the_cli_refuses_a_non_loopback_page(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="loopback only"),
        run_sandbox(tmp_path, handsets_port=0, handsets_host=EVERYWHERE),
    ):
        pass


def test_the_token_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_PROXY_API_TOKEN", "t" * 32)
    args = build_parser().parse_args(
        ["serve", "--handsets-port", "0", "--proxy-api-url", "http://127.0.0.1:1"]
    )
    config = config_from_args(args)
    assert config.proxy_api_token == "t" * 32 and "t" * 32 not in repr(config)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--proxy-api-token", "x"])


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
     ("localhost", True), (EVERYWHERE, False), ("10.0.0.1", False), ("localhost.evil", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback

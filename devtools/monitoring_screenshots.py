"""Screenshots of the monitoring for docs/operations.md, taken from a live dev stack.

Grafana cannot be run on the machine the docs are built on, so this renders the dashboard's own
expressions (read from deploy/grafana/smsproxy.json) in Prometheus's built-in web UI instead:

1. starts the dev stack (devtools.stack: Redis, the sandbox, web, a worker, beat) and a local
   Prometheus (deploy/prometheus/prometheus.yml's scrape job pointed at web on loopback, every
   3 s, with the metrics token; deploy/prometheus/alerts.yml as its rules; storage in a
   temporary directory);
2. plays a few minutes of bounded traffic: conversations over /v1, texts between participants
   through the sandbox's handsets, one webhook in ten delivered twice, unsigned webhooks, a
   blocked number, STOP and START, sends Vonage throttles or refuses, a burst over a
   conversation's relay cap and the account's send rate, a conversation closed while its
   people still text;
3. photographs the graph pages of six panels and the alerts page with Debian's headless
   Chromium (Playwright, never `playwright install`) into docs/images/monitoring-*.png.

Every process it starts is stopped on the way out, also on Ctrl-C or SIGTERM.

    .venv/bin/python -m devtools.monitoring_screenshots [--minutes 7]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

import requests
import yaml

from devtools.ports import free_port
from devtools.stack import ROOT, Stack, StackConfig

DASHBOARD = ROOT / "deploy" / "grafana" / "smsproxy.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
IMAGES = ROOT / "docs" / "images"
PROMETHEUS = Path("/usr/bin/prometheus")
CHROMIUM = Path("/usr/bin/chromium")
SCRAPE_SECONDS = 3

# The sandbox sells one DE number while the pool wants two: one country short of its target,
# as when Vonage has no stock, so the pool panel and the alerts page have something to show.
INVENTORY = (
    "GB:447700900100-447700900119,US:12015550100-12015550109,DE:4915123456700-4915123456700"
)
POOL_TARGETS = "GB=3,US=2,DE=2"
# (first, second) handsets of each conversation: four in GB, two in the US
PAIRS = [
    ("447400310001", "447400320001"), ("447400310002", "447400320002"),
    ("447400310003", "447400320003"), ("447400310004", "447400320004"),
    ("12015550151", "12015550161"), ("12015550152", "12015550162"),
]
TEXTS = [
    "on my way", "at the gate now", "running a few minutes late", "which entrance?",
    "the blue car outside", "thanks, see you soon", "is the address right?", "here",
]


@dataclass(frozen=True)
class Shot:
    """One screenshot: the dashboard panels (and their queries) it shows, and its file."""

    name: str
    panels: tuple[str, ...]
    # the panels' refIds to show (None: all of them)
    refs: tuple[str, ...] | None = None

    @property
    def path(self) -> Path:
        return IMAGES / f"monitoring-{self.name}.png"


SHOTS = [
    Shot("webhooks", ("Webhooks by outcome",)),
    Shot("relay-latency", ("Webhook to Vonage-accepted (relay latency)",), refs=("A", "C")),
    Shot("sends", ("Sends by outcome, and waits",)),
    Shot("queues", ("Queue depth", "Oldest job age")),
    Shot("inbound", ("Inbound: relayed and dropped",), refs=("A", "B")),
    Shot("pool", ("Pool free capacity and target",)),
]


def dashboard_expressions(shot: Shot, dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of the shot's panels, exactly as the Grafana dashboard has it."""
    panels = {panel["title"]: panel for panel in dashboard["panels"]}
    expressions: list[str] = []
    for title in shot.panels:
        if title not in panels:
            raise SystemExit(f"{DASHBOARD.name} has no panel {title!r}: update SHOTS")
        expressions += [target["expr"] for target in panels[title]["targets"]
                        if shot.refs is None or target["refId"] in shot.refs]
    return expressions


# -- Prometheus ------------------------------------------------------------------------------


def prometheus_config(web_port: int, token_file: Path | None) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with its target and token made local."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {"scrape_interval": f"{SCRAPE_SECONDS}s",
                        "evaluation_interval": f"{SCRAPE_SECONDS}s"}
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{web_port}"]}]
    job["scrape_interval"] = f"{SCRAPE_SECONDS}s"
    if token_file is None:
        job.pop("authorization", None)
    else:
        job["authorization"]["credentials_file"] = str(token_file)
    return config


@contextmanager
def run_prometheus(state: Path, web_port: int, token: str | None) -> Iterator[str]:
    """A Prometheus server on a free loopback port; yields its URL and stops it on exit."""
    state.mkdir(parents=True)
    token_file = None
    if token:
        token_file = state / "metrics-token"
        token_file.write_text(token)
        token_file.chmod(0o600)
    # the rule files beside the configuration, as in deploy/prometheus/
    config_file = state / "prometheus.yml"
    for name in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]:
        shutil.copy(PROMETHEUS_CONFIG.parent / name, state / name)
    config_file.write_text(yaml.safe_dump(prometheus_config(web_port, token_file)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(state / "prometheus.log", "ab") as log:
        process = subprocess.Popen(  # noqa: S603 (Debian's prometheus, our own arguments)
            [str(PROMETHEUS), f"--config.file={config_file}",
             f"--storage.tsdb.path={state / 'data'}", "--storage.tsdb.retention.time=1h",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_until(lambda: process.poll() is None and _ok(f"{url}/-/ready"), 30,
                   f"Prometheus not ready; log in {state / 'prometheus.log'}")
        yield url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def query(prometheus: str, expression: str) -> list[dict[str, Any]]:
    reply = requests.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=10)
    reply.raise_for_status()
    result: list[dict[str, Any]] = reply.json()["data"]["result"]
    return result


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.3)


# -- traffic ---------------------------------------------------------------------------------


@dataclass
class Conversation:
    id: str
    first: str
    second: str
    proxy_first: str  # the number `first` texts (digits)
    proxy_second: str
    open: bool = True


class Traffic:
    """Bounded, realistic traffic through the stack's API and the sandbox's handsets."""

    def __init__(self, stack: Stack) -> None:
        assert stack.sandbox is not None
        self.stack = stack
        self.sandbox = stack.sandbox.client
        self.random = random.Random(14)  # noqa: S311 (traffic shapes, not secrets)
        self.conversations: list[Conversation] = []
        self.texts = 0

    def open(self, first: str, second: str) -> Conversation:
        created = self.stack.api("POST", "/v1/conversations", {
            "participants": [{"number": f"+{first}"}, {"number": f"+{second}"}],
            "ttl_seconds": 3600,
        })
        if created.status_code != 202:
            raise RuntimeError(f"create failed: {created.status_code} {created.text}")
        body = self.stack.wait_for_status(created.json()["id"], "active")
        proxies = [p["proxy_number"].lstrip("+") for p in body["participants"]]
        conversation = Conversation(body["id"], first, second, proxies[0], proxies[1])
        self.conversations.append(conversation)
        return conversation

    def close(self, conversation: Conversation) -> None:
        self.stack.api("DELETE", f"/v1/conversations/{conversation.id}")
        conversation.open = False

    def text(self, conversation: Conversation, from_first: bool, text: str | None = None,
             duplicates: int = 1) -> None:
        """One side texts its proxy number (Vonage then posts the webhook to web)."""
        sender, proxy = ((conversation.first, conversation.proxy_first) if from_first
                         else (conversation.second, conversation.proxy_second))
        self.sandbox.send_from_handset(
            sender, proxy, text or self.random.choice(TEXTS), duplicates=duplicates)
        self.texts += 1

    def chat(self) -> None:
        """Someone in an open conversation texts; one in ten webhooks Vonage delivers twice."""
        conversation = self.random.choice([c for c in self.conversations if c.open])
        self.text(conversation, self.random.random() < 0.5,
                  duplicates=2 if self.random.random() < 0.1 else 1)

    def burst(self, conversation: Conversation, count: int, others: int) -> None:
        """`count` texts at once from one side, and `others` from each other conversation."""
        for _ in range(count):
            self.text(conversation, True)
        for other in self.conversations:
            if other.open and other is not conversation:
                for _ in range(others):
                    self.text(other, self.random.random() < 0.5)

    def unsigned_webhook(self) -> None:
        """A webhook without Vonage's signature (someone probing the endpoint): a 401."""
        requests.post(f"{self.stack.web_url}/webhooks/inbound-sms", timeout=10, data={
            "msisdn": "447400999999", "to": self.conversations[0].proxy_first,
            "messageId": secrets.token_hex(8), "text": "hello", "type": "text"})

    def block(self, number: str) -> None:
        self.stack.api("PUT", f"/v1/blocked-numbers/+{number}", {"reason": "reported"})

    def unblock(self, number: str) -> None:
        self.stack.api("DELETE", f"/v1/blocked-numbers/+{number}")

    def refuse_sends(self) -> None:
        """Vonage throttles two sends (retried) and refuses two as invalid (failed)."""
        self.sandbox.set_faults(sms_script=["1", "0", "6", "1", "0", "0", "6"])


def play(traffic: Traffic, seconds: float) -> None:
    """Steady chat about every 1.5 s, with the incidents of a busy day at set moments."""
    conversations = [traffic.open(first, second) for first, second in PAIRS]
    first, fourth, fifth, sixth = (conversations[i] for i in (0, 3, 4, 5))
    events: list[tuple[float, str, Callable[[], object]]] = [
        (0.10, "an unsigned webhook", traffic.unsigned_webhook),
        (0.20, "a participant blocked", lambda: traffic.block(fifth.first)),
        (0.30, "STOP", lambda: traffic.text(fourth, False, "STOP")),
        (0.40, "Vonage refuses sends", traffic.refuse_sends),
        (0.45, "an unsigned webhook", traffic.unsigned_webhook),
        (0.50, "a burst over the relay cap and the send rate",
         lambda: traffic.burst(first, 14, 6)),
        (0.60, "a conversation closed", lambda: traffic.close(sixth)),
        (0.62, "texts after the close", lambda: traffic.text(sixth, True, "still there?")),
        (0.65, "the block lifted", lambda: traffic.unblock(fifth.first)),
        (0.70, "START", lambda: traffic.text(fourth, False, "START")),
        (0.72, "a new conversation", lambda: traffic.open("447400310009", "447400320009")),
        (0.75, "texts after the close", lambda: traffic.text(sixth, False, "hello?")),
        (0.80, "Vonage refuses sends", traffic.refuse_sends),
        (0.85, "a smaller burst", lambda: traffic.burst(conversations[1], 8, 3)),
        (0.90, "an unsigned webhook", traffic.unsigned_webhook),
    ]
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        while events and events[0][0] * seconds <= elapsed:
            _, what, event = events.pop(0)
            print(f"  {elapsed:5.0f} s  {what}", flush=True)
            event()
        traffic.chat()
        traffic.stack._check_alive()
        time.sleep(traffic.random.uniform(1.0, 2.0))
    traffic.sandbox.wait_until_idle(timeout=60)


# -- screenshots -----------------------------------------------------------------------------


def graph_url(prometheus: str, expressions: list[str], range_minutes: int) -> str:
    """Prometheus's own graph page (Debian ships its classic UI), one panel per expression."""
    params: dict[str, str] = {}
    for index, expression in enumerate(expressions):
        params |= {f"g{index}.expr": expression, f"g{index}.tab": "0",
                   f"g{index}.stacked": "0", f"g{index}.range_input": f"{range_minutes}m"}
    return f"{prometheus}/classic/graph?{urlencode(params)}"


def screenshots(prometheus: str, range_minutes: int) -> list[Path]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    dashboard = json.loads(DASHBOARD.read_text())
    IMAGES.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            for shot in SHOTS:
                expressions = dashboard_expressions(shot, dashboard)
                page.goto(graph_url(prometheus, expressions, range_minutes))
                # each panel draws its chart (an SVG) once its query has answered
                try:
                    page.wait_for_function(
                        "n => document.querySelectorAll('.graph_area svg').length >= n",
                        arg=len(expressions), timeout=20_000)
                except PlaywrightTimeout:  # a query with no data draws nothing: say so
                    print(f"  {shot.name}: not every panel drew a chart", file=sys.stderr)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(500)
                unpin_navbar(page)
                page.screenshot(path=str(shot.path), full_page=True)
                taken.append(shot.path)
            page.goto(f"{prometheus}/classic/alerts")
            page.wait_for_load_state("networkidle")
            # open the alerts that are pending or firing, to show their labels
            active = "tr.alert_header.alert-warning, tr.alert_header.alert-danger"
            for header in page.locator(active).all():
                header.click()
            page.wait_for_timeout(300)
            unpin_navbar(page)
            alerts = IMAGES / "monitoring-alerts.png"
            page.screenshot(path=str(alerts), full_page=True)
            taken.append(alerts)
        finally:
            browser.close()
    return taken


def unpin_navbar(page: Any) -> None:
    """The fixed navbar would be drawn where the viewport was, mid-page, in a full-page shot."""
    page.add_style_tag(content=".navbar.fixed-top { position: absolute !important; }")


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # longer than the dashboard's 5 m rate windows, so the graphs reach a steady state
    parser.add_argument("--minutes", type=float, default=7.0, help="how long traffic runs")
    args = parser.parse_args(argv)
    for needed, package in ((PROMETHEUS, "prometheus"), (CHROMIUM, "chromium")):
        if not needed.exists():
            print(f"no {needed}: `make promtool browser` installs Debian's {package}",
                  file=sys.stderr)
            return 1

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    state = Path(tempfile.mkdtemp(prefix="smsproxy-monitoring-"))
    token = secrets.token_hex(16)
    config = StackConfig(
        state_dir=state / "stack", pool_targets=POOL_TARGETS, beat=True,
        # Vonage's answer takes 150 ms, as a real one takes 100-300
        sandbox_options={"inventory": INVENTORY, "latency_ms": 150},
        extra_env={
            "SMSPROXY_METRICS_TOKEN": token,
            "SMSPROXY_POOL_MAINTENANCE_SECONDS": "15",
            # one process per worker: a burst queues, so the queue panels have one to show
            "SMSPROXY_WORKER_CONCURRENCY": "1",
            # an account limit low enough for a burst to queue and wait
            "SMSPROXY_SEND_RATE_PER_SECOND": "4",
            "SMSPROXY_SEND_BURST": "4",
            "SMSPROXY_OUT_OF_SESSION_REPLY": "This conversation has ended.",
        },
    )
    try:
        print("starting the dev stack ...", flush=True)
        with Stack(config) as stack:
            stack.provision_pool(expected=6)
            with run_prometheus(state / "prometheus", stack.web_port,
                                stack.env.get("SMSPROXY_METRICS_TOKEN")) as prometheus:
                print(f"Prometheus at {prometheus}; waiting for its first scrapes ...",
                      flush=True)
                wait_until(lambda: any(s["value"][1] == "1" for s in
                                       query(prometheus, 'up{job="smsproxy"}')),
                           30, "Prometheus cannot scrape web")
                started = time.monotonic()
                print(f"traffic for {args.minutes:g} minutes ...", flush=True)
                traffic = Traffic(stack)
                play(traffic, args.minutes * 60)
                time.sleep(3 * SCRAPE_SECONDS)  # the last of it scraped
                print(f"{traffic.texts} texts sent; taking screenshots ...", flush=True)
                range_minutes = math.ceil((time.monotonic() - started) / 60) + 1
                for path in screenshots(prometheus, range_minutes):
                    print(f"  {path.relative_to(ROOT)}")
    except KeyboardInterrupt:
        shutil.rmtree(state, ignore_errors=True)
        print("\nstopped; everything it started is stopped too", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"\nfailed: {exc}\n(logs kept in {state})", file=sys.stderr)
        return 1
    shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale-out, measured: the relay with 1, 2 and 4 worker processes and with workers on 2 hosts,
the shared send rate limit across hosts, and web on 2 hosts behind HAProxy.

Provider latency is 500 ms and each worker process runs a fixed 8 threads
(SMSPROXY_WORKER_CONCURRENCY=8: a ceiling of ~16 messages/s per process), so that concurrency, not
this machine's 2 cores, is the limit. Throughput runs have the send rate limit and the
per-conversation caps off. "Hosts" are network namespaces joined to the root namespace by veth
links, each running its own processes; Redis and the sandbox stay in the root namespace (one
Redis), reached through socat forwarders (the network's stand-in: their CPU is reported apart
from ours). CPU is utime+stime from /proc/<pid>/stat of every process of ours (gunicorn master
and workers, celery worker processes), read before the first webhook and after the last send.

Needs root (ip netns), socat, and for the web part haproxy and wrk.

    .venv/bin/python -m bench.scale_out [--per-process 160] [--skip-web | --only-web]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests

from bench.common import InboundPoster, children, open_conversations
from bench.webhook_ingest import METHOD, SECRET, signed_body
from devtools.ports import free_port
from devtools.redis_server import RedisServer
from devtools.stack import ROOT, Stack, StackConfig, worker_command

LATENCY_MS = 500
CONCURRENCY = 8
CONVERSATIONS = 80
NO_LIMITS = {"SMSPROXY_SEND_RATE_PER_SECOND": "0",
             "SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE": "0",
             "SMSPROXY_CONVERSATION_DAILY_RELAYS": "0",
             # the bench's own polling of conversations must not meet the API's limit
             "SMSPROXY_API_RATE_LIMIT": "10000/second;1000000/minute"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- hosts: network namespaces --------------------------------------------------------------

@dataclass(frozen=True)
class Host:
    name: str
    gateway: str  # the root namespace's end of the veth link
    address: str  # the host's own end


@contextmanager
def hosts(count: int) -> Iterator[list[Host]]:
    """`count` network namespaces, each with a veth link to the root namespace; all deleted
    on exit, whatever happened."""
    made: list[Host] = []
    try:
        for i in range(1, count + 1):
            host = Host(f"smsp-so-h{i}", f"10.77.{i}.1", f"10.77.{i}.2")
            _ip("netns", "add", host.name)
            made.append(host)
            _ip("link", "add", f"smso{i}a", "type", "veth", "peer", "name", f"smso{i}b")
            _ip("link", "set", f"smso{i}b", "netns", host.name)
            _ip("addr", "add", f"{host.gateway}/24", "dev", f"smso{i}a")
            _ip("link", "set", f"smso{i}a", "up")
            for args in (("addr", "add", f"{host.address}/24", "dev", f"smso{i}b"),
                         ("link", "set", f"smso{i}b", "up"), ("link", "set", "lo", "up")):
                _ip("-n", host.name, *args)
        yield made
    finally:
        for host in made:
            subprocess.run(["ip", "netns", "del", host.name], check=False)  # noqa: S607
        for i in range(1, count + 1):  # a veth left behind by a half-made host
            subprocess.run(["ip", "link", "del", f"smso{i}a"], check=False,  # noqa: S607
                           stderr=subprocess.DEVNULL)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)  # noqa: S603, S607


def in_host(host: Host | None, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", host.name, *command] if host else command


# -- CPU accounting -------------------------------------------------------------------------

def tree(pid: int) -> list[int]:
    found = [pid]
    for child in children(pid):
        found += tree(child)
    return found


def context_switches(pids: Sequence[int]) -> int:
    """Voluntary + involuntary context switches of each process's threads and descendants."""
    total = 0
    for root in pids:
        for pid in tree(root):
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for task in tasks:
                try:
                    status = (task / "status").read_text()
                except OSError:
                    continue
                total += sum(int(line.split()[1]) for line in status.splitlines()
                             if "ctxt_switches:" in line)
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of each process and its descendants, from /proc/<pid>/stat."""
    total = 0
    for root in pids:
        for pid in tree(root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLOCK_TICKS


# -- the relay ------------------------------------------------------------------------------

class HostStack(Stack):
    """The stack with its workers spread over hosts (round robin), each reaching the root
    namespace's Redis and sandbox through socat forwarders; no hosts: as Stack."""

    def __init__(self, config: StackConfig, worker_hosts: Sequence[Host]) -> None:
        super().__init__(config)
        self.worker_hosts = list(worker_hosts)

    def start_web(self) -> None:
        super().start_web()
        assert self.redis is not None and self.sandbox is not None
        for host in self.worker_hosts:
            for port in (self.redis.port, self.sandbox.port):
                self._spawn(f"fwd-{host.name}-{port}", [
                    "socat", f"TCP-LISTEN:{port},bind={host.gateway},fork,reuseaddr",
                    f"TCP:127.0.0.1:{port}"])
            self._spawn(f"fwd-{host.name}-in", in_host(host, [
                "socat", f"TCP-LISTEN:{self.sandbox.port},bind=127.0.0.1,fork,reuseaddr",
                f"TCP:{host.gateway}:{self.sandbox.port}"]))
        time.sleep(0.5)  # the forwarders listening before any worker connects

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        if not self.worker_hosts:
            return super().start_worker(name)
        assert self.redis is not None
        host = self.worker_hosts[(int(name.removeprefix("worker")) - 1) % len(self.worker_hosts)]
        shared_env = self.env
        self.env = {**shared_env, "REDIS_URL": f"redis://{host.gateway}:{self.redis.port}/0"}
        try:
            return self._spawn(name, in_host(host, worker_command(f"{name}@{host.name}")))
        finally:
            self.env = shared_env

    def pids(self, prefix: str) -> list[int]:
        return [p.pid for name, p in self.processes.items() if name.startswith(prefix)]


@dataclass
class RelayResult:
    label: str
    processes: int
    rate: float
    p50_ms: float
    p99_ms: float
    lost: int
    duplicated: int
    cpu_ms_per_message: float
    worker_cpu_ms_per_message: float  # of which the celery worker processes
    forwarder_cpu_ms_per_message: float
    send_times: list[float]
    tasks_per_worker: list[int]  # relay tasks each worker ran (its log's "succeeded" lines)


def run_relay(label: str, tmp: Path, workers: int, worker_hosts: Sequence[Host],
              messages: int, env: dict[str, str]) -> RelayResult:
    config = StackConfig(
        state_dir=tmp / label.replace(" ", "-"), pool_targets="GB=3", workers=workers,
        sandbox_options={"latency_ms": LATENCY_MS},
        extra_env={"SMSPROXY_WORKER_CONCURRENCY": str(CONCURRENCY), **env},
    )
    stack = HostStack(config, worker_hosts)
    with stack:
        sandbox = stack.sandbox
        assert sandbox is not None
        pairs = open_conversations(stack, CONVERSATIONS)
        sandbox.client.set_faults(latency_ms=LATENCY_MS)
        before = len(sandbox.client.sms_log())
        poster = InboundPoster(stack)
        posted_at = poster.posted_at
        ids = [f"so-{n}" for n in range(messages)]

        def post(n: int) -> None:
            sender, proxy = pairs[n % CONVERSATIONS]
            poster.post(sender, proxy, ids[n], f"m{n}")

        ours = stack.pids("web") + stack.pids("worker")
        forwarders = stack.pids("fwd")
        cpu0, fwd0 = cpu_seconds(ours), cpu_seconds(forwarders)
        worker0 = cpu_seconds(stack.pids("worker"))
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(post, range(messages)))
        deadline = time.monotonic() + 120
        while len(sandbox.client.sms_log()) - before < messages and time.monotonic() < deadline:
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        cpu, fwd = cpu_seconds(ours) - cpu0, cpu_seconds(forwarders) - fwd0
        worker_cpu = cpu_seconds(stack.pids("worker")) - worker0
        time.sleep(1.5)  # let any duplicate surface
        sends = [s for s in sandbox.client.sms_log()[before:]
                 if s["client_ref"].startswith("relay-")]
        per_worker = [(stack.logs / f"{name}.log").read_text(errors="replace").count(
            "succeeded") for name in stack.worker_names]
    refs = Counter(s["client_ref"] for s in sends)
    latencies = sorted(_ts(s["sent_at"]) - posted_at[s["client_ref"][len("relay-"):]]
                       for s in sends if s["client_ref"][len("relay-"):] in posted_at)
    return RelayResult(
        label, workers, messages / elapsed,
        latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000,
        sum(1 for i in ids if refs[f"relay-{i}"] == 0),
        sum(1 for count in refs.values() if count > 1),
        cpu / messages * 1000, worker_cpu / messages * 1000, fwd / messages * 1000,
        sorted(_ts(s["sent_at"]) for s in sends), per_worker,
    )


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def worst_window_excess(times: Sequence[float], rate: float) -> float:
    """max over windows [t_i, t_j] of (sends in it) - rate * (t_j - t_i): a token bucket of
    `rate` and burst b allows at most b."""
    worst = 0.0
    for i in range(len(times)):
        for j in range(i, len(times)):
            worst = max(worst, (j - i + 1) - rate * (times[j] - times[i]))
    return worst


# -- web ------------------------------------------------------------------------------------

@dataclass
class WebResult:
    label: str
    rps: float
    p99_ms: float
    non_2xx: int
    cpu_ms_per_webhook: float
    lb_cpu_ms_per_webhook: float
    switches_per_webhook: float  # gunicorn threads' context switches


def run_web(tmp: Path, web_hosts: Sequence[Host], seconds: int, first: int) -> WebResult:
    import re

    label = f"{len(web_hosts)} web host(s)"
    gateways = " ".join(h.gateway for h in web_hosts)
    with RedisServer(tmp / f"web-redis-{len(web_hosts)}", extra_args=(
            "--bind", f"127.0.0.1 {gateways}", "--protected-mode", "no")) as server:
        port = free_port()
        base_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SMSPROXY_", "VONAGE_"))},
            "PYTHONPATH": str(ROOT), "VONAGE_SIGNATURE_SECRET": SECRET,
            "VONAGE_SIGNATURE_METHOD": METHOD.value,
            "SMSPROXY_API_TOKENS": "bench-0123456789abcdef0123456789abcdef",
            "SMSPROXY_LOG_LEVEL": "WARNING",
        }
        webs: list[subprocess.Popen[bytes]] = []
        lb: subprocess.Popen[bytes] | None = None
        try:
            for host in web_hosts:
                env = {**base_env, "REDIS_URL": f"redis://{host.gateway}:{server.port}/0"}
                webs.append(subprocess.Popen(  # noqa: S603
                    in_host(host, [sys.executable, "-m", "gunicorn", "web.wsgi:app", "--config",
                                   str(ROOT / "gunicorn.conf.py"), "--bind",
                                   f"{host.address}:{port}"]),
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for host in web_hosts:
                _wait_http(f"http://{host.address}:{port}/webhooks/inbound-sms")
            lb_port = free_port()
            config = tmp / f"haproxy-{len(web_hosts)}.cfg"
            config.write_text("\n".join([
                "global", "  maxconn 2000", "defaults", "  mode http", "  timeout connect 5s",
                "  timeout client 30s", "  timeout server 30s", "  option http-keep-alive",
                "frontend web", f"  bind 127.0.0.1:{lb_port}", "  default_backend hosts",
                "backend hosts", "  balance roundrobin", "  http-reuse always",
                *(f"  server {h.name} {h.address}:{port}" for h in web_hosts), ""]))
            lb = subprocess.Popen(["haproxy", "-db", "-f", str(config)],  # noqa: S603, S607
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_http(f"http://127.0.0.1:{lb_port}/webhooks/inbound-sms")
            bodies = tmp / f"bodies-{len(web_hosts)}.txt"
            at = int(time.time())
            with bodies.open("w") as out:
                for n in range(first, first + 4000 * seconds):
                    out.write(signed_body(n, at) + "\n")
            ours = [w.pid for w in webs]
            cpu0, lb0 = cpu_seconds(ours), cpu_seconds([lb.pid])
            switches0 = context_switches(ours)
            wrk_env = {**os.environ, "WRK_BODIES": str(bodies), "WRK_THREADS": "2"}
            out_text = subprocess.run(  # noqa: S603
                ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s",  # noqa: S607
                 str(ROOT / "bench" / "wrk_bodies.lua"), f"http://127.0.0.1:{lb_port}"],
                capture_output=True, text=True, env=wrk_env, check=True).stdout
            cpu, lb_cpu = cpu_seconds(ours) - cpu0, cpu_seconds([lb.pid]) - lb0
            switches = context_switches(ours) - switches0
        finally:
            for process in [*webs, *([lb] if lb else [])]:
                process.terminate()
            for process in [*webs, *([lb] if lb else [])]:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
    requests_done = int(re.search(r"(\d+) requests in", out_text).group(1))  # type: ignore[union-attr]
    non_2xx = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out_text))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out_text).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out_text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return WebResult(label, rps, p99_ms, non_2xx, cpu / requests_done * 1000,
                     lb_cpu / requests_done * 1000, switches / requests_done)


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer")


# -- report ---------------------------------------------------------------------------------

def goal(value: float, target: float) -> str:
    return "**yes**" if value >= target else "no"


def print_web(webs: Sequence[WebResult]) -> None:
    if webs:
        print("\n| web | requests/s | p99 | non-2xx | CPU ms per webhook (gunicorn) | ratio "
              "| HAProxy CPU ms/webhook | context switches per webhook |")
        print("|---|---|---|---|---|---|---|---|")
        for w in webs:
            print(f"| {w.label} | {w.rps:,.0f} | {w.p99_ms:.1f} ms | {w.non_2xx} "
                  f"| {w.cpu_ms_per_webhook:.3f} "
                  f"| {w.cpu_ms_per_webhook / webs[0].cpu_ms_per_webhook:.2f} "
                  f"| {w.lb_cpu_ms_per_webhook:.3f} | {w.switches_per_webhook:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--per-process", type=int, default=160,
                        help="messages per worker process in a throughput run (~10 s of sends)")
    parser.add_argument("--rate-messages", type=int, default=150)
    parser.add_argument("--web-seconds", type=int, default=8)
    parser.add_argument("--skip-web", action="store_true")
    parser.add_argument("--only-web", action="store_true")
    options = parser.parse_args(argv)
    missing = [tool for tool in ("ip", "socat") if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        print(f"skipped: needs root (ip netns) and {', '.join(missing) or 'ip, socat'}")
        return 0
    if not options.skip_web and not (shutil.which("haproxy") and shutil.which("wrk")):
        print("web part skipped: needs haproxy and wrk (apt-get install haproxy wrk)")
        options.skip_web = True
    n = options.per_process
    with tempfile.TemporaryDirectory(prefix="smsproxy-scaleout-") as tmp_name, hosts(2) as (
            h1, h2):
        tmp = Path(tmp_name)
        webs = [] if options.skip_web else [
            run_web(tmp, (h1,), options.web_seconds, 0),
            run_web(tmp, (h1, h2), options.web_seconds, 1_000_000)]
        if options.only_web:
            print_web(webs)
            return 0
        runs = [run_relay(f"{k} process{'es' if k > 1 else ''}", tmp, k, (), n * k, NO_LIMITS)
                for k in (1, 2, 4)]
        runs.append(run_relay("1 host", tmp, 1, (h1,), n, NO_LIMITS))
        runs.append(run_relay("2 hosts", tmp, 2, (h1, h2), 2 * n, NO_LIMITS))
        limited = run_relay("2 hosts, 10/s limit", tmp, 2, (h1, h2), options.rate_messages,
                            {**NO_LIMITS, "SMSPROXY_SEND_RATE_PER_SECOND": "10",
                             "SMSPROXY_SEND_BURST": "5"})

    one, one_host = runs[0], runs[3]
    print(f"\nrelay, provider latency {LATENCY_MS} ms, {CONCURRENCY} threads per worker process, "
          f"{CONVERSATIONS} conversations, {n} messages per process posted at once")
    print("| run | messages | messages/s | ratio | webhook → send p50 / p99 | lost / dup "
          "| CPU ms per message (ours) | of which workers | ratio | vs 1 process "
          "| forwarders' CPU ms/msg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in [*runs, limited]:
        base = one_host if "host" in r.label else one
        print(f"| {r.label} | {len(r.send_times)} | {r.rate:.1f} | {r.rate / base.rate:.2f} "
              f"| {r.p50_ms:,.0f} / {r.p99_ms:,.0f} ms | {r.lost} / {r.duplicated} "
              f"| {r.cpu_ms_per_message:.1f} | {r.worker_cpu_ms_per_message:.1f} "
              f"| {r.cpu_ms_per_message / base.cpu_ms_per_message:.2f}"
              f" | {r.cpu_ms_per_message / one.cpu_ms_per_message:.2f}"
              f" | {r.forwarder_cpu_ms_per_message:.1f} |")
    print(f"\ngoals: 2 processes {runs[1].rate / one.rate:.2f} (>= 1.8: "
          f"{goal(runs[1].rate / one.rate, 1.8)}), 4 processes {runs[2].rate / one.rate:.2f} "
          f"(>= 3.2: {goal(runs[2].rate / one.rate, 3.2)}), 2 hosts "
          f"{runs[4].rate / one_host.rate:.2f} (>= 1.8: {goal(runs[4].rate / one_host.rate, 1.8)})")
    excess = worst_window_excess(limited.send_times, 10.0)
    span = limited.send_times[-1] - limited.send_times[0] if limited.send_times else 0.0
    print(f"rate limit 10/s burst 5 across 2 hosts: {len(limited.send_times)} sends over "
          f"{span:.2f} s ({(len(limited.send_times) - 1) / span if span else 0:.2f}/s); worst "
          f"window: sends - 10*t = {excess:.2f} (bound: 5); tasks per worker (both hosts, "
          f"the whole run): {limited.tasks_per_worker}")
    print_web(webs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

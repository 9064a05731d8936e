"""`make run`: the whole proxy on this machine, a demo conversation, then what to try next."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from devtools.ports import port_is_free
from devtools.stack import API_TOKEN, ROOT, Stack, StackConfig

RIDER = "447400123456"
DRIVER = "447400654321"


def main() -> int:
    state = ROOT / ".devstack"
    # The sandbox starts empty every time, so the proxy's data must too.
    shutil.rmtree(state, ignore_errors=True)
    # `CELERY_BROKER_URL=amqp://… make run` tries RabbitMQ as the broker (docs/scaling.md); the
    # stack passes no other CELERY_ variable of the caller's on
    broker = os.environ.get("CELERY_BROKER_URL")
    config = StackConfig(
        state_dir=state, web_port=8000, redis_port=6399,
        # fixed, memorable ports when free (the sandbox's is passed to it; else a free one)
        sandbox_options={
            **({"port": 8443} if port_is_free(8443) else {}),
            **({"handsets_port": 8444} if port_is_free(8444) else {}),
        },
        beat=True, handsets=True, phones=(RIDER, DRIVER),
        extra_env={"CELERY_BROKER_URL": broker} if broker else {},
    )
    print("starting Redis, the sandbox Vonage, web, worker and beat ...", flush=True)

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        with Stack(config) as stack:
            assert stack.sandbox is not None
            print(f"  web      {stack.web_url}   (logs in {stack.logs})")
            print(f"  sandbox  {stack.sandbox.url}   (CA {stack.sandbox.ca_path})")
            print(f"  handsets {handsets_page(stack)}")
            print(f"  console  {stack.web_url}/console   (sign in with the API token below)")
            print(f"  redis    {stack.env['REDIS_URL']}")
            numbers = stack.provision_pool(expected=5)
            print(f"pool provisioned: {', '.join(n['number'] for n in numbers)}")
            demo(stack)
            print_next_steps(stack)
            while True:
                time.sleep(1)
                stack._check_alive()
    except KeyboardInterrupt:
        print("\nstopping everything ...", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"\nthe dev stack failed: {exc}", file=sys.stderr)
        return 1


def demo(stack: Stack) -> None:
    assert stack.sandbox is not None
    sandbox = stack.sandbox.client
    created = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{RIDER}", "display_name": "Rita the rider"},
                         {"number": f"+{DRIVER}", "display_name": "Dev the driver"}],
        "ttl_seconds": 3600,
    }).json()
    conversation = stack.wait_for_status(created["id"], "active")
    rider, driver = conversation["participants"]
    print(f"\ndemo conversation {conversation['id']} is active:")
    print(f"  rider  {rider['number']} texts {rider['proxy_number']}")
    print(f"  driver {driver['number']} texts {driver['proxy_number']}")
    sandbox.wait_for_inbox(RIDER, 1, timeout=20)
    before = len(sandbox.wait_for_inbox(DRIVER, 1, timeout=20))  # the intros came first
    text = "Hi, I'm by the north entrance"
    sandbox.send_from_handset(RIDER, rider["proxy_number"].lstrip("+"), text)
    print(f"\nrider texts {rider['proxy_number']}: {text!r}")
    received = sandbox.wait_for_inbox(DRIVER, before + 1, timeout=20)[-1]
    print(f"driver's phone shows, from +{received['from']}: {received['text']!r}")
    print("(neither phone ever saw the other's real number)")


def handsets_page(stack: Stack) -> str:
    assert stack.sandbox is not None and stack.sandbox.handsets_url is not None
    return f"{stack.sandbox.handsets_url}/handsets"


def print_next_steps(stack: Stack) -> None:
    assert stack.sandbox is not None
    ca = shlex.quote(stack.sandbox.ca_path)
    python = Path(sys.executable)
    if python.is_relative_to(ROOT):
        python = python.relative_to(ROOT)
    where = f"--url {stack.sandbox.url} --ca {ca}"
    body = '{"participants":[{"number":"+447400111111"},{"number":"+447400222222"}]}'
    print(f"""
next steps (the stack keeps running; Ctrl-C stops everything):
  the phones:          open {handsets_page(stack)} (each phone's texts, live; text from
                       any of them, add phones, start a conversation between two)
  text as the rider:   {python} -m sandbox send {where} {RIDER} <rider's proxy> "hello"
  read a phone:        {python} -m sandbox inbox {where} {DRIVER}
  the API:             curl -H 'Authorization: Bearer {API_TOKEN}' {stack.web_url}/v1/numbers
  new conversation:    curl -H 'Authorization: Bearer {API_TOKEN}' \\
                         -H 'Content-Type: application/json' -d '{body}' \\
                         {stack.web_url}/v1/conversations
  metrics:             curl {stack.web_url}/metrics
""", flush=True)


if __name__ == "__main__":
    sys.exit(main())

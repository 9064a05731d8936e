"""`python -m sandbox`: serve, or drive a running sandbox through its control API.

Every option can also come from the environment: `--retry-base-seconds` is read from
`SANDBOX_RETRY_BASE_SECONDS`, and so on; the command line wins.
"""

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from sandbox.client import SandboxClient, SandboxError
from sandbox.config import (
    DEFAULT_INVENTORY,
    WEBHOOK_FORMATS,
    SandboxConfig,
    parse_accounts,
    parse_numbers,
)
from sandbox.signing import METHODS


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"SANDBOX_{name}", default)


def _env_flag(name: str, default: bool) -> bool:
    value = _env(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def build_parser() -> argparse.ArgumentParser:
    """The full command line."""
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands.add_parser("serve", help="run the sandbox over HTTPS"))

    control = argparse.ArgumentParser(add_help=False)
    control.add_argument("--url", default=_env("URL", "https://127.0.0.1:8443"))
    control.add_argument("--ca", default=_env("CA", ".sandbox/ca.pem"), help="the sandbox CA")
    control.add_argument("--json", action="store_true", help="print the raw JSON reply")

    send = commands.add_parser("send", parents=[control], help="a handset texts a virtual number")
    send.add_argument("sender", metavar="FROM", help="the handset's number (digits)")
    send.add_argument("to", metavar="TO", help="a virtual number the account owns")
    send.add_argument("text", metavar="TEXT")
    send.add_argument("--shuffle-parts", action="store_true")
    send.add_argument("--duplicates", type=int, default=1)

    inbox = commands.add_parser("inbox", parents=[control], help="messages sent to a handset")
    inbox.add_argument("msisdn", metavar="MSISDN")

    commands.add_parser("numbers", parents=[control], help="numbers the account owns")
    commands.add_parser("sms", parents=[control], help="every accepted send")
    commands.add_parser("webhooks", parents=[control], help="webhooks and their attempts")
    commands.add_parser("stats", parents=[control], help="counts")
    commands.add_parser("reset", parents=[control], help="clear records and faults")

    faults = commands.add_parser("faults", parents=[control], help="show or change faults")
    faults.add_argument("--latency-ms", type=int)
    faults.add_argument("--throttle-rate", type=float)
    faults.add_argument("--error-rate", type=float)
    faults.add_argument(
        "--script", help="forced outcomes of the next sends, e.g. 1,http500,5,0 ('' clears)"
    )
    return parser


def _add_serve(serve: argparse.ArgumentParser) -> None:
    add = serve.add_argument
    add("--host", default=_env("HOST", "127.0.0.1"))
    add("--port", type=int, default=_env("PORT", "8443"), help="0 picks a free port")
    add("--state-dir", type=Path, default=_env("STATE_DIR", ".sandbox"), help="keeps the CA")
    add("--ready-file", type=Path, default=_env("READY_FILE"), help="JSON written when listening")
    add("--api-key", default=_env("API_KEY", "sandbox-key"))
    add("--api-secret", default=_env("API_SECRET", "sandbox-secret"))
    add("--signature-secret", default=_env("SIGNATURE_SECRET"), help="sign webhooks with it")
    add("--accounts", default=_env("ACCOUNTS", ""),
        help="accounts besides --api-key: KEY:SECRET[:SIGNATURE_SECRET],... (the environment "
             "keeps the secrets off the command line: SANDBOX_ACCOUNTS)")
    add("--rate-per-key", type=float, default=_env("RATE_PER_KEY", "0"),
        help="SMS requests per second per API key before status 1 Throttled (Vonage: 30); "
             "0: no limit")
    add("--signature-method", choices=METHODS, default=_env("SIGNATURE_METHOD", "md5hash"))
    add("--webhook-format", choices=WEBHOOK_FORMATS, default=_env("WEBHOOK_FORMAT", "form"))
    add("--dlr-url", default=_env("DLR_URL"), help="account default for delivery receipts")
    add("--inventory", default=_env("INVENTORY", DEFAULT_INVENTORY), help="buyable numbers")
    add("--owned", default=_env("OWNED", ""), help="numbers owned at start, same syntax")
    add("--latency-ms", type=int, default=_env("LATENCY_MS", "0"))
    add("--throttle-rate", type=float, default=_env("THROTTLE_RATE", "0"))
    add("--error-rate", type=float, default=_env("ERROR_RATE", "0"))
    add("--seed", type=int, default=_env("SEED"))
    add("--retry-base-seconds", type=float, default=_env("RETRY_BASE_SECONDS", "1.0"))
    add("--retry-max-attempts", type=int, default=_env("RETRY_MAX_ATTEMPTS", "10"))
    add(
        "--strict-sender",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("STRICT_SENDER", True),
        help="refuse sends from numbers the account does not own (status 15)",
    )
    add("--handsets-port", type=int, default=_env("HANDSETS_PORT"),
        help="serve the handsets page (plain HTTP) on this port; 0 picks one; none: no page")
    add("--handsets-host", default=_env("HANDSETS_HOST", "127.0.0.1"),
        help="the handsets page's address: loopback only unless --handsets-allow-remote")
    add(
        "--handsets-allow-remote",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("HANDSETS_ALLOW_REMOTE", False),
        help="let the handsets page bind to a non-loopback address and answer any Host",
    )
    add("--phones", default=_env("PHONES", ""), help="phones shown at start: 4474...,1201...")
    add("--proxy-api-url", default=_env("PROXY_API_URL"),
        help="the proxy's REST API, where the page starts conversations; its bearer token is "
             "read from SANDBOX_PROXY_API_TOKEN only (a command line is visible to every user)")


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """The serve options as a config (raises ValueError on a bad value)."""
    return SandboxConfig(
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        ready_file=args.ready_file,
        api_key=args.api_key,
        api_secret=args.api_secret,
        signature_secret=args.signature_secret or None,
        extra_accounts=tuple(parse_accounts(args.accounts)),
        rate_per_key=args.rate_per_key,
        signature_method=args.signature_method,
        webhook_format=args.webhook_format,
        dlr_url=args.dlr_url or None,
        inventory=tuple(parse_numbers(args.inventory)),
        owned=tuple(parse_numbers(args.owned)),
        latency_ms=args.latency_ms,
        throttle_rate=args.throttle_rate,
        error_rate=args.error_rate,
        seed=args.seed,
        retry_base_seconds=args.retry_base_seconds,
        retry_max_attempts=args.retry_max_attempts,
        strict_sender=args.strict_sender,
        handsets_port=None if args.handsets_port in (None, "") else int(args.handsets_port),
        handsets_host=args.handsets_host,
        handsets_allow_remote=args.handsets_allow_remote,
        phones=tuple(p.strip() for p in args.phones.split(",") if p.strip()),
        proxy_api_url=args.proxy_api_url or None,
        proxy_api_token=_env("PROXY_API_TOKEN") or None,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            config = config_from_args(args)
        except ValueError as error:
            parser.error(str(error))
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        from sandbox.server import serve  # Flask is only needed to serve

        try:
            serve(config)
        except OSError as error:  # the port is taken, the state dir is not writable, ...
            print(f"sandbox: {error}", file=sys.stderr)
            return 1
        return 0
    client = SandboxClient(args.url, args.ca)
    try:
        reply, show = _COMMANDS[args.command](client, args)
    except (SandboxError, requests.RequestException, OSError) as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps(reply, indent=2) if args.json else show(reply))
    return 0


Command = Callable[[SandboxClient, argparse.Namespace], tuple[Any, Callable[[Any], str]]]


def _send(client: SandboxClient, args: argparse.Namespace) -> tuple[Any, Callable[[Any], str]]:
    ids = client.send_from_handset(
        args.sender,
        args.to,
        args.text,
        shuffle_parts=args.shuffle_parts,
        duplicates=args.duplicates,
    )
    return {"message_ids": ids}, _sent_ids


def _sent_ids(reply: dict[str, list[str]]) -> str:
    return f"sent in {len(reply['message_ids'])} part(s): " + ", ".join(reply["message_ids"])


def _reset(client: SandboxClient, args: argparse.Namespace) -> tuple[Any, Callable[[Any], str]]:
    client.reset()
    return {"reset": True}, lambda _: "reset"


def _messages(messages: list[dict[str, Any]]) -> str:
    if not messages:
        return "no messages"
    return "\n".join(
        f"{m['sent_at']}  {m['from']} -> {m['to']}  ({len(m['parts'])} part(s)): {m['text']}"
        for m in messages
    )


def _numbers(numbers: list[dict[str, Any]]) -> str:
    if not numbers:
        return "the account owns no numbers"
    return "\n".join(
        f"{n['country']}  {n['msisdn']}  {n['type']}  {n.get('moHttpUrl') or '(no inbound URL)'}"
        for n in numbers
    )


def _webhooks(webhooks: list[dict[str, Any]]) -> str:
    if not webhooks:
        return "no webhooks"
    lines = []
    for w in webhooks:
        attempts = ", ".join(str(a["status_code"] or a["error"]) for a in w["attempts"]) or "none"
        lines.append(
            f"#{w['id']} {w['kind']} {w['message_id']} copy {w['copy']}: {w['status']}"
            f"  {w['url'] or '(no URL)'}  attempts: {attempts}"
        )
    return "\n".join(lines)


def _key_values(data: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in data.items())


def _faults(client: SandboxClient, args: argparse.Namespace) -> tuple[Any, Callable[[Any], str]]:
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("latency_ms", args.latency_ms),
            ("throttle_rate", args.throttle_rate),
            ("error_rate", args.error_rate),
        )
        if value is not None
    }
    if args.script is not None:
        changes["sms_script"] = [entry.strip() for entry in args.script.split(",") if entry.strip()]
    return client.set_faults(**changes), _key_values


_COMMANDS: dict[str, Command] = {
    "send": _send,
    "inbox": lambda c, a: (c.inbox(a.msisdn), _messages),
    "numbers": lambda c, a: (c.owned_numbers(), _numbers),
    "sms": lambda c, a: (c.sms_log(), _messages),
    "webhooks": lambda c, a: (c.webhooks(), _webhooks),
    "stats": lambda c, a: (c.stats(), _key_values),
    "reset": _reset,
    "faults": _faults,
}

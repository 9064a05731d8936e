"""A client for the sandbox's control API, for tests, the dev stack and the CLI."""

import time
from typing import Any

import requests


class SandboxError(Exception):
    """The control API refused a request."""


class SandboxClient:
    """Talks to `/_sandbox/` over HTTPS, trusting the sandbox's CA only."""

    def __init__(self, base_url: str, ca_path: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        self._session.verify = ca_path
        # REQUESTS_CA_BUNDLE or a proxy from the environment must not override the sandbox CA.
        self._session.trust_env = False

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def send_from_handset(
        self, handset: str, to: str, text: str, *, shuffle_parts: bool = False, duplicates: int = 1
    ) -> list[str]:
        """A handset texts a virtual number; returns the message id of each part."""
        body = {"to": to, "text": text, "shuffle_parts": shuffle_parts, "duplicates": duplicates}
        reply = self._call("POST", f"/handsets/{handset}/send", body)
        return list(reply["message_ids"])

    def inbox(self, handset: str) -> list[dict[str, Any]]:
        """Messages sent through /sms/json to `handset`, oldest first."""
        return list(self._call("GET", f"/handsets/{handset}/inbox"))

    def wait_for_inbox(
        self, handset: str, count: int, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Poll until `handset` has at least `count` messages; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.inbox(handset)
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                raise TimeoutError(f"{handset} has {len(messages)} messages, wanted {count}")
            time.sleep(0.05)

    def wait_until_idle(self, timeout: float = 10.0) -> dict[str, Any]:
        """Poll until no webhook is pending; returns the stats."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["webhooks"]["pending"] == 0:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"webhooks still pending: {stats['webhooks']}")
            time.sleep(0.05)

    def sms_log(self) -> list[dict[str, Any]]:
        """Every send /sms/json accepted, oldest first."""
        return list(self._call("GET", "/sms"))

    def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook with its delivery attempts."""
        return list(self._call("GET", "/webhooks"))

    def owned_numbers(self) -> list[dict[str, Any]]:
        """Numbers every account owns, with their `moHttpUrl` and `account` (its API key)."""
        return list(self._call("GET", "/numbers"))

    def add_inventory(self, numbers: list[dict[str, Any]]) -> None:
        """Make numbers available to buy (`country`, `msisdn`, optional `type`, `cost`)."""
        self._call("POST", "/inventory", {"numbers": numbers})

    def add_owned(self, numbers: list[dict[str, Any]]) -> None:
        """Make the account own numbers directly (optional `moHttpUrl`)."""
        self._call("POST", "/owned", {"numbers": numbers})

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change some of `latency_ms`, `throttle_rate`, `error_rate`, `sms_script`."""
        return dict(self._call("POST", "/faults", faults))

    def reset(self) -> None:
        """Clear records and faults, restore the starting numbers."""
        self._call("POST", "/reset", {})

    def stats(self) -> dict[str, Any]:
        """Counts of sends and webhooks."""
        return dict(self._call("GET", "/stats"))

    def health(self) -> bool:
        """True if the sandbox answers."""
        return bool(self._call("GET", "/health")["status"] == "ok")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._session.request(
            method, f"{self.base_url}/_sandbox{path}", json=body, timeout=self._timeout
        )
        if response.status_code >= 400:
            raise SandboxError(f"{method} {path}: HTTP {response.status_code}: {response.text}")
        return response.json()

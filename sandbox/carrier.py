"""The simulated mobile network: handsets texting virtual numbers, and delivery receipts."""

import secrets
from datetime import UTC, datetime
from decimal import Decimal

from sandbox.config import SandboxConfig
from sandbox.delivery import Deliverer
from sandbox.phones import lookup
from sandbox.signing import sign
from sandbox.sms import encoding_for, split
from sandbox.state import HandsetText, SentMessage, State

# Gaps that keep arrival order close to the intended order: parts go out one after another, and
# duplicates come in pairs sent at the same moment (so a receiver sees true concurrency).
PART_GAP_SECONDS = 0.02
DUPLICATE_PAIR_GAP_SECONDS = 0.05
# A receipt follows the API reply rather than racing it.
RECEIPT_DELAY_SECONDS = 0.05

# Destination network (MCC+MNC) and price per part, by region; anything else gets the fallback.
_TARIFFS: dict[str, tuple[str, Decimal]] = {
    "GB": ("23410", Decimal("0.0333")),
    "US": ("310004", Decimal("0.00809")),
    "DE": ("26201", Decimal("0.0750")),
}
_FALLBACK_TARIFF = ("00101", Decimal("0.0500"))


def tariff(msisdn: str) -> tuple[str, Decimal]:
    """The network code and per-part price for sending to `msisdn`."""
    info = lookup(msisdn)
    return _TARIFFS.get(info.region, _FALLBACK_TARIFF) if info else _FALLBACK_TARIFF


class Carrier:
    """Turns traffic into webhooks and hands them to the deliverer."""

    def __init__(self, config: SandboxConfig, state: State, deliverer: Deliverer) -> None:
        self._config = config
        self._state = state
        self._deliverer = deliverer

    def handset_sends(
        self,
        handset: str,
        to: str,
        text: str,
        *,
        shuffle_parts: bool = False,
        duplicates: int = 1,
    ) -> list[str]:
        """A handset texts an owned number: one inbound webhook per part; returns the part ids."""
        number = self._state.owned_number(to)
        url = number.mo_http_url if number else ""
        # the webhook names, and is signed by, the account renting the number
        owner = number.account if number else self._config.api_key
        encoding = encoding_for(text)
        parts = split(text, encoding)
        message_ids = [self._state.new_message_id() for _ in parts]
        now = datetime.now(UTC)
        self._state.record_handset_text(
            HandsetText(handset, to, text, now.isoformat(timespec="milliseconds"))
        )
        concat_ref = str(secrets.randbelow(256))  # the one-byte reference of a concatenation UDH
        order = list(range(len(parts)))
        if shuffle_parts and len(parts) > 1:
            order = self._state.shuffled(order)
        for position, index in enumerate(order):
            part = parts[index]
            params = {
                "msisdn": handset,
                "to": to,
                "messageId": message_ids[index],
                "text": part,
                "type": str(encoding),
                "keyword": part.split()[0].upper() if part.split() else "",
                "message-timestamp": now.strftime("%Y-%m-%d %H:%M:%S"),
                "api-key": owner,
            }
            if len(parts) > 1:
                params |= {
                    "concat": "true",
                    "concat-ref": concat_ref,
                    "concat-total": str(len(parts)),
                    "concat-part": str(index + 1),
                }
            params = self._signed(params, owner)
            for copy in range(1, duplicates + 1):
                webhook_id = self._state.add_webhook(
                    "inbound", url or None, params, message_ids[index], copy
                )
                if url:
                    delay = position * PART_GAP_SECONDS + (copy - 1) // 2 * (
                        DUPLICATE_PAIR_GAP_SECONDS
                    )
                    self._deliverer.schedule(webhook_id, delay)
        return message_ids

    def send_receipts(self, message: SentMessage, url: str, network: str, price: Decimal) -> None:
        """One `delivered` receipt per part of an accepted send."""
        now = datetime.now(UTC)
        for message_id in message.message_ids:
            params = {
                "msisdn": message.to,
                "to": message.from_,
                "network-code": network,
                "messageId": message_id,
                "price": f"{price:.8f}",
                "status": "delivered",
                "scts": now.strftime("%y%m%d%H%M"),
                "err-code": "0",
                "api-key": message.account or self._config.api_key,
                "message-timestamp": now.strftime("%Y-%m-%d %H:%M:%S"),
            }
            if message.client_ref is not None:
                params["client-ref"] = message.client_ref
            signed = self._signed(params, message.account or self._config.api_key)
            webhook_id = self._state.add_webhook("receipt", url, signed, message_id)
            self._deliverer.schedule(webhook_id, RECEIPT_DELAY_SECONDS)

    def _signed(self, params: dict[str, str], api_key: str) -> dict[str, str]:
        """Signed with the secret of the account `api_key` (unsigned when it has none)."""
        account = self._config.account(api_key)
        secret = account.signature_secret if account else None
        return sign(params, secret, self._config.signature_method) if secret else params

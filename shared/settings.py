"""The one typed settings object, read from the environment at each entry point."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from limits import parse_many

from shared.accounts import VonageAccounts
from shared.amqp_broker import RABBITMQ_CONSUMER_TIMEOUT_SECONDS, is_amqp
from shared.callback_urls import CallbackPolicy, UnsafeDestination, check_url, parse_hosts
from shared.clients import ApiClients
from shared.logging import LogFormat, parse_log_format
from shared.masking import ContactKind, parse_kinds
from shared.sentinel import celery_broker, is_sentinel_url, parse_sentinel_url
from shared.templates import check_literal, check_template


class SettingsError(ValueError):
    """A setting is present but unusable; the message names the variable."""


class SignatureMethod(StrEnum):
    MD5HASH = "md5hash"
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"


def _text(raw: str) -> str:
    return raw.strip()


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _flag(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _rate_limits(raw: str) -> str | None:
    """`100/second;3000/minute` (the `limits` library's notation: what the limiter accepts, we
    accept), or `none` for no limit."""
    text = raw.strip()
    if text.lower() == "none":
        return None
    try:
        parse_many(text)
    except ValueError:
        raise ValueError(
            "must be rate limits such as 100/second;3000/minute, or none"
        ) from None
    return text


def _required_rate_limits(raw: str) -> str:
    """Rate limits that cannot be turned off (sign-in attempts are token guesses)."""
    limits = _rate_limits(raw)
    if limits is None:
        raise ValueError("must be rate limits such as 10/minute;50/hour (it cannot be none)")
    return limits


def _names(raw: str) -> frozenset[str]:
    return frozenset(item.strip() for item in raw.split(",") if item.strip())


def _pool_targets(raw: str) -> Mapping[str, int]:
    """Parse `GB=3,US=2` into {"GB": 3, "US": 2}."""
    targets: dict[str, int] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        country, sep, count = item.partition("=")
        country = country.strip().upper()
        if not sep or len(country) != 2 or not country.isalpha():
            raise ValueError(f"expected COUNTRY=COUNT items such as GB=3, got {item.strip()!r}")
        targets[country] = int(count)
        if targets[country] < 0:
            raise ValueError(f"count for {country} must not be negative")
    return targets


def _countries(raw: str) -> frozenset[str]:
    """`FR, de` into {"FR", "DE"}; `*` alone stands for every country."""
    codes = frozenset(item.strip().upper() for item in raw.split(",") if item.strip())
    if codes == {"*"}:
        return codes
    for code in codes:
        if len(code) != 2 or not code.isascii() or not code.isalpha():
            raise ValueError(f"expected ISO 3166 alpha-2 codes such as FR, or *, got {code!r}")
    return codes


def _signature_method(raw: str) -> SignatureMethod:
    try:
        return SignatureMethod(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in SignatureMethod)
        raise ValueError(f"must be one of {allowed}") from None


def _template_of(placeholder: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        return check_template(raw, placeholder)

    return parse


# A marker stands for a number or an address in someone's text: a few characters, no more.
MAX_MASK_MARKER = 32


def _mask_marker(raw: str) -> str:
    if len(raw) > MAX_MASK_MARKER:
        raise ValueError(f"must be at most {MAX_MASK_MARKER} characters")
    return raw


def _keywords(raw: str) -> frozenset[str]:
    """`STOP, Quit` into {"STOP", "QUIT"}: whole words a text must be, ignoring case."""
    words = frozenset(word.strip().upper() for word in raw.split(",") if word.strip())
    for word in words:
        if not (word.isascii() and word.replace("-", "").isalnum()) or len(word) > 20:
            raise ValueError(f"{word[:20]!r} is not a keyword (ASCII letters and digits)")
    return words


def _literal(raw: str) -> str:
    return check_literal(raw.strip())


def _setting(env: str, parse: Callable[[str], Any], doc: str, *, secret: bool = False) -> Any:
    """A field read from `env`; a `secret` one stays out of the settings' repr."""
    return field(repr=not secret, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the proxy; each field names its environment variable in its metadata."""

    redis_url: str = _setting("REDIS_URL", _text, "the store: conversations, routes, pool, dedupe")
    broker_url: str = _setting("CELERY_BROKER_URL", _text, "the Celery broker (default REDIS_URL)")
    vonage_api_key: str | None = _setting("VONAGE_API_KEY", _optional_text, "account API key")
    vonage_api_secret: str | None = _setting(
        "VONAGE_API_SECRET", _optional_text, "account API secret", secret=True,
    )
    vonage_signature_secret: str | None = _setting(
        "VONAGE_SIGNATURE_SECRET", _optional_text,
        "every webhook must be signed with it; web refuses to start without it unless "
        "SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS=true",
        secret=True,
    )
    listed_vonage_accounts: VonageAccounts = _setting(
        "SMSPROXY_VONAGE_ACCOUNTS", VonageAccounts.parse,
        "several Vonage accounts, `key:secret:signature_secret,...` or `@/path/to/file`; "
        "replaces VONAGE_API_KEY, VONAGE_API_SECRET and VONAGE_SIGNATURE_SECRET",
    )
    allow_unsigned_webhooks: bool = _setting(
        "SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS", _flag,
        "let web start without VONAGE_SIGNATURE_SECRET (anyone can then post webhooks)",
    )
    vonage_signature_method: SignatureMethod = _setting(
        "VONAGE_SIGNATURE_METHOD", _signature_method, "md5hash, md5, sha1, sha256 or sha512"
    )
    vonage_api_host: str = _setting("VONAGE_API_HOST", _text, "Number Insight host[:port]")
    vonage_rest_host: str = _setting("VONAGE_REST_HOST", _text, "SMS and Numbers host[:port]")
    vonage_ca_bundle: str | None = _setting(
        "VONAGE_CA_BUNDLE", _optional_text, "a CA file to trust for Vonage (the sandbox's)"
    )
    vonage_timeout_seconds: int = _setting(
        "SMSPROXY_VONAGE_TIMEOUT_SECONDS", _positive_int, "timeout of one Vonage HTTP call"
    )
    public_base_url: str | None = _setting(
        "PUBLIC_BASE_URL", _optional_text, "where Vonage reaches the web receiver"
    )
    api_clients: ApiClients = _setting(
        "SMSPROXY_API_TOKENS", ApiClients.parse,
        "comma-separated `name:token` clients of /v1 (a bare token is a client of its own); "
        "tokens of at least 32 characters",
    )
    api_rate_limit: str | None = _setting(
        "SMSPROXY_API_RATE_LIMIT", _rate_limits,
        "requests each client may make to /v1, e.g. 100/second;3000/minute (none: no limit); "
        "beyond it 429 with Retry-After",
    )
    trusted_proxies: int = _setting(
        "SMSPROXY_TRUSTED_PROXIES", _non_negative_int,
        "how many reverse proxies stand in front of web; their X-Forwarded-For and "
        "X-Forwarded-Proto name the client (0: trust no such header)",
    )
    client_max_live_conversations: int = _setting(
        "SMSPROXY_CLIENT_MAX_LIVE_CONVERSATIONS", _non_negative_int,
        "the most pending or active conversations one client may hold (0: no cap)",
    )
    retention_seconds: int = _setting(
        "SMSPROXY_RETENTION_SECONDS", _positive_int,
        "how long finished conversations, message records and every index naming a number "
        "are kept",
    )
    metrics_token: str | None = _setting(
        "SMSPROXY_METRICS_TOKEN", _optional_text,
        "when set, /metrics and /readyz require Authorization: Bearer <it> (/healthz stays open)",
        secret=True,
    )
    pool_targets: Mapping[str, int] = _setting(
        "SMSPROXY_POOL_TARGETS", _pool_targets, "numbers to hold per country, e.g. GB=3,US=2"
    )
    pool_maximums: Mapping[str, int] = _setting(
        "SMSPROXY_POOL_MAXIMUMS", _pool_targets, "the most numbers to hold per country, e.g. GB=10"
    )
    pool_monthly_budget: float = _setting(
        "SMSPROXY_POOL_MONTHLY_BUDGET", _non_negative_float,
        "total monthly rental the pool may reach (0: no cap); buying stops there",
    )
    pool_adopt: bool = _setting(
        "SMSPROXY_POOL_ADOPT", _flag,
        "adopt numbers the account owns but the proxy did not buy (ours are always kept)",
    )
    pool_release: bool = _setting(
        "SMSPROXY_POOL_RELEASE", _flag,
        "drain idle numbers above the target and cancel them once no live route uses them",
    )
    pool_maintenance_seconds: float = _setting(
        "SMSPROXY_POOL_MAINTENANCE_SECONDS", _non_negative_float,
        "how often beat runs pool maintenance",
    )
    number_change_template: str = _setting(
        "SMSPROXY_NUMBER_CHANGE_TEMPLATE", _template_of("number"),
        "SMS sent when a proxy number is lost; {number} is the new number to text",
    )
    default_ttl_seconds: int = _setting(
        "SMSPROXY_DEFAULT_TTL_SECONDS", _positive_int, "conversation lifetime when none is given"
    )
    max_ttl_seconds: int = _setting(
        "SMSPROXY_MAX_TTL_SECONDS", _positive_int, "the longest ttl_seconds a client may ask for"
    )
    insight_cache_seconds: int = _setting(
        "SMSPROXY_INSIGHT_CACHE_SECONDS", _positive_int,
        "how long a number's Number Insight answer (its country) is reused",
    )
    intro_template: str = _setting(
        "SMSPROXY_INTRO_TEMPLATE", _template_of("counterpart"),
        "intro SMS; {counterpart} is the other side's name (no other braces)",
    )
    country_fallback: bool = _setting(
        "SMSPROXY_COUNTRY_FALLBACK", _flag,
        "when a participant's country has no free number, use another country's",
    )
    buy_on_demand: bool = _setting(
        "SMSPROXY_BUY_ON_DEMAND", _flag, "buy a number on the fly when the pool is short"
    )
    extend_on_activity: bool = _setting(
        "SMSPROXY_EXTEND_ON_ACTIVITY", _flag,
        "every relayed message pushes the expiry to now + the conversation's TTL",
    )
    callback_secret: str | None = _setting(
        "SMSPROXY_CALLBACK_SECRET", _optional_text,
        "HMAC-SHA256 key signing status callbacks (needed to accept a callback_url)",
        secret=True,
    )
    allow_http_callbacks: bool = _setting(
        "SMSPROXY_ALLOW_HTTP_CALLBACKS", _flag,
        "accept plain-http callback URLs (development only: events travel unencrypted)",
    )
    callback_allowed_hosts: frozenset[str] = _setting(
        "SMSPROXY_CALLBACK_ALLOWED_HOSTS", parse_hosts,
        "comma-separated hosts callbacks may reach whatever their address (local receivers)",
    )
    out_of_session_reply: str | None = _setting(
        "SMSPROXY_OUT_OF_SESSION_REPLY", _optional_text, "reply to texts with no live route"
    )
    out_of_session_reply_interval_seconds: int = _setting(
        "SMSPROXY_OUT_OF_SESSION_REPLY_INTERVAL_SECONDS", _positive_int,
        "at most one out-of-session reply per sender within this many seconds",
    )
    out_of_session_reply_countries: frozenset[str] = _setting(
        "SMSPROXY_OUT_OF_SESSION_REPLY_COUNTRIES", _countries,
        "countries out-of-session replies may go to besides those the pool serves "
        "(comma-separated ISO codes; * for any)",
    )
    relay_prefix: str = _setting(
        "SMSPROXY_RELAY_PREFIX", str, "text put before every relayed message (empty: none)"
    )
    mask_kinds: frozenset[ContactKind] = _setting(
        "SMSPROXY_MASK_KINDS", parse_kinds,
        "contact details masked in relayed text: comma-separated phone, email, link (none: "
        "off); a create request may choose its own",
    )
    mask_marker: str = _setting(
        "SMSPROXY_MASK_MARKER", _mask_marker, "what each masked contact detail becomes"
    )
    opt_out_keywords: frozenset[str] = _setting(
        "SMSPROXY_OPT_OUT_KEYWORDS", _keywords,
        "comma-separated words that, as a whole text (any case), opt the sender out of the "
        "number they texted; never relayed (empty: none)",
    )
    opt_in_keywords: frozenset[str] = _setting(
        "SMSPROXY_OPT_IN_KEYWORDS", _keywords,
        "words that opt an opted-out sender back in (from anyone else they are relayed)",
    )
    help_keywords: frozenset[str] = _setting(
        "SMSPROXY_HELP_KEYWORDS", _keywords, "words answered with the help reply, never relayed"
    )
    opt_out_reply: str = _setting(
        "SMSPROXY_OPT_OUT_REPLY", _literal, "the one confirmation of an opt-out (literal text)"
    )
    opt_in_reply: str = _setting(
        "SMSPROXY_OPT_IN_REPLY", _literal, "the one confirmation of an opt-in (literal text)"
    )
    help_reply: str = _setting(
        "SMSPROXY_HELP_REPLY", _literal, "the answer to a help keyword (literal text)"
    )
    opted_out_notice_template: str = _setting(
        "SMSPROXY_OPTED_OUT_NOTICE_TEMPLATE", _template_of("counterpart"),
        "told once to the other side of an opt-out; {counterpart} is the name of who opted out",
    )
    dedupe_ttl_seconds: int = _setting(
        "SMSPROXY_DEDUPE_TTL_SECONDS", _positive_int, "how long a webhook messageId is remembered"
    )
    retain_bodies: bool = _setting(
        "SMSPROXY_RETAIN_BODIES", _flag, "keep message bodies in the audit trail after sending"
    )
    send_rate_per_second: float = _setting(
        "SMSPROXY_SEND_RATE_PER_SECOND", _non_negative_float,
        "sends per second across all workers (Vonage: 30 per API key; 0: no limit)",
    )
    send_burst: int = _setting(
        "SMSPROXY_SEND_BURST", _positive_int, "sends allowed at once above the steady rate"
    )
    inline_sends: bool = _setting(
        "SMSPROXY_INLINE_SENDS", _flag,
        "the relay task sends at once (one task per message), the create task both intros; "
        "retries use the outbound queue",
    )
    send_max_attempts: int = _setting(
        "SMSPROXY_SEND_MAX_ATTEMPTS", _positive_int, "Vonage calls per message before giving up"
    )
    send_max_age_seconds: int = _setting(
        "SMSPROXY_SEND_MAX_AGE_SECONDS", _positive_int,
        "a message not sent within this long is recorded as failed, not sent late",
    )
    concat_timeout_seconds: int = _setting(
        "SMSPROXY_CONCAT_TIMEOUT_SECONDS", _positive_int,
        "how long a multi-part message waits for missing parts before relaying what arrived",
    )
    out_of_session_callback_url: str | None = _setting(
        "SMSPROXY_OUT_OF_SESSION_CALLBACK_URL", _optional_text,
        "where to POST a signed event when a text arrives with no live route",
    )
    visibility_timeout_seconds: int = _setting(
        "SMSPROXY_VISIBILITY_TIMEOUT_SECONDS", _positive_int,
        "how soon a task whose worker died runs again; every retry delay stays below a third",
    )
    publish_timeout_seconds: float = _setting(
        "SMSPROXY_PUBLISH_TIMEOUT_SECONDS",
        _non_negative_float,
        "longest a webhook waits for the broker before answering 503",
    )
    min_replicas_acked: int = _setting(
        "SMSPROXY_MIN_REPLICAS_ACKED", _non_negative_int,
        "replicas that must hold a webhook's job (Redis WAIT, within the publish timeout) "
        "before it is acknowledged, else 503 (0: no wait, a single Redis)",
    )
    worker_concurrency: int = _setting(
        "SMSPROXY_WORKER_CONCURRENCY", _positive_int, "threads per worker process (sends in flight)"
    )
    conversation_relay_rate_per_minute: float = _setting(
        "SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE", _non_negative_float,
        "steady relays per minute in one conversation, both directions (0: no limit)",
    )
    conversation_relay_burst: int = _setting(
        "SMSPROXY_CONVERSATION_RELAY_BURST", _positive_int,
        "relays one conversation may make at once above its steady rate",
    )
    conversation_daily_relays: int = _setting(
        "SMSPROXY_CONVERSATION_DAILY_RELAYS", _non_negative_int,
        "relays per conversation per 24 h (0: no cap)",
    )
    cap_notice_template: str = _setting(
        "SMSPROXY_CAP_NOTICE_TEMPLATE", _template_of("window"),
        "told once per window to a sender over a conversation's cap; {window} is when to "
        "try again",
    )
    daily_send_limit: int = _setting(
        "SMSPROXY_DAILY_SEND_LIMIT", _non_negative_int,
        "sends per UTC day after which non-essential sends stop (0: no limit)",
    )
    max_relay_parts: int = _setting(
        "SMSPROXY_MAX_RELAY_PARTS", _positive_int,
        "the most SMS parts one relayed message may take; a longer text is cut to fit",
    )
    log_level: str = _setting("SMSPROXY_LOG_LEVEL", _text, "DEBUG, INFO, WARNING or ERROR")
    log_format: LogFormat = _setting(
        "SMSPROXY_LOG_FORMAT", parse_log_format,
        "text (default) or json: one JSON object per line (docs/operations.md)",
    )
    otel_endpoint: str | None = _setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT", _optional_text,
        "when set, traces go there over OTLP/HTTP (the OpenTelemetry SDK's own variable); "
        "unset, tracing is off",
    )
    otel_service_name: str | None = _setting(
        "OTEL_SERVICE_NAME", _optional_text,
        "the traces' service name (default smsproxy-web, smsproxy-worker, smsproxy-beat)",
    )
    console_secret_key: str | None = _setting(
        "SMSPROXY_CONSOLE_SECRET_KEY", _optional_text,
        "signs the console's session cookie (at least 32 characters); unset: no console",
    )
    operators: frozenset[str] = _setting(
        "SMSPROXY_OPERATORS", _names,
        "comma-separated client names that act on the whole deployment: the block list, and "
        "the console's pool, overview and audit",
    )
    legacy_client: str | None = _setting(
        "SMSPROXY_LEGACY_CLIENT", _optional_text,
        "the client (of SMSPROXY_API_TOKENS) that owns conversations stored before clients had "
        "names; unset: the only client when there is one, else no client sees them",
    )
    console_session_seconds: int = _setting(
        "SMSPROXY_CONSOLE_SESSION_SECONDS", _positive_int,
        "how long a console sign-in lasts, from signing in (not extended by use)",
    )
    console_secure_cookie: bool = _setting(
        "SMSPROXY_CONSOLE_SECURE_COOKIE", _flag,
        "mark the console's cookie Secure (sent over HTTPS only); false for plain-http dev only",
    )
    console_login_rate_limit: str = _setting(
        "SMSPROXY_CONSOLE_LOGIN_RATE_LIMIT", _required_rate_limits,
        "sign-in attempts per address, e.g. 10/minute;50/hour; beyond it 429",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping, raising SettingsError naming a bad one."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            name = item.metadata["env"]
            raw = environ.get(name)
            if raw is None:
                raw = _DEFAULTS.get(name)
                if name == "CELERY_BROKER_URL" and raw is None:
                    raw = environ.get("REDIS_URL", _DEFAULTS["REDIS_URL"])
            if raw is None:
                raw = ""
            try:
                values[item.name] = item.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Cross-field checks that a single parser cannot make."""
        for name, url in (("REDIS_URL", self.redis_url), ("CELERY_BROKER_URL", self.broker_url)):
            try:
                if is_sentinel_url(url):
                    parse_sentinel_url(url)
                celery_broker(url)
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None
        if self.default_ttl_seconds > self.max_ttl_seconds:
            raise SettingsError(
                "SMSPROXY_DEFAULT_TTL_SECONDS: must not exceed SMSPROXY_MAX_TTL_SECONDS"
            )
        if self.concat_timeout_seconds > self.visibility_timeout_seconds / 2:
            # The wait is a task countdown: one longer than the visibility timeout makes the broker
            # hand the waiting task out again and again (kombu#337).
            raise SettingsError(
                "SMSPROXY_CONCAT_TIMEOUT_SECONDS: must be at most half of "
                "SMSPROXY_VISIBILITY_TIMEOUT_SECONDS"
            )
        if is_amqp(self.broker_url) and (
            self.visibility_timeout_seconds >= RABBITMQ_CONSUMER_TIMEOUT_SECONDS
        ):
            # On RabbitMQ a countdown's message is held unacknowledged in the worker until it is
            # due; held past the broker's consumer_timeout (30 min by default), RabbitMQ closes
            # the channel and every delivery on it comes back. Every countdown is bounded by the
            # visibility timeout (half of it, or a third), so bounding that bounds them all.
            raise SettingsError(
                "SMSPROXY_VISIBILITY_TIMEOUT_SECONDS: with a RabbitMQ broker it bounds every "
                f"countdown, so it must be below RabbitMQ's consumer_timeout "
                f"({RABBITMQ_CONSUMER_TIMEOUT_SECONDS} s)"
            )
        if self.out_of_session_callback_url and not self.callback_secret:
            raise SettingsError(
                "SMSPROXY_OUT_OF_SESSION_CALLBACK_URL: needs SMSPROXY_CALLBACK_SECRET to sign"
            )
        if self.out_of_session_callback_url:
            try:
                check_url(self.out_of_session_callback_url, self.callback_policy)
            except UnsafeDestination as exc:
                raise SettingsError(f"SMSPROXY_OUT_OF_SESSION_CALLBACK_URL: {exc}") from None
        lists = {"SMSPROXY_OPT_OUT_KEYWORDS": self.opt_out_keywords,
                 "SMSPROXY_OPT_IN_KEYWORDS": self.opt_in_keywords,
                 "SMSPROXY_HELP_KEYWORDS": self.help_keywords}
        for name, words in lists.items():
            for other, others in lists.items():
                if name < other and words & others:
                    raise SettingsError(
                        f"{name}: {', '.join(sorted(words & others))} also in {other}"
                    )
        if self.public_base_url and not self.public_base_url.startswith(("http://", "https://")):
            raise SettingsError("PUBLIC_BASE_URL: must start with http:// or https://")
        if self.buy_on_demand and not self.pool_maximums and not self.pool_monthly_budget:
            # Every create could otherwise rent a number: spend without a ceiling.
            raise SettingsError(
                "SMSPROXY_BUY_ON_DEMAND: needs SMSPROXY_POOL_MAXIMUMS (per country) or "
                "SMSPROXY_POOL_MONTHLY_BUDGET, so that buying has a ceiling"
            )
        if self.listed_vonage_accounts and (
            self.vonage_api_key or self.vonage_api_secret or self.vonage_signature_secret
        ):
            # Two sources of credentials would leave which one a number sends from to guesswork.
            raise SettingsError(
                "SMSPROXY_VONAGE_ACCOUNTS: set either it or VONAGE_API_KEY, VONAGE_API_SECRET "
                "and VONAGE_SIGNATURE_SECRET, not both (list the first account in it)"
            )
        if self.otel_endpoint and not self.otel_endpoint.startswith(("http://", "https://")):
            raise SettingsError(
                "OTEL_EXPORTER_OTLP_ENDPOINT: must start with http:// or https:// "
                "(the OTLP/HTTP collector's base URL)"
            )

        if self.console_secret_key is not None and len(self.console_secret_key) < 32:
            raise SettingsError(
                "SMSPROXY_CONSOLE_SECRET_KEY: must be at least 32 characters (make one with "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if self.legacy_client is not None and self.legacy_client not in self.api_clients.names():
            raise SettingsError(
                f"SMSPROXY_LEGACY_CLIENT: {self.legacy_client} is not a client of "
                "SMSPROXY_API_TOKENS"
            )
        unknown = sorted(self.operators - set(self.api_clients.names()))
        if unknown:
            raise SettingsError(
                f"SMSPROXY_OPERATORS: {', '.join(unknown)} is not a client of "
                "SMSPROXY_API_TOKENS"
            )

    def validate_for_web(self) -> None:
        """What web needs beyond the rest: webhooks are authenticated, or explicitly not."""
        if self.allow_unsigned_webhooks:
            return
        unsigned = [a.api_key for a in self.listed_vonage_accounts if not a.signature_secret]
        if unsigned:
            # A webhook naming that account's key could not be authenticated.
            raise SettingsError(
                f"SMSPROXY_VONAGE_ACCOUNTS: account {unsigned[0]} has no signature secret, so "
                "its webhooks could not be authenticated; give every account one, or set "
                "SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS=true (development only)"
            )
        if not self.listed_vonage_accounts and not self.vonage_signature_secret:
            # Without a secret anyone who finds the URL can inject texts and receipts.
            raise SettingsError(
                "VONAGE_SIGNATURE_SECRET: must be set (the signature secret of the Vonage "
                "account) so that webhooks are authenticated; set "
                "SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS=true to run without it (development only)"
            )

    @property
    def vonage_accounts(self) -> VonageAccounts:
        """Every account the proxy uses: those listed, else the one of VONAGE_API_KEY."""
        if self.listed_vonage_accounts:
            return self.listed_vonage_accounts
        return VonageAccounts.single(
            self.vonage_api_key, self.vonage_api_secret, self.vonage_signature_secret
        )

    @property
    def legacy_owner(self) -> str | None:
        """Who owns the conversations stored before clients had names (they record none): the
        client named for them, else the only client (it held the one token of that time). With
        several, which one made them is not known, so none may see them; they still relay,
        expire and age out."""
        if self.legacy_client is not None:
            return self.legacy_client
        names = self.api_clients.names()
        return names[0] if len(names) == 1 else None

    @property
    def callback_policy(self) -> CallbackPolicy:
        """Where status callbacks and out-of-session events may go."""
        return CallbackPolicy(self.allow_http_callbacks, self.callback_allowed_hosts)

    @property
    def max_backoff_seconds(self) -> float:
        """The longest retry delay: far below the visibility timeout, for the same reason."""
        return max(1.0, self.visibility_timeout_seconds / 3)

    @property
    def inbound_url(self) -> str | None:
        """The inbound-SMS webhook URL every pool number must be configured with."""
        if not self.public_base_url:
            return None
        return f"{self.public_base_url.rstrip('/')}/webhooks/inbound-sms"

    @property
    def receipt_url(self) -> str | None:
        """The delivery-receipt webhook URL given with every send."""
        if not self.public_base_url:
            return None
        return f"{self.public_base_url.rstrip('/')}/webhooks/delivery-receipt"


def documented_variables() -> dict[str, str]:
    """Every environment variable the settings read, with its one-line meaning."""
    return {item.metadata["env"]: item.metadata["doc"] for item in fields(Settings)}


_DEFAULTS: dict[str, str] = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "VONAGE_SIGNATURE_METHOD": "md5hash",
    "SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS": "false",
    "VONAGE_API_HOST": "api.nexmo.com",
    "VONAGE_REST_HOST": "rest.nexmo.com",
    "SMSPROXY_VONAGE_TIMEOUT_SECONDS": "10",
    "SMSPROXY_DEFAULT_TTL_SECONDS": "86400",
    "SMSPROXY_POOL_MONTHLY_BUDGET": "0",
    "SMSPROXY_POOL_ADOPT": "false",
    "SMSPROXY_POOL_RELEASE": "false",
    "SMSPROXY_POOL_MAINTENANCE_SECONDS": "60",
    "SMSPROXY_NUMBER_CHANGE_TEMPLATE": (
        "Your conversation has moved to a new number: {number}. "
        "Please text that number from now on."
    ),
    "SMSPROXY_MAX_TTL_SECONDS": "2592000",
    "SMSPROXY_INSIGHT_CACHE_SECONDS": "86400",
    "SMSPROXY_INTRO_TEMPLATE": (
        "You are connected with {counterpart}. Text this number to reach them; "
        "your own number stays private."
    ),
    "SMSPROXY_RELAY_PREFIX": "",
    "SMSPROXY_MASK_KINDS": "phone,email",
    "SMSPROXY_MASK_MARKER": "[hidden]",
    "SMSPROXY_OUT_OF_SESSION_REPLY_INTERVAL_SECONDS": "86400",
    "SMSPROXY_OUT_OF_SESSION_REPLY_COUNTRIES": "",
    "SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE": "10",
    "SMSPROXY_CONVERSATION_RELAY_BURST": "10",
    "SMSPROXY_CONVERSATION_DAILY_RELAYS": "200",
    "SMSPROXY_CAP_NOTICE_TEMPLATE": (
        "Too many messages in this conversation: yours are not being delivered. "
        "Please try again in {window}."
    ),
    "SMSPROXY_DAILY_SEND_LIMIT": "0",
    "SMSPROXY_MAX_RELAY_PARTS": "10",
    "SMSPROXY_COUNTRY_FALLBACK": "false",
    "SMSPROXY_BUY_ON_DEMAND": "false",
    "SMSPROXY_EXTEND_ON_ACTIVITY": "false",
    # Twilio's default keywords (docs/privacy.md)
    "SMSPROXY_OPT_OUT_KEYWORDS": "STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT,OPTOUT,REVOKE",
    "SMSPROXY_OPT_IN_KEYWORDS": "START,UNSTOP,YES",
    "SMSPROXY_HELP_KEYWORDS": "HELP,INFO",
    "SMSPROXY_OPT_OUT_REPLY": (
        "You will no longer receive texts from this number. Reply START to receive them again."
    ),
    "SMSPROXY_OPT_IN_REPLY": "You will receive texts from this number again. Reply STOP to stop.",
    "SMSPROXY_HELP_REPLY": (
        "This number relays texts for a marketplace conversation; your own number stays "
        "private. Reply STOP to stop texts from this number, START to resume."
    ),
    "SMSPROXY_OPTED_OUT_NOTICE_TEMPLATE": (
        "{counterpart} has opted out of texts in this conversation; your messages will not "
        "reach them by SMS."
    ),
    "SMSPROXY_DEDUPE_TTL_SECONDS": "172800",
    "SMSPROXY_RETAIN_BODIES": "false",
    "SMSPROXY_API_RATE_LIMIT": "100/second;3000/minute",
    "SMSPROXY_CLIENT_MAX_LIVE_CONVERSATIONS": "100000",
    "SMSPROXY_TRUSTED_PROXIES": "0",
    "SMSPROXY_RETENTION_SECONDS": "2592000",
    "SMSPROXY_ALLOW_HTTP_CALLBACKS": "false",
    "SMSPROXY_PUBLISH_TIMEOUT_SECONDS": "2",
    "SMSPROXY_MIN_REPLICAS_ACKED": "0",
    "SMSPROXY_SEND_RATE_PER_SECOND": "30",
    "SMSPROXY_SEND_BURST": "5",
    "SMSPROXY_INLINE_SENDS": "true",
    "SMSPROXY_SEND_MAX_ATTEMPTS": "8",
    "SMSPROXY_SEND_MAX_AGE_SECONDS": "3600",
    "SMSPROXY_CONCAT_TIMEOUT_SECONDS": "15",
    "SMSPROXY_VISIBILITY_TIMEOUT_SECONDS": "30",
    "SMSPROXY_WORKER_CONCURRENCY": "32",
    "SMSPROXY_LOG_LEVEL": "INFO",
    "SMSPROXY_LOG_FORMAT": "text",
    "SMSPROXY_CONSOLE_SESSION_SECONDS": "28800",
    "SMSPROXY_CONSOLE_SECURE_COOKIE": "true",
    "SMSPROXY_CONSOLE_LOGIN_RATE_LIMIT": "10/minute;50/hour",
}

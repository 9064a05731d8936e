"""The /v1 API's request and response shapes, as pydantic models.

One source for two uses: the create body and the list query are validated through these models,
and web/openapi.py builds its schemas from them, so the document cannot state other rules than
those the API applies. The response models only describe what web/api.py and shared/public_json.py
render; tests/web/test_openapi.py checks every answer against them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from shared import domain
from shared.callback_urls import UnsafeDestination, check_url
from shared.domain import ConversationStatus, DeliveryState, MessageKind
from shared.masking import ContactKind
from shared.phone import InvalidNumber, to_msisdn
from shared.settings import Settings
from shared.templates import TemplateError, check_template

MAX_METADATA_BYTES = 4096
MAX_DISPLAY_NAME = 64
MAX_INTRO_TEXT = 480
MAX_CALLBACK_URL = 2048
MIN_TTL_SECONDS = 60
MAX_PAGE = 100
DEFAULT_PAGE = 50
# Every id the API gives out: 16 base64url characters (domain.new_conversation_id), or 32 hex
# characters for conversations created before ids were shortened.
CONVERSATION_ID_PATTERN = "^(?:[A-Za-z0-9_-]{16}|[0-9a-f]{32})$"
# The id the document's examples show; tests/web/test_openapi.py seeds a conversation under it.
EXAMPLE_ID = "q3Zb8c1E9d7a4b6c"
_E164_EXAMPLE = "+447400123456"


class RequestError(ValueError):
    """A client error in an API request; `field` names the offending part."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# The type of the errors our own validators raise: their message is already the API's wording.
_RULE = "smsproxy_rule"


def _broken(problem: str) -> PydanticCustomError:
    return PydanticCustomError(_RULE, "{problem}", {"problem": problem})


def _settings(info: ValidationInfo) -> Settings:
    if not isinstance(info.context, Settings):
        raise TypeError("validate with context=<the proxy's Settings>")
    return info.context


def _msisdn(number: str) -> str:
    try:
        return to_msisdn(number)
    except InvalidNumber as exc:
        raise _broken(str(exc)) from None


def _whole_number(value: Any) -> Any:
    # JSON has one number type: 3600.0 is a whole number of seconds.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _ttl_schema(schema: dict[str, Any]) -> None:
    # The maximum and the default are settings: CreateConversation.document_settings adds them.
    _no_default(schema)
    schema["minimum"] = MIN_TTL_SECONDS


def _sometimes(description: str) -> Any:
    """A key an answer sometimes leaves out (never null): optional, with no default to state."""
    return Field(default=None, description=description, json_schema_extra=_no_default)


ConversationId = Annotated[str, Field(pattern=CONVERSATION_ID_PATTERN, examples=[EXAMPLE_ID])]
E164 = Annotated[str, Field(examples=[_E164_EXAMPLE])]
IdempotencyKey = Annotated[str, Field(
    pattern="^[!-~]{1,128}$",
    description="1 to 128 visible ASCII characters. The same key and body answer the same "
                "conversation for 24 h; the same key with another body answers 409.",
)]
IDEMPOTENCY_KEY: TypeAdapter[str] = TypeAdapter(IdempotencyKey)


# Requests


class NewParticipant(BaseModel):
    """One participant of a new conversation."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # After validation: the msisdn (digits only), whatever written form was sent.
    number: Annotated[str, Field(
        max_length=32,
        description="A phone number in international form in ASCII digits: E.164, or with "
                    "spaces or a 00 prefix; must be a possible number for its country.",
        examples=[_E164_EXAMPLE],
    ), AfterValidator(_msisdn)]
    display_name: str | None = Field(
        None, min_length=1, max_length=MAX_DISPLAY_NAME,
        description="How the other participant's intro names this one.",
    )


class CreateConversation(BaseModel):
    """The body of `POST /v1/conversations`."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{
        "participants": [
            {"number": "+447400123456", "display_name": "Rita"},
            {"number": "+447400654321", "display_name": "Dev"},
        ],
        "ttl_seconds": 3600,
    }]})

    # Fields in the order they are judged: the first problem is the one reported.
    participants: list[NewParticipant] = Field(
        min_length=2, max_length=2, description="Exactly two participants with different numbers."
    )
    # Absent, it is the settings' default, which _default_ttl puts in (the 0 only marks absence
    # and never comes out of validation); null is refused like any other non-integer.
    ttl_seconds: Annotated[int, BeforeValidator(_whole_number)] = Field(
        default=0,
        description="From 60 to SMSPROXY_MAX_TTL_SECONDS; defaults to "
                    "SMSPROXY_DEFAULT_TTL_SECONDS.",
        json_schema_extra=_ttl_schema,
    )
    callback_url: str | None = Field(
        None, max_length=MAX_CALLBACK_URL,
        description="An https URL for signed status events (plain http only where the proxy "
                    "allows it); its host must not be a loopback, private or link-local "
                    "address, nor hold a user name. Needs SMSPROXY_CALLBACK_SECRET set on "
                    "the proxy.",
    )
    intro_text: str | None = Field(
        None, min_length=1, max_length=MAX_INTRO_TEXT,
        description="Replaces the intro template for this conversation: literal text, where "
                    "each {counterpart} becomes the other participant's display name; no other "
                    "braces.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=f"Any JSON object of at most {MAX_METADATA_BYTES} bytes, echoed back.",
    )
    # strict mode takes no string for an enum: the kinds are read as strings, then checked
    mask: list[Annotated[str, WithJsonSchema(
        {"type": "string", "enum": [k.value for k in ContactKind]}
    )]] | None = Field(
        None, max_length=len(ContactKind),
        description="The contact details replaced by a marker in this conversation's relayed "
                    "texts: any of phone, email, link; [] masks nothing. Absent or null: the "
                    "proxy's SMSPROXY_MASK_KINDS.",
    )

    @field_validator("participants", mode="before")
    @classmethod
    def _count_first(cls, value: Any) -> Any:
        # pydantic counts only once every item passed; one bad participant of one is first of
        # all one too few.
        if isinstance(value, list) and len(value) != 2:
            raise _broken("must have exactly two participants")
        return value

    @field_validator("participants")
    @classmethod
    def _different_numbers(cls, participants: list[NewParticipant]) -> list[NewParticipant]:
        first, second = participants
        if first.number == second.number:
            raise _broken("must be two different numbers")
        return participants

    @field_validator("ttl_seconds")
    @classmethod
    def _ttl_in_range(cls, ttl: int, info: ValidationInfo) -> int:
        longest = _settings(info).max_ttl_seconds
        if not MIN_TTL_SECONDS <= ttl <= longest:
            raise _broken(f"must be between {MIN_TTL_SECONDS} and {longest}")
        return ttl

    @model_validator(mode="after")
    def _default_ttl(self, info: ValidationInfo) -> CreateConversation:
        if "ttl_seconds" not in self.model_fields_set:
            self.ttl_seconds = _settings(info).default_ttl_seconds
        return self

    @field_validator("callback_url")
    @classmethod
    def _callback_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None:
            return None
        settings = _settings(info)
        try:
            check_url(url, settings.callback_policy)
        except UnsafeDestination as exc:
            raise _broken(str(exc)) from None
        if not settings.callback_secret:
            raise _broken("needs SMSPROXY_CALLBACK_SECRET set on the proxy to sign events")
        return url

    @field_validator("intro_text")
    @classmethod
    def _intro_template(cls, text: str | None) -> str | None:
        if text is None:
            return None
        try:
            return check_template(text, "counterpart")
        except TemplateError as exc:
            raise _broken(str(exc)) from None

    @field_validator("mask")
    @classmethod
    def _mask_kinds(cls, kinds: list[str] | None) -> list[str] | None:
        if kinds is None:
            return None
        allowed = {k.value for k in ContactKind}
        for kind in kinds:
            if kind not in allowed:
                raise _broken(f"{kind[:20]!r} is not one of {', '.join(sorted(allowed))}")
        if len(set(kinds)) != len(kinds):
            raise _broken("must not name a kind twice")
        return kinds

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        try:
            # NaN and Infinity are not JSON: accepting them would poison every later view
            size = len(json.dumps(metadata, separators=(",", ":"), allow_nan=False).encode())
        except ValueError:
            raise _broken("must not contain NaN or Infinity") from None
        if size > MAX_METADATA_BYTES:
            raise _broken(f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
        return metadata

    @classmethod
    def document_settings(cls, schema: dict[str, Any], settings: Settings) -> None:
        """State in this model's JSON schema the limits that come from the proxy's settings,
        those _ttl_in_range and _default_ttl apply."""
        ttl = schema["properties"]["ttl_seconds"]
        ttl["maximum"] = settings.max_ttl_seconds
        ttl["default"] = settings.default_ttl_seconds


@dataclass(frozen=True, slots=True)
class NewConversation:
    """A validated create request."""

    participants: tuple[domain.Participant, domain.Participant]
    ttl_seconds: int
    callback_url: str | None
    metadata: Mapping[str, Any]
    intro_text: str | None = None
    mask: frozenset[ContactKind] | None = None

    def build(self, created_at: float, client: str | None = None) -> domain.Conversation:
        return domain.Conversation(
            id=domain.new_conversation_id(),
            participants=self.participants,
            status=ConversationStatus.PENDING,
            created_at=created_at,
            ttl_seconds=self.ttl_seconds,
            callback_url=self.callback_url,
            metadata=self.metadata,
            intro_text=self.intro_text,
            client=client,
            mask=self.mask,
        )


# What the API says for pydantic's own errors, by field ("Input should be a valid integer"
# names Python types, not the rule); the validators above word their own.
_CREATE_WORDING = {
    "body": "must be a JSON object",
    "participants": "must be a list of two participants",
    "participants[]": "must be an object with a number",
    "participants[].number": "must be a phone number in E.164 form",
    "participants[].display_name": f"must be 1 to {MAX_DISPLAY_NAME} characters",
    "ttl_seconds": "must be a whole number of seconds",
    "callback_url": "must be an https URL",
    "intro_text": f"must be 1 to {MAX_INTRO_TEXT} characters",
    "metadata": "must be a JSON object",
    "mask": "must be a list of phone, email or link",
    "mask[]": "must be a list of phone, email or link",
}


def parse_create_request(body: Any, settings: Settings) -> NewConversation:
    """Validate `POST /v1/conversations`; raise RequestError naming the first problem."""
    try:
        request = CreateConversation.model_validate(body, context=settings)
    except ValidationError as exc:
        raise _request_error(exc, _CREATE_WORDING, "is not a known field") from None
    first, second = (
        domain.Participant(number=p.number, display_name=p.display_name)
        for p in request.participants
    )
    return NewConversation(
        participants=(first, second),
        ttl_seconds=request.ttl_seconds,
        callback_url=request.callback_url,
        metadata=request.metadata,
        intro_text=request.intro_text,
        # fixed at creation: a conversation keeps the terms it started with
        mask=(
            frozenset(ContactKind(k) for k in request.mask) if request.mask is not None
            else settings.mask_kinds
        ),
    )


def encode_cursor(cursor: tuple[float, str]) -> str:
    """The `next_cursor` of a page that ends at (score, conversation id)."""
    return base64.urlsafe_b64encode(f"{cursor[0]!r}|{cursor[1]}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[float, str] | None:
    """The position encode_cursor gave out, or None for anything else."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        score, _, conversation_id = text.partition("|")
        value = float(score)
    except ValueError:  # bad base64, bad UTF-8 or not a number
        return None
    if not re.fullmatch(CONVERSATION_ID_PATTERN, conversation_id) or value != value:  # NaN
        return None
    return value, conversation_id


def _page_size(value: Any) -> Any:
    # Only plain ASCII digits: int() would take "²", "1_0" and 5000-digit numbers.
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,3}", value):
        raise ValueError("not 1 to 3 digits")
    return int(value) if isinstance(value, str) else value


def _cursor(value: Any) -> tuple[float, str]:
    decoded = decode_cursor(value) if isinstance(value, str) else None
    if decoded is None:
        raise _broken("is not a cursor this API gave out")
    return decoded


class ListConversationsQuery(BaseModel):
    """The query of `GET /v1/conversations`; every parameter is optional."""

    model_config = ConfigDict(extra="forbid")

    status: ConversationStatus | None = None
    participant: Annotated[str, AfterValidator(_msisdn)] | None = Field(
        None, description="Only conversations with this number (E.164)."
    )
    limit: Annotated[int, BeforeValidator(_page_size)] = Field(
        DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="How many conversations a page holds."
    )
    cursor: Annotated[
        tuple[float, str], PlainValidator(_cursor), WithJsonSchema({"type": "string"})
    ] | None = Field(None, description="`next_cursor` of the previous page.")


_LIST_WORDING = {
    "status": f"must be one of {', '.join(s.value for s in ConversationStatus)}",
    "limit": f"must be a whole number from 1 to {MAX_PAGE}",
}


def parse_participant_number(raw: str) -> str:
    """The msisdn of `/v1/participants/<number>`; RequestError naming `number` otherwise."""
    if len(raw) > 32:
        raise RequestError("number", "must be a phone number in E.164 form")
    try:
        return to_msisdn(raw)
    except InvalidNumber as exc:
        raise RequestError("number", str(exc)) from None


def parse_list_query(args: Mapping[str, str]) -> ListConversationsQuery:
    """Validate the query of `GET /v1/conversations`; raise RequestError naming the first
    problem."""
    try:
        return ListConversationsQuery.model_validate(dict(args))
    except ValidationError as exc:
        raise _request_error(exc, _LIST_WORDING, "is not a known parameter") from None


def _request_error(
    exc: ValidationError, wording: Mapping[str, str], unknown: str
) -> RequestError:
    error = _first_problem(exc.errors())
    if error["type"] == "extra_forbidden":
        problem = unknown
    elif error["type"] == _RULE:
        problem = error["msg"]
    else:
        problem = wording.get(_path(error["loc"], indexed=False), error["msg"])
    return RequestError(_path(error["loc"]), problem)


def _first_problem(errors: Sequence[ErrorDetails]) -> ErrorDetails:
    """The one error to report, as a reader checking top down would meet it: a container's own
    problem before its contents', an unknown field before its siblings' (a typo usually
    explains them), then fields and items in order (pydantic reports them in that order)."""
    position: dict[tuple[int | str, ...], int] = {}
    for index, error in enumerate(errors):
        loc = tuple(error["loc"])
        for depth in range(1, len(loc) + 1):
            position.setdefault(loc[:depth], index)

    def rank(error: ErrorDetails) -> list[tuple[int, int, str]]:
        loc = tuple(error["loc"])
        key = [(1, position[loc[:depth]], "") for depth in range(1, len(loc) + 1)]
        if error["type"] == "extra_forbidden":  # unknown fields first, by name
            key[-1] = (0, 0, str(loc[-1]))
        return key

    return min(errors, key=rank)


def _path(loc: tuple[int | str, ...], *, indexed: bool = True) -> str:
    """("participants", 1, "number") -> "participants[1].number" (or "participants[].number")."""
    if not loc:
        return "body"
    path = str(loc[0])
    for part in loc[1:]:
        path += (f"[{part}]" if indexed else "[]") if isinstance(part, int) else f".{part}"
    return path


# Responses. The views build plain dicts (shared/public_json.py, web/api.py); these models describe
# them for the document, and docstrings and descriptions are what API clients read.


class Participant(BaseModel):
    """One side of a conversation."""

    number: E164 | None = Field(
        description="The participant's own number; null once their data was erased."
    )
    proxy_number: E164 | None = Field(
        description="The number this participant texts; null until the conversation is active."
    )
    display_name: str | None
    country: str | None = Field(description="ISO 3166 alpha-2.")
    opted_out: bool = Field(
        description="Whether this participant texted an opt-out keyword (STOP) to their proxy "
                    "number and has not opted back in (START): nothing reaches them from it."
    )


class Conversation(BaseModel):
    """A conversation: the same shape in answers and in status callbacks."""

    id: ConversationId
    status: ConversationStatus
    failure_reason: str | None
    participants: list[Participant] = Field(min_length=2, max_length=2)
    ttl_seconds: int
    callback_url: str | None
    metadata: dict[str, Any]
    mask: list[ContactKind] | None = Field(
        description="The contact details masked in its relayed texts; null for a conversation "
                    "made before the choice was stored (it follows SMSPROXY_MASK_KINDS)."
    )
    created_at: datetime = Field(description="When it was requested (UTC).")
    expires_at: datetime | None = Field(
        description="When it ends unless used; null until active."
    )


class ConversationPage(BaseModel):
    """A page of conversations, newest first."""

    conversations: list[Conversation]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class InboundMessage(BaseModel):
    """A text a participant sent to their proxy number."""

    id: str
    direction: Literal["inbound"]
    from_: E164 | None = Field(
        alias="from", description="Who sent it; null once their data was erased."
    )
    parts: int
    received_at: datetime = Field(description="When the proxy received it.")
    text: str = _sometimes("Only with SMSPROXY_RETAIN_BODIES=true.")
    late_part_of: str = _sometimes(
        "Only for a part of a long text that arrived after the text was relayed without it: "
        "the id of that text. Such a part is recorded, never relayed on its own."
    )
    masked: int = _sometimes(
        "Only when its relayed text had contact details replaced: how many (never which)."
    )
    participant_state: Literal["opted_out", "opted_in"] = _sometimes(
        "Only for an opt-out (STOP) or opt-in (START) keyword: the sender's state it set on "
        "their proxy number."
    )
    not_relayed: str = _sometimes(
        "Only when it was not relayed: why (`keyword`, `recipient_opted_out`, `binary`, "
        "`rate_capped`, `daily_capped`, `blocked`, `own_number`)."
    )


class OutboundMessage(BaseModel):
    """A text the proxy sent: an intro or a relay."""

    id: str
    direction: Literal["outbound"]
    kind: MessageKind | None
    from_: E164 = Field(alias="from", description="The proxy number it was sent from.")
    to: E164 | None = Field(description="The recipient; null once their data was erased.")
    status: DeliveryState | None
    parts: int
    attempts: int
    created_at: datetime = Field(description="When the send was owed.")
    submitted_at: datetime | None = Field(description="When Vonage accepted it.")
    error_code: str | None
    error_reason: str | None
    text: str = _sometimes("Only with SMSPROXY_RETAIN_BODIES=true.")


class MessageTrail(BaseModel):
    """A conversation's audit trail."""

    conversation_id: ConversationId
    messages: list[
        Annotated[InboundMessage | OutboundMessage, Field(discriminator="direction")]
    ] = Field(description="Oldest first.")


class PoolNumber(BaseModel):
    """A virtual number of the pool."""

    number: E164 = Field(description="The virtual number.")
    country: str = Field(description="ISO 3166 alpha-2.")
    live_routes: int = Field(ge=0)
    state: str
    monthly_cost: str | None = Field(description="As Vonage quotes it.")


class NumberList(BaseModel):
    """The pool."""

    numbers: list[PoolNumber]


class Erasure(BaseModel):
    """What erasing a participant did, in the calling client's conversations."""

    conversations_closed: int = Field(ge=0, description="Live conversations it closed.")
    conversations_erased: int = Field(
        ge=0, description="Conversations that no longer hold the number or the name."
    )
    messages_erased: int = Field(
        ge=0, description="Message records that no longer hold the number or a body."
    )
    keys_deleted: int = Field(
        ge=0, description="Store entries about the person deleted outright (pair memory, "
                          "cached lookup, their index)."
    )


class ErrorDetail(BaseModel):
    """What went wrong; some errors add more strings, such as `id`."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str]

    code: str = Field(examples=["invalid_field"])
    message: str
    field: str = _sometimes("The offending part of the request.")


class Error(BaseModel):
    """Every error answer."""

    error: ErrorDetail


# Blocked numbers


MAX_BLOCK_REASON = 200
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
_E164 = re.compile(E164_PATTERN)
BlockedNumberPath = Annotated[str, Field(
    pattern=E164_PATTERN, examples=[_E164_EXAMPLE],
    description="The number in E.164 (`+` and 7 to 15 digits).",
)]


def parse_number_path(raw: str) -> str:
    """A number in a URL path: strict E.164 (no spaces or 00 there), as a msisdn."""
    if not _E164.fullmatch(raw):
        raise RequestError("number", "must be a phone number in E.164 form (+ and digits)")
    try:
        return to_msisdn(raw)
    except InvalidNumber as exc:
        raise RequestError("number", str(exc)) from None


def _no_control_characters(text: str) -> str:
    if any(not ch.isprintable() for ch in text):
        raise _broken("must not contain control characters or line breaks")
    return text


class BlockNumber(BaseModel):
    """The optional body of `PUT /v1/blocked-numbers/{number}`."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [{"reason": "reported for spam"}]})

    reason: Annotated[str, AfterValidator(_no_control_characters)] | None = Field(
        None, min_length=1, max_length=MAX_BLOCK_REASON,
        description="Why, for the operators: one line of at most "
                    f"{MAX_BLOCK_REASON} characters.",
    )


_BLOCK_WORDING = {
    "body": "must be a JSON object",
    "reason": f"must be 1 to {MAX_BLOCK_REASON} characters",
}


def parse_block_request(body: Any) -> str | None:
    """Validate the PUT body (None: no body); the reason given, if any."""
    if body is None:
        return None
    try:
        return BlockNumber.model_validate(body).reason
    except ValidationError as exc:
        raise _request_error(exc, _BLOCK_WORDING, "is not a known field") from None


def encode_number_cursor(msisdn: str) -> str:
    """The `next_cursor` of a page of blocked numbers that ends at `msisdn`."""
    return base64.urlsafe_b64encode(msisdn.encode()).decode().rstrip("=")


def _number_cursor(value: Any) -> str:
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (TypeError, ValueError):  # not a string, bad base64 or bad UTF-8
        text = ""
    if not re.fullmatch(r"[1-9][0-9]{6,14}", text):
        raise _broken("is not a cursor this API gave out")
    return text


class ListBlockedNumbersQuery(BaseModel):
    """The query of `GET /v1/blocked-numbers`; every parameter is optional."""

    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, BeforeValidator(_page_size)] = Field(
        DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="How many numbers a page holds."
    )
    cursor: Annotated[
        str, PlainValidator(_number_cursor), WithJsonSchema({"type": "string"})
    ] | None = Field(None, description="`next_cursor` of the previous page.")


def parse_blocked_list_query(args: Mapping[str, str]) -> ListBlockedNumbersQuery:
    """Validate the query of `GET /v1/blocked-numbers`; raise RequestError naming the first
    problem."""
    try:
        return ListBlockedNumbersQuery.model_validate(dict(args))
    except ValidationError as exc:
        raise _request_error(exc, _LIST_WORDING, "is not a known parameter") from None


class BlockedNumber(BaseModel):
    """A blocked number: its texts are never relayed, and it joins no new conversation."""

    number: E164
    reason: str | None
    blocked_at: datetime = Field(description="When it was first blocked (UTC).")


class BlockedNumberPage(BaseModel):
    """A page of blocked numbers, in number order."""

    blocked_numbers: list[BlockedNumber]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Conversation, ConversationPage, MessageTrail, NumberList, Erasure, BlockedNumber,
    BlockedNumberPage, Error,
)

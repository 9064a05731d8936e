"""Vonage's OpenAPI definitions (vendored, see README.md) as validators and described values."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker

SPEC_DIR = Path(__file__).resolve().parent
DELIVERY_RECEIPT_PATH = ("paths", "/{format}", "post", "callbacks", "delivery-receipt",
                         "{$request.body#/callback}", "post", "requestBody")
INBOUND_SMS_PATH = ("x-webhooks", "inbound-sms", "{$request.body#/callback}", "post",
                    "requestBody")


@cache
def definition(name: str) -> dict[str, Any]:
    """One definition file: `sms`, `numbers` or `number-insight`."""
    loaded = yaml.safe_load((SPEC_DIR / f"{name}.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def at(name: str, *path: str) -> Any:
    """The node at `path` in a definition, with `$ref`s followed along the way."""
    node: Any = definition(name)
    for step in path:
        node = resolve(name, node)[step]
    return resolve(name, node)


def resolve(name: str, node: Any) -> Any:
    """`node`, or what its local `$ref` points at."""
    while isinstance(node, dict) and "$ref" in node:
        node = at(name, *node["$ref"].removeprefix("#/").split("/"))
    return node


def validator(name: str, schema: dict[str, Any]) -> OAS30Validator:
    """An OpenAPI 3.0 validator for `schema`, a part of definition `name` (its refs resolve)."""
    # The schema is checked as a document of its own that carries the definition's components,
    # so that `#/components/...` references point where they do in the definition.
    return OAS30Validator(
        {**schema, "components": definition(name)["components"]},
        format_checker=oas30_format_checker,
    )


def response_schema(name: str, path: str, method: str, status: str) -> dict[str, Any]:
    """The JSON schema of one operation's reply."""
    schema = at(name, "paths", path, method, "responses", status, "content", "application/json",
                "schema")
    assert isinstance(schema, dict)
    return schema


def component(name: str, schema_name: str) -> dict[str, Any]:
    """`#/components/schemas/<schema_name>`, as a reference (so errors name the schema)."""
    at(name, "components", "schemas", schema_name)  # fail early on a renamed schema
    return {"$ref": f"#/components/schemas/{schema_name}"}


def webhook_schema(kind: str) -> dict[str, Any]:
    """The body schema of the SMS API's `inbound` or `receipt` webhook."""
    path = INBOUND_SMS_PATH if kind == "inbound" else DELIVERY_RECEIPT_PATH
    schema = at("sms", *path, "content", "application/json", "schema")
    assert isinstance(schema, dict)
    return schema


def inbound_types() -> list[str]:
    """The inbound `type` values, as the definition lists them in the field's description."""
    description = at("sms", "components", "schemas", "InboundMessage", "properties", "type",
                     "description")
    return re.findall(r"^\s*- `(\w+)`", description, flags=re.MULTILINE)


def receipt_statuses() -> list[str]:
    """The delivery-receipt `status` values (`x-possible-values`)."""
    return list(at("sms", "components", "schemas", "DeliveryReceipt", "properties", "status",
                   "x-possible-values"))


def sms_status_codes() -> set[str]:
    """The SMS API's documented `status` values: "0" and the codes of `x-errors`."""
    return {"0", *definition("sms")["x-errors"]}

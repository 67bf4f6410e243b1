"""The API's OpenAPI 3.1 document, from :data:`ENDPOINTS` and the request and result types
themselves (msgspec's JSON Schema): what the schema says is what the parser enforces.

``docs/openapi.json`` is this document; a test keeps it current
(``mtgate openapi docs/openapi.json`` writes it).
"""

from __future__ import annotations

import re
from importlib.metadata import version
from typing import Any

import msgspec

from mtgate.api.app import ErrorBody
from mtgate.api.endpoints import ENDPOINTS, Endpoint

_REF = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"{([a-z_]+)}")

_ERRORS = {
    "401": "No valid bearer token (`unauthorized`)",
    "403": "The token lacks the scope (`forbidden`)",
    "404": "Not found (`not_found`, `unknown_account`)",
    "409": "The order's state forbids the change (`conflict`)",
    "422": "A field is invalid (`invalid_request`, with `field`)",
    "502": "The terminal refused a read (`terminal_error`)",
    "503": "No ready terminal serves the account (`not_routable`)",
    "504": "The terminal did not answer in time (`terminal_timeout`)",
}


def document() -> dict[str, Any]:
    types: list[Any] = [ErrorBody]
    for e in ENDPOINTS:
        types += [t for t in (e.body, e.params, e.response) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    by_type = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, by_type, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mtgate",
            "version": version("mtgate"),
            "description": "The MetaTrader bridge's API for execution engines (docs/api.md).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(
    e: Endpoint, by_type: dict[Any, dict[str, Any]], components: dict[str, Any]
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": e.operation_id, "summary": e.summary}
    if e.scope is not None:
        op["security"] = [{"bearer": []}]
        op["description"] = f"Scope: `{e.scope}`."
    if e.params is not None:
        op["parameters"] = _parameters(e, by_type[e.params], components)
    if e.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": by_type[e.body]}},
        }
    error = {"content": {"application/json": {"schema": by_type[ErrorBody]}}}
    responses: dict[str, Any] = {
        "200": {
            "description": "The result",
            "content": {"application/json": {"schema": by_type[e.response]}},
        }
    }
    for status, text in _ERRORS.items():
        if status in ("401", "403") and e.scope is None:
            continue
        responses[status] = {"description": text, **error}
    op["responses"] = responses
    return op


def _parameters(
    e: Endpoint, schema: dict[str, Any], components: dict[str, Any]
) -> list[dict[str, Any]]:
    resolved = components[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema
    in_path = set(_PATH_PARAM.findall(e.path))
    required = set(resolved.get("required", ()))
    out = []
    for name, prop in resolved["properties"].items():
        where = "path" if name in in_path else "query"
        out.append(
            {
                "name": name,
                "in": where,
                "required": where == "path" or name in required,
                "schema": prop,
            }
        )
    return out


def render() -> str:
    """The document as committed: sorted keys, two-space indents, a final newline."""
    return (
        msgspec.json.format(msgspec.json.encode(document(), order="sorted"), indent=2).decode()
        + "\n"
    )

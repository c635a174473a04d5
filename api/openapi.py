"""The OpenAPI document, adjusted where FastAPI's generated one would not match the API."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

Schema = dict[str, Any]
_REF = "#/components/schemas/"


def _without_null(schema: Schema) -> Schema:
    variants = schema.get("anyOf")
    if not isinstance(variants, list):
        return schema
    kept = [v for v in variants if v.get("type") != "null"]
    if len(kept) != 1 or len(kept) == len(variants):
        return schema
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**kept[0], **rest}


def _form_schemas(document: Schema) -> set[str]:
    names: set[str] = set()
    for item in document.get("paths", {}).values():
        for operation in item.values():
            content = (operation.get("requestBody") or {}).get("content", {})
            ref = content.get("multipart/form-data", {}).get("schema", {}).get("$ref", "")
            if ref.startswith(_REF):
                names.add(ref[len(_REF):])
    return names


def form_fields_without_null(document: Schema) -> Schema:
    """Multipart fields cannot carry null: an optional one is simply left out."""
    schemas = document.get("components", {}).get("schemas", {})
    for name in _form_schemas(document):
        properties = schemas.get(name, {}).get("properties", {})
        for field, schema in properties.items():
            properties[field] = _without_null(schema)
    return document


def rate_limits_documented(document: Schema) -> Schema:
    """Every authenticated operation may answer 429: the limits apply to every key's call."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {})
            if "401" in responses and "429" not in responses:
                responses["429"] = {
                    "description": "Rate limited",
                    "content": responses["401"].get("content", {}),
                }
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the adjusted document at /openapi.json (built once, like FastAPI's own)."""

    generate = app.openapi

    def openapi() -> Schema:
        if app.openapi_schema is None:
            app.openapi_schema = rate_limits_documented(form_fields_without_null(generate()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""The Power Platform custom connector: Swagger 2.0 generated from the app's own OpenAPI 3."""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from api.connector_ops import ADVANCED_FIELDS, API_PROPERTIES, OPERATIONS, ConnectorOp
from api.schemas.webhooks import WebhookEventOut
from api.urls import base_url

Schema = dict[str, Any]
# Keys a Swagger 2.0 schema object may carry (OpenAPI 3.1 / JSON Schema extras are dropped).
_SCHEMA_KEYS = {
    "$ref", "format", "title", "description", "default", "multipleOf", "maximum", "minimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxProperties",
    "minProperties", "required", "enum", "type", "items", "allOf", "properties",
    "additionalProperties", "readOnly", "example",
}
_PARAM_KEYS = {"type", "format", "enum", "default", "maximum", "minimum", "maxLength",
               "minLength", "pattern", "items"}
_REF = re.compile(r"^#/components/schemas/")
EVENT_DEFINITION = "WebhookEventOut"
TRIGGER_BODY = "WhenAJobFinishesBody"


def humanize(name: str) -> str:
    """`max_words` → `Max words` (the designer's label when a field has no title)."""
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def convert_schema(schema: Schema, name: str | None = None) -> Schema:
    """One OpenAPI 3.1 (JSON Schema) object as a Swagger 2.0 schema."""
    if "$ref" in schema:
        return {"$ref": _REF.sub("#/definitions/", schema["$ref"])}
    schema = dict(schema)
    nullable = False
    for key in ("anyOf", "oneOf"):
        if key in schema:
            every = schema.pop(key)
            variants = [v for v in every if v.get("type") != "null"] or [{"type": "string"}]
            nullable = nullable or len(variants) < len(every)
            # Swagger 2.0 has no unions: one variant keeps its shape, several become an object.
            picked = convert_schema(variants[0]) if len(variants) == 1 else {"type": "object"}
            schema = {**picked, **{k: v for k, v in schema.items() if k in _SCHEMA_KEYS}}
    if isinstance(schema.get("type"), list):
        types = [t for t in schema["type"] if t != "null"]
        nullable = nullable or len(types) < len(schema["type"])
        schema["type"] = types[0] if types else "string"
    if "const" in schema:
        schema["enum"] = [schema["const"]]
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        # 3.1 gives the bound as a number; 2.0 wants the bound plus a flag.
        if isinstance(schema.get(key), int | float):
            schema[key.replace("exclusiveM", "m")] = schema[key]
    out: Schema = {k: v for k, v in schema.items() if k in _SCHEMA_KEYS or k.startswith("x-")}
    if "$ref" in out:
        return {"$ref": _REF.sub("#/definitions/", out["$ref"])}
    if nullable:
        out["x-nullable"] = True
    if "items" in out:
        out["items"] = convert_schema(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = convert_schema(out["additionalProperties"])
    if "allOf" in out:
        out["allOf"] = [convert_schema(s) for s in out["allOf"]]
    if "properties" in out:
        out["properties"] = {k: _field(k, v) for k, v in out["properties"].items()}
    if out.get("type") == "object" and not {"properties", "additionalProperties"} & set(out):
        out["additionalProperties"] = True
    return out


def _field(name: str, schema: Schema) -> Schema:
    converted = convert_schema(schema)
    if "$ref" in converted:
        # A bare $ref ignores siblings; allOf lets the field carry its own label.
        converted = {"allOf": [converted]}
    converted["x-ms-summary"] = schema.get("title") or humanize(name)
    if name in ADVANCED_FIELDS:
        converted["x-ms-visibility"] = "advanced"
    return converted


def _parameter(param: Schema) -> Schema:
    schema = convert_schema(param.get("schema", {"type": "string"}))
    out: Schema = {
        "name": param["name"],
        "in": param["in"],
        "required": bool(param.get("required", param["in"] == "path")),
        "description": param.get("description") or schema.get("description")
        or humanize(param["name"]),
        "x-ms-summary": schema.get("title") or humanize(param["name"]),
        **{k: v for k, v in schema.items() if k in _PARAM_KEYS},
    }
    out.setdefault("type", "string")
    if param["in"] == "path":
        out["x-ms-url-encoding"] = "single"
    if param["name"] in ADVANCED_FIELDS:
        out["x-ms-visibility"] = "advanced"
    return out


def _form_parameters(schema: Schema, components: dict[str, Schema]) -> list[Schema]:
    if "$ref" in schema:
        schema = components[_REF.sub("", schema["$ref"])]
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        converted = convert_schema(prop)
        is_file = prop.get("format") == "binary" or "contentMediaType" in prop
        param: Schema = {
            "name": name,
            "in": "formData",
            "required": name in required,
            "type": "file" if is_file else converted.get("type", "string"),
            "description": prop.get("description") or humanize(name),
            "x-ms-summary": prop.get("title") or humanize(name),
        }
        for key in ("enum", "default", "maxLength", "minLength", "pattern"):
            if key in converted and not is_file:
                param[key] = converted[key]
        if param["type"] == "array":
            param["items"] = {"type": converted.get("items", {}).get("type", "string")}
            param["collectionFormat"] = "multi"
        if name in ADVANCED_FIELDS:
            param["x-ms-visibility"] = "advanced"
        params.append(param)
    return params


def _success(operation: Schema, op: ConnectorOp) -> tuple[str, Schema]:
    codes = sorted(c for c in operation.get("responses", {}) if c.startswith("2"))
    code = codes[0] if codes else "200"
    response = operation["responses"].get(code, {})
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    if op.asynchronous:
        # The flow engine polls the 202's Location; the action's output is the 200 at the end.
        out: Schema = {"description": "The finished job (polled from the 202 answer's Location "
                       "until it ended)"}
        code = "200"
    else:
        out = {"description": response.get("description") or "Success"}
    if schema:
        out["schema"] = convert_schema(schema)
    return code, out


def _operation(path_item_op: Schema, op: ConnectorOp, components: dict[str, Schema]) -> Schema:
    params = [_parameter(p) for p in path_item_op.get("parameters", [])]
    consumes = None
    content = path_item_op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body_schema = convert_schema(content["application/json"]["schema"])
        if op.trigger:
            body_schema = {"$ref": f"#/definitions/{TRIGGER_BODY}"}
        params.append({"name": "body", "in": "body", "required": True, "schema": body_schema,
                       "x-ms-summary": "Body"})
    elif "multipart/form-data" in content:
        params += _form_parameters(content["multipart/form-data"]["schema"], components)
        consumes = ["multipart/form-data"]
    code, success = _success(path_item_op, op)
    responses: Schema = {code: success}
    for status, response in path_item_op.get("responses", {}).items():
        if status.startswith(("4", "5")):
            responses[status] = {"description": response.get("description") or "Error"}
    out: Schema = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "description": op.description or path_item_op.get("description") or op.summary,
        "parameters": params,
        "responses": responses,
    }
    if consumes:
        out["consumes"] = consumes
    if op.visibility:
        out["x-ms-visibility"] = op.visibility
    if op.trigger:
        out["x-ms-trigger"] = "single"
        out["x-ms-notification-content"] = {
            "description": "The job that finished",
            "schema": {"$ref": f"#/definitions/{EVENT_DEFINITION}"},
        }
    return out


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref.removeprefix("#/definitions/"))
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _definitions(paths: Schema, all_defs: dict[str, Schema]) -> dict[str, Schema]:
    """Only the definitions the chosen operations reach (keeps the document small)."""
    wanted: set[str] = set()
    _refs(paths, wanted)
    done: dict[str, Schema] = {}
    while wanted - set(done):
        name = sorted(wanted - set(done))[0]
        done[name] = all_defs[name]
        _refs(done[name], wanted)
    return dict(sorted(done.items()))


def _trigger_body(webhook_create: Schema) -> Schema:
    body = copy.deepcopy(webhook_create)
    url = body["properties"]["url"]
    url.update({"x-ms-notification-url": True, "x-ms-visibility": "internal",
                "x-ms-summary": "Callback URL"})
    body["required"] = sorted(set(body.get("required", [])) | {"url"})
    return body


def swagger(openapi: Schema, public_url: str) -> Schema:
    """The connector document for an app's OpenAPI 3 schema served at `public_url`."""
    parts = urlsplit(public_url)
    components = openapi.get("components", {}).get("schemas", {})
    all_defs = {name: convert_schema(s) for name, s in components.items()}
    event = WebhookEventOut.model_json_schema(ref_template="#/components/schemas/{model}")
    all_defs[EVENT_DEFINITION] = convert_schema(event)
    if "JobOut" in all_defs:
        # Typed, so the flow designer offers the job's fields as dynamic content.
        all_defs[EVENT_DEFINITION]["properties"]["data"] = {
            "allOf": [{"$ref": "#/definitions/JobOut"}], "x-ms-summary": "Job"}
    if "WebhookCreate" in all_defs:
        all_defs[TRIGGER_BODY] = _trigger_body(all_defs["WebhookCreate"])
    paths: Schema = {}
    for (method, path), op in OPERATIONS.items():
        operation = openapi.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            paths.setdefault(path, {})[method] = _operation(operation, op, components)
    info = openapi.get("info", {})
    return {
        "swagger": "2.0",
        "info": {
            "title": info.get("title", "llm-jobs"),
            "description": info.get("description") or "llm-jobs",
            "version": info.get("version", "1.0.0"),
            "contact": {"name": "llm-jobs"},
        },
        "host": parts.netloc,
        "basePath": parts.path or "/",
        "schemes": [parts.scheme or "https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": paths,
        "definitions": _definitions(paths, all_defs),
        "parameters": {},
        "responses": {},
        "securityDefinitions": {
            "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        },
        "security": [{"api_key": []}],
        "tags": [],
    }


def api_properties() -> Schema:
    """The connection parameters file (an API key)."""
    return copy.deepcopy(API_PROPERTIES)


router = APIRouter(prefix="/connector", include_in_schema=False)


@router.get("/apiDefinition.swagger.json")
def api_definition(request: Request) -> JSONResponse:
    """The connector's Swagger 2.0 document, for this server's public address."""
    app: FastAPI = request.app
    return JSONResponse(swagger(app.openapi(), base_url(request)))


@router.get("/apiProperties.json")
def api_properties_file() -> JSONResponse:
    """The connector's apiProperties.json."""
    return JSONResponse(api_properties())

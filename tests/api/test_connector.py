"""The Power Platform connector document: valid Swagger 2.0 and every rule the platform sets."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator
from typer.testing import CliRunner

from api.app import create_app
from api.connector import swagger
from cli.main import app as cli
from shared.settings import Settings

PUBLIC = "https://llm.example.com"
ASYNC_ACTIONS = {"Chat", "SummarizeText", "AnalyzeDocument", "SummarizeSpreadsheetRows"}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    schema: dict[str, Any] = create_app(Settings()).openapi()
    return schema


@pytest.fixture(scope="module")
def doc(openapi: dict[str, Any]) -> dict[str, Any]:
    return swagger(openapi, PUBLIC)


def operations(doc: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {op["operationId"]: (method, path, op)
            for path, item in doc["paths"].items() for method, op in item.items()}


def test_is_valid_swagger_2_under_1_mb(doc: dict[str, Any]) -> None:
    validate(doc, cls=OpenAPIV2SpecValidator)
    assert doc["swagger"] == "2.0"
    assert len(json.dumps(doc).encode()) < 1_000_000


def test_host_has_no_scheme(doc: dict[str, Any]) -> None:
    assert doc["host"] == "llm.example.com"
    assert doc["schemes"] == ["https"]
    assert doc["basePath"] == "/"


def test_api_key_header_security(doc: dict[str, Any]) -> None:
    assert doc["securityDefinitions"] == {
        "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    assert doc["security"] == [{"api_key": []}]


def test_has_every_action_and_the_trigger(doc: dict[str, Any]) -> None:
    assert set(operations(doc)) == ASYNC_ACTIONS | {
        "GetJob", "CancelJob", "WhenAJobFinishes", "DeleteWebhook"}


def test_operation_ids_are_unique_pascal_case(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]+", i) for i in ids), ids


def test_summaries_are_short_and_descriptions_present(doc: dict[str, Any]) -> None:
    for _, _, op in operations(doc).values():
        assert 0 < len(op["summary"]) <= 80
        assert not op["summary"].endswith(".")
        assert op["description"].strip()


def test_exactly_one_2xx_response_with_a_schema_and_no_default(doc: dict[str, Any]) -> None:
    for op_id, (method, _, op) in operations(doc).items():
        assert "default" not in op["responses"], op_id
        success = [c for c in op["responses"] if c.startswith("2")]
        assert len(success) == 1, (op_id, success)
        if method != "delete":
            assert "schema" in op["responses"][success[0]], op_id


def test_every_parameter_and_field_has_x_ms_summary(doc: dict[str, Any]) -> None:
    for op_id, (_, _, op) in operations(doc).items():
        for param in op["parameters"]:
            assert param.get("x-ms-summary"), (op_id, param["name"])
    for name, definition in doc["definitions"].items():
        for field, prop in definition.get("properties", {}).items():
            assert prop.get("x-ms-summary"), (name, field)


def test_visibility_marks_advanced_fields(doc: dict[str, Any]) -> None:
    chat = doc["definitions"]["ChatAction"]["properties"]
    assert chat["backend"]["x-ms-visibility"] == "advanced"
    assert "x-ms-visibility" not in chat["prompt"]
    ops = operations(doc)
    assert all(ops[a][2]["x-ms-visibility"] == "important"
               for a in ("Chat", "SummarizeText", "AnalyzeDocument"))


def test_async_actions_document_the_finished_job(doc: dict[str, Any]) -> None:
    for op_id in ASYNC_ACTIONS:
        _, _, op = operations(doc)[op_id]
        assert op["responses"]["200"]["schema"] == {"$ref": "#/definitions/JobOut"}
        assert "Location" in op["description"] or "polls" in op["description"]


def test_trigger_is_a_webhook_with_notification_url(doc: dict[str, Any]) -> None:
    method, path, op = operations(doc)["WhenAJobFinishes"]
    assert (method, path) == ("post", "/v1/webhooks")
    assert op["summary"] == "When a job finishes"
    assert op["x-ms-trigger"] == "single"
    assert "201" in op["responses"]
    body = next(p for p in op["parameters"] if p["in"] == "body")
    definition = doc["definitions"][body["schema"]["$ref"].split("/")[-1]]
    url = definition["properties"]["url"]
    assert url["x-ms-notification-url"] is True
    assert url["x-ms-visibility"] == "internal"
    assert "url" in definition["required"]
    content = op["x-ms-notification-content"]
    event = doc["definitions"][content["schema"]["$ref"].split("/")[-1]]
    assert event["properties"]["data"]["allOf"] == [{"$ref": "#/definitions/JobOut"}]
    assert set(event["properties"]) == {"type", "timestamp", "data"}


def test_unsubscribe_is_an_internal_delete_on_the_location_path(doc: dict[str, Any]) -> None:
    method, path, op = operations(doc)["DeleteWebhook"]
    assert (method, path) == ("delete", "/v1/webhooks/{webhook_id}")
    assert op["x-ms-visibility"] == "internal"
    assert "204" in op["responses"]


def test_spreadsheet_upload_is_form_data(doc: dict[str, Any]) -> None:
    _, _, op = operations(doc)["SummarizeSpreadsheetRows"]
    assert op["consumes"] == ["multipart/form-data"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["file"]["type"] == "file"
    assert params["file"]["required"]
    assert all(p["in"] == "formData" for p in params.values())


def test_routes_are_picked_up_from_the_app(openapi: dict[str, Any]) -> None:
    trimmed = copy.deepcopy(openapi)
    del trimmed["paths"]["/v1/jobs/batch-summarize"]
    doc = swagger(trimmed, PUBLIC)
    validate(doc, cls=OpenAPIV2SpecValidator)
    assert "SummarizeSpreadsheetRows" not in operations(doc)
    renamed = copy.deepcopy(openapi)
    renamed["paths"]["/v1/actions/chat"]["post"]["description"] = "Changed in the app."
    assert operations(swagger(renamed, PUBLIC))["Chat"][2]["description"] == "Changed in the app."


def test_connector_routes_are_not_in_the_openapi_document(openapi: dict[str, Any]) -> None:
    assert not [p for p in openapi["paths"] if p.startswith("/connector")]


def test_export_writes_the_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["connector", "export", str(tmp_path / "out"), "--base-url", PUBLIC])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "apiDefinition.swagger.json").read_text())
    validate(written, cls=OpenAPIV2SpecValidator)
    props = json.loads((tmp_path / "out" / "apiProperties.json").read_text())
    assert props["properties"]["connectionParameters"]["api_key"]["type"] == "securestring"
    assert "paconn create" in (tmp_path / "out" / "README.md").read_text()

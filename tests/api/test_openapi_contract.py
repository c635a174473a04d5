"""The OpenAPI document says what happens: bad bodies, methods, cursors, downloads, numbers."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.stack import Stack

BAD_UTF8 = b"\xff\n\xff"
BAD_MULTIPART = b"--x\r\nnot a part\r\n"


def spec(stack: Stack) -> dict[str, Any]:
    with stack.client() as client:
        document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def documented(document: dict[str, Any], path: str, method: str) -> set[str]:
    return set(document["paths"][path][method]["responses"])


def post_raw(client: httpx.Client, path: str, body: bytes, content_type: str) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": content_type})


def test_unparseable_bodies_are_422_on_the_native_api_and_documented(stack: Stack) -> None:
    document = spec(stack)
    with stack.client(stack.new_key()) as client:
        for path in ("/v1/jobs", "/v1/actions/chat", "/v1/webhooks"):
            for body in (BAD_UTF8, b'{"type": '):
                answer = post_raw(client, path, body, "application/json")
                assert answer.status_code == 422, (path, body, answer.text)
                error = answer.json()["error"]
                assert error["type"] == "invalid_request"
                assert error["request_id"] == answer.headers["x-request-id"]
            assert "422" in documented(document, path, "post")
        multipart = post_raw(client, "/v1/jobs/batch-summarize", BAD_MULTIPART,
                             "multipart/form-data; boundary=x")
        assert multipart.status_code == 422, multipart.text
        assert multipart.json()["error"]["type"] == "invalid_request"


def test_unparseable_bodies_are_400_on_the_openai_routes_and_documented(stack: Stack) -> None:
    document = spec(stack)
    with stack.client(stack.new_key()) as client:
        for path in ("/v1/chat/completions", "/v1/batches"):
            for body in (BAD_UTF8, b'{"model": '):
                answer = post_raw(client, path, body, "application/json")
                assert answer.status_code == 400, (path, body, answer.text)
                assert answer.json()["error"]["type"] == "invalid_request"
                assert answer.json()["error"]["message"]
            assert "400" in documented(document, path, "post")
        upload = post_raw(client, "/v1/files", BAD_MULTIPART, "multipart/form-data; boundary=x")
        assert upload.status_code == 400, upload.text
        assert "400" in documented(document, "/v1/files", "post")


def test_a_wrong_method_names_every_method_of_the_path(stack: Stack) -> None:
    document = spec(stack)
    with stack.client(stack.new_key()) as client:
        for path, concrete in (
            ("/v1/jobs", "/v1/jobs"),
            ("/v1/files", "/v1/files"),
            ("/v1/files/{file_id}", "/v1/files/file_0"),
            ("/v1/webhooks", "/v1/webhooks"),
            ("/v1/webhooks/{webhook_id}", "/v1/webhooks/wh_0"),
        ):
            declared = {m.upper() for m in document["paths"][path]}
            assert len(declared) > 1
            for method in ("OPTIONS", "PUT", "PATCH", "HEAD"):
                answer = client.request(method, concrete)
                assert answer.status_code == 405, (method, path, answer.text)
                allowed = {m.strip() for m in answer.headers["allow"].split(",")}
                assert allowed == declared, (method, path, allowed)
                if method != "HEAD":  # a HEAD answer has no body
                    assert answer.json()["error"]["type"] == "invalid_request"


def test_batch_cursor_is_constrained_by_the_schema_and_a_real_one_pages(stack: Stack) -> None:
    document = spec(stack)
    after = next(p for p in document["paths"]["/v1/batches"]["get"]["parameters"]
                 if p["name"] == "after")
    pattern = after["schema"]["anyOf"][0]["pattern"]
    assert pattern == "^batch_[0-9A-Za-z]+$"
    with stack.client(stack.new_key()) as client:
        refused = client.get("/v1/batches", params={"after": "not-a-batch"})
        assert refused.status_code == 422
        assert refused.json()["error"]["param"] == "after"
        page = client.get("/v1/batches", params={"after": "batch_01zzzzzzzzzzzzzzzzzzzzzzzz"})
        assert page.status_code == 200, page.text
        assert page.json()["data"] == []


def test_chat_completion_accepts_empty_content_like_openai(stack: Stack) -> None:
    with stack.client(stack.new_key()) as client:
        answer = client.post("/v1/chat/completions", json={
            "model": "fake-model", "messages": [{"role": "user", "content": ""}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["object"] == "chat.completion"


def test_batch_summarize_form_fields_say_what_the_form_accepts(stack: Stack) -> None:
    document = spec(stack)
    fields = document["components"]["schemas"]["Body_BatchSummarize"]["properties"]
    # A form cannot carry null: optional fields are left out, never sent as "null".
    assert fields["max_tokens"] == {
        "type": "integer", "minimum": 1, "maximum": 32768, "title": "Max Tokens"}
    assert all("anyOf" not in schema for schema in fields.values())
    with stack.client(stack.new_key()) as client:
        refused = client.post(
            "/v1/jobs/batch-summarize",
            files={"file": ("rows.csv", b"text\nhello\n")},
            data={"column": "text", "max_tokens": "null"},
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["param"] == "max_tokens"


def test_file_content_is_served_with_a_documented_type(stack: Stack) -> None:
    document = spec(stack)
    types = set(document["paths"]["/v1/files/{file_id}/content"]["get"]["responses"]["200"]
                ["content"])
    with stack.client(stack.new_key()) as client:
        for name, data in (("notes.txt", b"plain words\n"), ("lines.jsonl", b'{"a": 1}\n')):
            created = client.post("/v1/files", files={"file": (name, data)},
                                  data={"purpose": "analysis"})
            assert created.status_code == 200, created.text
            content = client.get(f"/v1/files/{created.json()['id']}/content")
            assert content.status_code == 200
            assert content.headers["content-type"].split(";")[0] in types


def test_numbers_and_flags_are_not_coerced_from_other_json_types(stack: Stack) -> None:
    with stack.client(stack.new_key()) as client:
        for body in (
            {"model": "fake-model", "messages": [{"role": "user", "content": "x"}],
             "stream_options": {"include_usage": 0}},
            {"model": "fake-model", "messages": [{"role": "user", "content": "x"}],
             "max_tokens": "5"},
            {"model": "fake-model", "messages": [{"role": "user", "content": "x"}],
             "stream": "yes"},
        ):
            answer = client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 422, (body, answer.text)
        job = client.post("/v1/jobs", json={
            "type": "chat", "input": {"messages": [{"role": "user", "content": "x"}]},
            "options": {"max_tokens": False}})
        assert job.status_code == 422, job.text
        assert job.json()["error"]["param"] == "options.max_tokens"


def test_analyze_action_documents_and_answers_its_cross_field_rules(stack: Stack) -> None:
    operation = spec(stack)["paths"]["/v1/actions/analyze"]["post"]
    assert "exactly one of text and file_id" in operation["description"]
    assert "422" in operation["responses"]
    with stack.client(stack.new_key()) as client:
        for body in (
            {"analysis": "sentiment"},
            {"analysis": "sentiment", "text": "fine", "file_id": "file_0abc"},
            {"analysis": "classification", "text": "fine"},
            {"analysis": "custom", "text": "fine"},
        ):
            answer = client.post("/v1/actions/analyze", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["error"]["type"] == "invalid_request"
        accepted = client.post("/v1/actions/analyze", json={"analysis": "sentiment",
                                                             "text": "fine", "file_id": None})
        assert accepted.status_code == 202, accepted.text

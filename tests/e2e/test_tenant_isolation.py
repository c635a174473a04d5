"""BOLA: every route of the app, walked with another tenant's ids, answers 404.

The routes come from the running API's OpenAPI document, so routes added later are walked
too; a new path parameter this test cannot fill fails it, naming the parameter to teach it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from shared.db import session_scope
from shared.ids import new_id
from shared.models import ApiKey, WebhookDelivery, WebhookSubscription
from tests.fakellm import FakeLLM, Reply
from tests.fixtures.stack import Stack

ID_PATTERN = re.compile(r"\b[a-z]{2,8}_[0-9a-z]{20,}\b")


def _a_objects(stack: Stack, client: httpx.Client, tenant_id: str, model: str) -> dict[str, str]:
    """One object of each kind in tenant A, by the path parameter that names it."""
    chat = client.post("/v1/jobs", json={
        "type": "chat", "backend": "ollama", "model": model,
        "input": {"messages": [{"role": "user", "content": "tenant A's secret"}]}})
    assert chat.status_code == 202, chat.text
    sheet = client.post("/v1/jobs/batch-summarize",
                        files={"file": ("rows.csv", b"text\nfirst row\nsecond row\n")},
                        data={"column": "text", "backend": "ollama", "model": model})
    assert sheet.status_code == 202, sheet.text
    line = ('{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": '
            f'{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}]}}}}\n')
    upload = client.post("/v1/files", files={"file": ("in.jsonl", line.encode())},
                         data={"purpose": "batch"})
    assert upload.status_code < 300, upload.text
    batch = client.post("/v1/batches", json={"input_file_id": upload.json()["id"],
                                             "endpoint": "/v1/chat/completions"})
    assert batch.status_code < 300, batch.text
    keys = client.get("/v1/admin/keys").json()["data"]
    with session_scope(stack.sessions) as session:
        sub = WebhookSubscription(id=new_id("wh"), tenant_id=tenant_id,
                                  url="https://hooks.example/a", events=["job.succeeded"],
                                  secret="whsec_" + uuid.uuid4().hex)
        session.add(sub)
        session.flush()
        delivery = WebhookDelivery(id=new_id("msg"), tenant_id=tenant_id,
                                   subscription_id=sub.id, event_type="job.succeeded",
                                   payload={}, status="failed")
        session.add(delivery)
    stack.wait_job(client, sheet.json()["id"])
    stack.wait_job(client, chat.json()["id"])
    return {
        "job_id": sheet.json()["id"],
        "file_id": upload.json()["id"],
        "batch_id": batch.json()["id"],
        "webhook_id": sub.id,
        "delivery_id": delivery.id,
        "key_id": keys[0]["id"],
        "_chat_job": chat.json()["id"],
    }


def test_every_route_hides_other_tenants_objects(stack: Stack, fake_llm: FakeLLM) -> None:
    model = f"m-{uuid.uuid4().hex[:10]}"
    fake_llm.rule(model, lambda req: Reply("answer"))
    key_a, key_b = stack.new_key(), stack.new_key()
    with stack.client(key_a) as a, stack.client(key_b) as b:
        tenant_a = a.get("/v1/admin/keys").json()["data"][0]
        with stack.sessions() as session:
            row = session.get(ApiKey, tenant_a["id"])
            assert row is not None
            tenant_id = row.tenant_id
        objects = _a_objects(stack, a, tenant_id, model)
        a_ids = set(objects.values())

        spec = a.get("/openapi.json").json()
        walked: list[str] = []
        by_id: list[tuple[str, str]] = []
        for path, ops in spec["paths"].items():
            params = re.findall(r"{(\w+)}", path)
            for method in ops:
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                if not params:
                    if method == "get" and path.startswith("/v1/"):
                        listing = b.get(path)
                        leaked = set(ID_PATTERN.findall(listing.text)) & a_ids
                        assert not leaked, f"GET {path} shows tenant A's {leaked}"
                        walked.append(f"GET {path} (list)")
                    continue
                missing = [p for p in params if p not in objects]
                assert not missing, (
                    f"{method.upper()} {path}: no tenant-A object for {missing}; teach "
                    "_a_objects how to make one"
                )
                url = path.format(**objects)
                by_id.append((method, url))
        # Tenant B first (destructive routes included): every one must be 404.
        for method, url in by_id:
            kwargs: dict[str, Any] = {"json": {}} if method in ("post", "put", "patch") else {}
            answer = b.request(method.upper(), url, **kwargs)
            assert answer.status_code == 404, (
                f"{method.upper()} {url} as B: {answer.status_code} {answer.text[:300]}"
            )
            assert answer.json()["error"]["type"] == "not_found"
            walked.append(f"{method.upper()} {url}")
        # Then A: its objects are all still there and readable, so the ids were real.
        for method, url in by_id:
            if method == "get":
                answer = a.get(url)
                assert answer.status_code != 404, f"GET {url} as A: {answer.text[:300]}"
        chat = a.get(f"/v1/jobs/{objects['_chat_job']}")
        assert chat.status_code == 200
        assert chat.json()["status"] == "succeeded"
        # Ids inside bodies are tenant-checked too.
        stolen = b.post("/v1/batches", json={"input_file_id": objects["file_id"],
                                             "endpoint": "/v1/chat/completions"})
        assert stolen.status_code in (404, 422)
        assert objects["file_id"] in stolen.text
        analyze = b.post("/v1/jobs", json={"type": "analyze", "backend": "ollama",
                                           "input": {"document": {"file_id": objects["file_id"]},
                                                     "analysis": "summary"}})
        assert analyze.status_code in (404, 422)
    assert len([w for w in walked if "{" not in w]) >= 15, walked

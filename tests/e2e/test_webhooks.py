"""Webhooks end to end: subscriptions, signed deliveries to a real receiver, retries, SSRF."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import fake_backends
from tests.fakellm import FakeLLM, Hang, Reply, Status
from tests.fixtures.receiver import Receiver
from tests.fixtures.stack import Stack


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def wstack(
    fake_llm: FakeLLM,
    broker_namespaces: Callable[[], dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """A stack with the webhooks worker, allowed to call the receiver on 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("webhooks-stack")
    env = {
        **fake_backends(fake_llm),
        **broker_namespaces(),
        "LLMJOBS_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "LLMJOBS_WEBHOOK_PROGRESS_INTERVAL_S": "3600",
        "LLMJOBS_WEBHOOK_TIMEOUT_S": "5",
    }
    s = Stack(workdir, f"sqlite:///{workdir / 'llm-jobs.db'}", env).start(
        ["ollama"], webhooks=True
    )
    yield s
    s.stop()


def model() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def chat(content: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "chat", "backend": "ollama", "model": name,
            "input": {"messages": [{"role": "user", "content": content}]}, **extra}


def subscribe(client: httpx.Client, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "description": "test"}
    if events:
        body["events"] = events
    created = client.post("/v1/webhooks", json=body)
    assert created.status_code == 201, created.text
    data: dict[str, Any] = created.json()
    assert created.headers["location"].endswith(f"/v1/webhooks/{data['id']}")
    return data


def verified(secret: str, got: Any) -> dict[str, Any]:
    """The payload, after the reference Standard Webhooks library checked the signature."""
    payload: dict[str, Any] = Webhook(secret).verify(got.body, got.headers)
    return payload


def wait_delivery(client: httpx.Client, webhook_id: str, status: str,
                  timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = client.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["data"]
        if rows and rows[0]["status"] == status:
            first: dict[str, Any] = rows[0]
            return first
        time.sleep(0.2)
    raise AssertionError(f"no {status} delivery for {webhook_id}: {rows}")


def test_succeeded_job_is_posted_signed_to_the_subscriber(
    wstack: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    name = model()
    fake_llm.script(name, Reply("hello back"))
    url = receiver.new_path()
    with wstack.client(wstack.new_key()) as client:
        sub = subscribe(client, url)
        assert sub["secret"].startswith("whsec_")
        assert sub["events"] == ["job.succeeded", "job.failed", "job.cancelled"]
        assert "secret" not in client.get(f"/v1/webhooks/{sub['id']}").json()
        job = client.post("/v1/jobs", json=chat("hi", name)).json()
        got = receiver.wait(url, 1)[0]
        event = verified(sub["secret"], got)
        delivery = wait_delivery(client, sub["id"], "succeeded")
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == job["id"]
    assert event["data"]["result"]["message"]["content"] == "hello back"
    assert got.headers["webhook-id"] == delivery["id"]
    assert delivery["id"].startswith("msg_")
    assert delivery["attempts"] == 1
    assert [a["status_code"] for a in delivery["attempt_log"]] == [200]


def test_failed_and_cancelled_jobs_are_posted(
    wstack: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    failing, hanging = model(), model()
    fake_llm.script(failing, Status(400, body={"error": "bad request"}))
    fake_llm.script(hanging, Hang())
    url = receiver.new_path()
    with wstack.client(wstack.new_key()) as client:
        sub = subscribe(client, url, ["job.failed", "job.cancelled"])
        failed = client.post("/v1/jobs", json=chat("x", failing)).json()
        wstack.wait_job(client, failed["id"])
        cancelled = client.post("/v1/jobs", json=chat("y", hanging)).json()
        assert client.post(f"/v1/jobs/{cancelled['id']}/cancel").status_code == 200
        events = [verified(sub["secret"], r) for r in receiver.wait(url, 2)]
    by_type = {e["type"]: e["data"] for e in events}
    assert by_type["job.failed"]["id"] == failed["id"]
    assert by_type["job.failed"]["status"] == "failed"
    assert by_type["job.cancelled"]["id"] == cancelled["id"]


def test_500_is_retried_with_the_same_webhook_id(
    wstack: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    name = model()
    url = receiver.new_path(500)
    with wstack.client(wstack.new_key()) as client:
        sub = subscribe(client, url)
        client.post("/v1/jobs", json=chat("hi", name))
        first, second = receiver.wait(url, 2, timeout=40)
        delivery = wait_delivery(client, sub["id"], "succeeded")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery["id"]
    assert verified(sub["secret"], second)["type"] == "job.succeeded"
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 200]
    assert delivery["attempt_log"][0]["error"] == "HTTP 500"


def test_410_disables_the_subscription(
    wstack: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    url = receiver.new_path(410)
    with wstack.client(wstack.new_key()) as client:
        sub = subscribe(client, url)
        client.post("/v1/jobs", json=chat("hi", model()))
        delivery = wait_delivery(client, sub["id"], "failed")
        shown = client.get(f"/v1/webhooks/{sub['id']}").json()
        later = client.post("/v1/jobs", json=chat("again", model())).json()
        wstack.wait_job(client, later["id"])
        time.sleep(1)
        deliveries = client.get(f"/v1/webhooks/{sub['id']}/deliveries").json()["data"]
        redeliver = client.post(
            f"/v1/webhooks/{sub['id']}/deliveries/{delivery['id']}/redeliver")
    assert delivery["attempts"] == 1
    assert shown["status"] == "disabled"
    assert "410" in shown["disabled_reason"]
    assert len(deliveries) == 1
    assert len(receiver.received(url)) == 1
    assert redeliver.status_code == 409


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/hook", "private"),
        ("http://[::1]:8080/", "loopback"),
        ("http://167772161/", "non-canonical"),
        ("ftp://example.com/", "scheme"),
    ],
)
def test_unsafe_urls_are_refused_at_registration(wstack: Stack, url: str, reason: str) -> None:
    with wstack.client(wstack.new_key()) as client:
        refused = client.post("/v1/webhooks", json={"url": url})
        as_callback = client.post("/v1/jobs", json=chat("x", model(), callback_url=url))
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["param"] == "url"
    assert reason in error["message"]
    if url.startswith("http"):
        assert as_callback.status_code == 422, as_callback.text
        # pydantic normalises the URL first (167772161 → 10.0.0.1): refused all the same.
        assert as_callback.json()["error"]["param"] == "callback_url"


def test_redeliver_sends_the_same_event_again(
    wstack: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    url = receiver.new_path()
    with wstack.client(wstack.new_key()) as client:
        sub = subscribe(client, url)
        client.post("/v1/jobs", json=chat("hi", model()))
        delivery = wait_delivery(client, sub["id"], "succeeded")
        again = client.post(f"/v1/webhooks/{sub['id']}/deliveries/{delivery['id']}/redeliver")
        assert again.status_code == 202, again.text
        first, second = receiver.wait(url, 2)
        done = wait_delivery(client, sub["id"], "succeeded")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery["id"]
    assert verified(sub["secret"], second) == verified(sub["secret"], first)
    assert done["attempts"] == 2


def test_job_callback_url_is_signed_with_the_tenant_secret(
    wstack: Stack, receiver: Receiver
) -> None:
    url = receiver.new_path()
    with wstack.client(wstack.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("hi", model(), callback_url=url)).json()
        got = receiver.wait(url, 1)[0]
        secret = client.get("/v1/webhooks/callback-secret").json()["secret"]
        assert client.get("/v1/webhooks/callback-secret").json()["secret"] == secret
    event = verified(secret, got)
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == job["id"]


def test_progress_events_are_throttled(
    wstack: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    name = model()
    fake_llm.rule(name, lambda req: Reply("partial"))
    paragraph = " ".join(f"Sentence {i} talks about the quarterly figures." for i in range(60))
    text = "\n\n".join(f"Section {n}. {paragraph}" for n in range(40))
    url = receiver.new_path()
    with wstack.client(wstack.new_key()) as client:
        sub = subscribe(client, url, ["job.progress", "job.succeeded"])
        job = client.post("/v1/jobs", json={"type": "summarize", "backend": "ollama",
                                            "model": name, "input": {"text": text}}).json()
        done = wstack.wait_job(client, job["id"])
        events = [verified(sub["secret"], r) for r in receiver.wait(url, 2)]
        time.sleep(1)
    assert done["progress"]["total"] > 3
    types = sorted(e["type"] for e in [verified(sub["secret"], r)
                                       for r in receiver.received(url)])
    # Interval is an hour in this stack: exactly one progress event however many steps ended.
    assert types == ["job.progress", "job.succeeded"]
    progress = next(e for e in events if e["type"] == "job.progress")
    assert progress["data"]["status"] == "running"


def test_subscriptions_and_deliveries_are_tenant_isolated(
    wstack: Stack, receiver: Receiver
) -> None:
    url = receiver.new_path()
    with wstack.client(wstack.new_key()) as mine, wstack.client(wstack.new_key()) as other:
        sub = subscribe(mine, url)
        job = other.post("/v1/jobs", json=chat("other tenant", model())).json()
        wstack.wait_job(other, job["id"])
        own = mine.post("/v1/jobs", json=chat("mine", model())).json()
        delivery = wait_delivery(mine, sub["id"], "succeeded")
        base = f"/v1/webhooks/{sub['id']}"
        answers = [
            other.get(base),
            other.get(f"{base}/deliveries"),
            other.post(f"{base}/deliveries/{delivery['id']}/redeliver"),
            other.post(f"{base}/rotate-secret"),
            other.delete(base),
        ]
        assert other.get("/v1/webhooks").json()["data"] == []
        assert [s["id"] for s in mine.get("/v1/webhooks").json()["data"]] == [sub["id"]]
        assert mine.get(base).status_code == 200
    assert [a.status_code for a in answers] == [404] * 5
    assert all(a.json()["error"]["type"] == "not_found" for a in answers)
    assert [verified(sub["secret"], r)["data"]["id"] for r in receiver.received(url)] == [
        own["id"]
    ]


def test_delete_is_safe_to_repeat_and_stops_deliveries(
    wstack: Stack, receiver: Receiver
) -> None:
    url = receiver.new_path()
    with wstack.client(wstack.new_key()) as client:
        sub = subscribe(client, url)
        assert client.delete(f"/v1/webhooks/{sub['id']}").status_code == 204
        assert client.delete(f"/v1/webhooks/{sub['id']}").status_code == 204
        assert client.get(f"/v1/webhooks/{sub['id']}").status_code == 404
        assert client.delete("/v1/webhooks/wh_nope").status_code == 404
        job = client.post("/v1/jobs", json=chat("hi", model())).json()
        wstack.wait_job(client, job["id"])
        time.sleep(1)
    assert receiver.received(url) == []


def test_rotation_signs_with_both_secrets(
    wstack: Stack, receiver: Receiver
) -> None:
    url = receiver.new_path()
    with wstack.client(wstack.new_key()) as client:
        sub = subscribe(client, url)
        rotated = client.post(f"/v1/webhooks/{sub['id']}/rotate-secret").json()
        client.post("/v1/jobs", json=chat("hi", model()))
        got = receiver.wait(url, 1)[0]
    assert rotated["secret"] != sub["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verified(sub["secret"], got) == verified(rotated["secret"], got)


def test_webhooks_need_the_manage_scope(wstack: Stack) -> None:
    key = wstack.new_key(scopes=("jobs:read", "jobs:write"))
    with wstack.client(key) as client:
        answer = client.get("/v1/webhooks")
    assert answer.status_code == 403
    assert "webhooks:manage" in answer.json()["error"]["message"]

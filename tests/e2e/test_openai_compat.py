"""The OpenAI-compatible surface driven by the official `openai` SDK: chat and the Batch API."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.fakellm import FakeLLM, RecordedRequest, Reply, Slow, Status
from tests.fixtures.stack import Stack


def unique_model() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def sdk(stack: Stack, key: str | None = None) -> OpenAI:
    return OpenAI(api_key=key or stack.new_key(), base_url=f"{stack.api_url}/v1", max_retries=0,
                  timeout=60)


def wait_batch(client: OpenAI, batch_id: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            batch.seen = seen  # type: ignore[attr-defined]
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} not finished after {timeout} s: {seen}")


def jsonl(lines: Sequence[dict[str, Any] | str]) -> bytes:
    return "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines).encode()


def request_line(custom_id: str, model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}], **extra},
    }


def read_jsonl(client: OpenAI, file_id: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


# -- chat completions ------------------------------------------------------------------------


def test_chat_completion_runs_as_a_job_with_options_passed_through(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    model = unique_model()
    key = stack.new_key()
    client = sdk(stack, key)
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        stop=["END"],
    )
    assert answer.object == "chat.completion"
    assert answer.id.startswith("chatcmpl-")
    assert answer.model == model
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "echo: hi"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    sent = fake_llm.requests_for(model)
    assert len(sent) == 1
    assert sent[0].path == "/api/chat"
    options = (sent[0].json or {})["options"]
    assert options["temperature"] == 0.2
    assert options["top_p"] == 0.9
    assert options["num_predict"] == 50
    assert options["stop"] == ["END"]
    with stack.client(key) as http:
        jobs = http.get("/v1/jobs", params={"type": "chat"}).json()["data"]
    assert [j["status"] for j in jobs] == ["succeeded"]
    assert jobs[0]["model"] == model


def test_backend_slash_model_n_and_json_mode(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    client = sdk(stack)
    answer = client.chat.completions.create(
        model=f"openai_compatible/{model}",
        messages=[{"role": "user", "content": "give json"}],
        n=2,
        max_completion_tokens=20,
        response_format={"type": "json_object"},
    )
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(json.loads(c.message.content or "") == {"echo": "give json"}
               for c in answer.choices)
    sent = fake_llm.requests_for(model)
    assert len(sent) == 2
    assert {r.path for r in sent} == {"/v1/chat/completions"}
    assert (sent[0].json or {})["response_format"] == {"type": "json_object"}
    assert (sent[0].json or {})["max_tokens"] == 20


def test_streaming_sends_chunks_then_done(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.script(model, Slow(0.3, "one two three four"))
    client = sdk(stack)
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True},
    ))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "stop"
    assert finals[:-1] == [None] * (len(finals) - 1)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_backend_errors_and_bad_requests_use_the_error_shape(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    model = unique_model()
    fake_llm.script(model, Status(400, {"error": {"message": "context too long"}}))
    client = sdk(stack)
    with pytest.raises(openai.BadRequestError) as failed:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert "context too long" in failed.value.message
    assert failed.value.body["param"].startswith("job_")  # type: ignore[index]
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        client.chat.completions.create(model=model, messages=[])
    assert invalid.value.body["param"] == "messages"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        sdk(stack, "lj_live_wrong").chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}])


def test_slow_answer_gives_504_with_the_job_to_poll(make_stack: Any, fake_llm: FakeLLM) -> None:
    own = make_stack(env={"LLMJOBS_OPENAI_CHAT_TIMEOUT_S": "1"})
    model = unique_model()
    fake_llm.script(model, Slow(3, "late answer"))
    key = own.new_key()
    with pytest.raises(openai.APIStatusError) as timed_out:
        sdk(own, key).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}])
    assert timed_out.value.status_code == 504
    job_id = timed_out.value.body["param"]  # type: ignore[index]
    assert job_id in timed_out.value.message
    with own.client(key) as http:
        done = own.wait_job(http, job_id)
    assert done["result"]["message"]["content"] == "late answer"


# -- the Batch API ---------------------------------------------------------------------------


def test_batch_runs_every_line_and_writes_openai_output(
    any_stack: Stack, fake_llm: FakeLLM
) -> None:
    stack = any_stack
    model = unique_model()
    key = stack.new_key()
    client = sdk(stack, key)
    lines = [request_line(f"req-{i}", model, f"question {i}", max_tokens=30) for i in range(120)]
    uploaded = client.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch"
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"team": "finance"})
    assert batch.id.startswith("batch_")
    assert batch.object == "batch"
    assert batch.status == "validating"
    done = wait_batch(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts.total == 120
    assert done.request_counts.completed == 120
    assert done.request_counts.failed == 0
    assert done.metadata == {"team": "finance"}
    assert done.error_file_id is None
    assert done.in_progress_at
    assert done.completed_at
    assert done.expires_at
    assert done.completed_at >= done.in_progress_at >= done.created_at
    output = read_jsonl(client, done.output_file_id)
    assert [o["custom_id"] for o in output] == [f"req-{i}" for i in range(120)]
    first = output[0]
    assert first["id"].startswith("batch_req_")
    assert first["error"] is None
    assert first["response"]["status_code"] == 200
    body = first["response"]["body"]
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "echo: question 0"
    assert body["usage"]["prompt_tokens"] > 0
    assert len(fake_llm.requests_for(model)) == 120
    assert (fake_llm.requests_for(model)[0].json or {})["options"]["num_predict"] == 30
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    listed = client.batches.list(limit=10)
    assert [b.id for b in listed.data] == [batch.id]
    with stack.client(key) as http:
        job = http.get(f"/v1/jobs/{done.job_id}").json()
    assert job["type"] == "openai_batch"
    assert job["status"] == "succeeded"
    progress = job["progress"]
    assert (progress["total"], progress["done"], progress["failed"]) == (120, 120, 0)
    assert {s["kind"] for s in job["steps"]} == {"rows"}


def test_invalid_lines_fail_the_batch_with_line_numbers(stack: Stack) -> None:
    model = unique_model()
    client = sdk(stack)
    good = request_line("a", model, "fine")
    lines: list[dict[str, Any] | str] = [
        good,
        request_line("a", model, "duplicate id"),
        {**request_line("c", model, "wrong url"), "url": "/v1/embeddings"},
        '{"custom_id": "d", "method": "POST", ',
        request_line("e", model, "fine too"),
    ]
    uploaded = client.files.create(file=("bad.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    done = wait_batch(client, batch.id)
    assert done.status == "failed"
    assert done.errors is not None
    found = {(e.line, e.code) for e in done.errors.data}
    assert found == {(2, "duplicate_custom_id"), (3, "mismatched_endpoint"),
                     (4, "invalid_json_line")}
    assert done.output_file_id is None
    assert done.failed_at


def test_cancel_keeps_finished_lines(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.rule(model, lambda req: Reply(delay=0.3))
    client = sdk(stack)
    lines = [request_line(f"c-{i}", model, f"slow {i}") for i in range(400)]
    uploaded = client.files.create(file=("slow.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    deadline = time.monotonic() + 30
    while client.batches.retrieve(batch.id).request_counts.completed < 5:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = wait_batch(client, batch.id)
    assert done.status == "cancelled"
    assert done.cancelled_at
    assert done.cancelling_at
    answered = done.request_counts.completed
    assert 5 <= answered < 400
    output = read_jsonl(client, done.output_file_id)
    assert len(output) == answered
    assert len(fake_llm.requests_for(model)) == answered
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def _fails_every_twentieth(req: RecordedRequest) -> Status | None:
    number = int(req.prompt.rsplit(" ", 1)[1])
    return Status(400, {"error": {"message": f"refused {number}"}}) if number % 20 == 0 else None


def test_thousand_lines_with_five_percent_failures(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.rule(model, _fails_every_twentieth)
    client = sdk(stack)
    lines = [request_line(f"row-{i}", f"openai_compatible/{model}", f"line {i}")
             for i in range(1000)]
    uploaded = client.files.create(file=("big.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    done = wait_batch(client, batch.id, timeout=150)
    assert done.status == "completed"
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (1000, 950, 50)
    output = read_jsonl(client, done.output_file_id)
    errors = read_jsonl(client, done.error_file_id)
    assert len(output) == 950
    assert len(errors) == 50
    assert {e["custom_id"] for e in errors} == {f"row-{i}" for i in range(0, 1000, 20)}
    assert {o["custom_id"] for o in output} == {f"row-{i}" for i in range(1000) if i % 20}
    for line in output:
        number = line["custom_id"].split("-")[1]
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        assert content == f"echo: line {number}"
    failed = errors[0]
    assert failed["response"]["status_code"] == 400
    assert "refused 0" in failed["response"]["body"]["error"]["message"]
    assert len(fake_llm.requests_for(model)) == 1000  # 400s are not retried


def test_models_list_ids_work_as_chat_models(stack: Stack, fake_llm: FakeLLM) -> None:
    client = sdk(stack)
    ids = [m.id for m in client.models.list()]
    assert any(i.startswith("ollama/") for i in ids), ids
    listed = next(i for i in ids if i.startswith("openai_compatible/"))
    before = fake_llm.count(path="/v1/chat/completions")
    answer = client.chat.completions.create(
        model=listed, messages=[{"role": "user", "content": "which model?"}])
    assert answer.choices[0].message.content == "echo: which model?"
    assert answer.model == listed
    assert fake_llm.count(path="/v1/chat/completions") == before + 1

"""Batch-summarize end to end: workbooks in, the same workbooks back with an answer per row."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from shared.models import RowResult, Step
from tests.conftest import StackFactory
from tests.fakellm import FakeLLM, Reply, Status
from tests.fixtures.stack import Stack
from tests.fixtures.workbooks import feedback_workbook, jsonl, read_workbook, submit


def unique_model() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def stored_rows(stack: Stack, job_id: str) -> int:
    with stack.sessions() as session:
        return session.scalar(
            select(func.count()).select_from(RowResult).where(RowResult.job_id == job_id)
        ) or 0


def counts(job: dict[str, Any]) -> dict[str, int]:
    return {k: job["progress"][k] for k in ("total", "done", "failed")}


def wait_until(check: Any, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached after {timeout} s")


def test_workbook_rows_answered_and_everything_else_kept(stack: Stack, fake_llm: FakeLLM) -> None:
    model, rows = unique_model(), 2100
    failing = {i for i in range(rows) if i % 97 == 5}
    fake_llm.rule(model, lambda req: Status(400) if "FAILME" in req.prompt else None)

    def comment(i: int) -> str:
        return f"comment {i} café ✓" + (" FAILME" if i in failing else "")

    data = feedback_workbook(rows, comment, blank_every=500)
    with stack.client(stack.new_key()) as client:
        created = submit(client, data, "feedback.xlsx", column="Comment", model=model,
                         instructions="Summarize {value} (region {row[Region]})")
        assert created.status_code == 202, created.text
        assert created.headers["location"].endswith(f"/v1/jobs/{created.json()['id']}")
        assert created.json()["type"] == "batch"
        assert created.json()["progress"]["total"] == rows
        job = stack.wait_job(client, created.json()["id"], timeout=150)
        output = client.get(f"/v1/jobs/{job['id']}/output")

    assert job["status"] == "succeeded", job
    assert counts(job) == {"total": rows, "done": rows - len(failing), "failed": len(failing)}
    assert job["result"]["rows"] == rows
    assert job["result"]["failed"] == len(failing)
    assert job["result"]["empty_rows"] == 4
    assert job["output_file_url"].endswith(f"/v1/jobs/{job['id']}/output")
    assert job["usage"]["prompt_tokens"] > 0
    assert output.status_code == 200
    assert output.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "feedback-results.xlsx" in output.headers["content-disposition"]

    wb = read_workbook(output.content)
    ws = wb["Feedback"]
    header = [c.value for c in ws[1]]
    assert header == ["Id", "Comment", "Region", "Double", "summary", "error"]
    assert ws["A1"].font.bold
    assert ws.freeze_panes == "A2"
    assert ws.column_dimensions["B"].width == 60
    assert len(ws.data_validations.dataValidation) == 1
    answered = 0
    for line in range(2, ws.max_row + 1):
        ident, text, region, double, summary, error = (c.value for c in ws[line][:6])
        if ident is None:
            assert text is None
            assert summary is None
            continue
        assert double == f"=A{line}*2"
        if ident in failing:
            assert summary is None
            assert "400" in error
        else:
            assert summary == f"echo: Summarize {text} (region {region})"
            assert error is None
        answered += 1
    assert answered == rows
    assert wb["Notes"]["A1"].value == "keep me — ünïcode ✓"
    assert wb["Notes"]["B2"].value == "=1+1"
    # Every row was asked exactly once (failures are permanent 400s: no retries).
    prompts = collections.Counter(r.prompt for r in fake_llm.requests_for(model))
    assert len(prompts) == rows
    assert set(prompts.values()) == {1}


def test_csv_keeps_delimiter_and_bom(any_stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    lines = ["id;text"] + [f"{i};Zeile {i} mit Umlaut ä" for i in range(30)]
    data = "\ufeff" + "\r\n".join(lines) + "\r\n"
    with any_stack.client(any_stack.new_key()) as client:
        created = submit(client, data.encode(), "export.csv", column="B", model=model,
                         output_column="Kurz")
        assert created.status_code == 202, created.text
        job = any_stack.wait_job(client, created.json()["id"], timeout=60)
        output = client.get(f"/v1/jobs/{job['id']}/output")
    assert job["status"] == "succeeded", job
    assert counts(job) == {"total": 30, "done": 30, "failed": 0}
    assert output.headers["content-type"] == "text/csv; charset=utf-8"
    assert output.content.startswith(b"\xef\xbb\xbf")
    text = output.content.decode("utf-8-sig").split("\r\n")
    assert text[0] == "id;text;Kurz"
    assert text[1].startswith("0;Zeile 0 mit Umlaut ä;")
    assert "Zeile 29 mit Umlaut" in text[30]
    assert len(fake_llm.requests_for(model)) == 30


def test_jsonl_classify_validates_labels_with_one_repair(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    seen: collections.Counter[str] = collections.Counter()

    def classify(req: Any) -> Reply:
        text = req.json["messages"][1]["content"]
        seen[text] += 1
        if "awful" in text and seen[text] == 1:
            return Reply('{"label": "terrible"}')  # not a label: one repair attempt follows
        if "broken" in text:
            return Reply('{"label": "maybe"}')  # never valid: the row fails
        return Reply('{"label": "neg"}' if "awful" in text else '{"label": "POS"}')

    fake_llm.rule(model, classify)
    records = [{"id": 1, "review": "great stuff"}, {"id": 2, "review": ""},
               {"id": 3, "review": "awful service"}, {"id": 4, "review": "broken thing"}]
    with stack.client(stack.new_key()) as client:
        created = submit(client, jsonl(records), "reviews.jsonl", column="review", model=model,
                         mode="classify", labels="pos, neg")
        assert created.status_code == 202, created.text
        job = stack.wait_job(client, created.json()["id"], timeout=60)
        output = client.get(f"/v1/jobs/{job['id']}/output")
    assert job["status"] == "succeeded", job
    assert counts(job) == {"total": 3, "done": 2, "failed": 1}
    assert job["result"]["empty_rows"] == 1
    out = [line for line in output.text.splitlines() if line]
    parsed = [json.loads(line) for line in out]
    assert [p.get("label") for p in parsed] == ["pos", None, "neg", None]
    assert "not one of" in parsed[3]["error"]
    assert len(fake_llm.requests_for(model)) == 1 + 2 + 2


def test_job_fails_when_every_row_fails(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.rule(model, lambda req: Status(400))
    with stack.client(stack.new_key()) as client:
        created = submit(client, b"text\nfirst\nsecond\n", "x.csv", column="text", model=model)
        job = stack.wait_job(client, created.json()["id"], timeout=60)
        output = client.get(f"/v1/jobs/{job['id']}/output")
    assert job["status"] == "failed"
    assert job["error"]["type"] == "all_rows_failed"
    assert "every one of the 2 rows failed" in job["error"]["message"]
    assert counts(job) == {"total": 2, "done": 0, "failed": 2}
    assert output.status_code == 404
    assert output.json()["error"]["type"] == "not_found"


def test_chat_finishes_while_a_batch_runs_on_the_same_backend(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    batch_model, chat_model = unique_model(), unique_model()
    fake_llm.rule(batch_model, lambda req: Reply(delay=0.05))
    data = ("text\n" + "".join(f"row {i}\n" for i in range(500))).encode()
    with stack.client(stack.new_key()) as client:
        batch = submit(client, data, "big.csv", column="text", model=batch_model).json()
        wait_until(lambda: stored_rows(stack, batch["id"]) > 20, 60, "batch progress")
        chat = client.post("/v1/jobs", json={
            "type": "chat", "backend": "ollama", "model": chat_model,
            "input": {"messages": [{"role": "user", "content": "quick one"}]},
        }).json()
        chat_done = stack.wait_job(client, chat["id"], timeout=30)
        still = client.get(f"/v1/jobs/{batch['id']}")
        assert chat_done["status"] == "succeeded"
        assert still.status_code == 202, "the batch should still be running"
        assert 0 < still.json()["progress"]["done"] < 500
        assert stack.wait_job(client, batch["id"], timeout=120)["status"] == "succeeded"


def test_run_after_defers_the_batch(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    with stack.client(stack.new_key()) as client:
        created = submit(client, b"text\na\nb\n", "later.csv", column="text", model=model,
                         run_after=when.isoformat().replace("+00:00", "Z"))
        assert created.status_code == 202, created.text
        time.sleep(1)
        early = client.get(f"/v1/jobs/{created.json()['id']}").json()
        assert early["status"] == "queued"
        assert fake_llm.requests_for(model) == []
        job = stack.wait_job(client, created.json()["id"], timeout=60)
    assert job["status"] == "succeeded"
    assert dt.datetime.fromisoformat(job["started_at"]) >= when
    assert len(fake_llm.requests_for(model)) == 2


def test_killed_batch_worker_resumes_without_reasking_stored_rows(
    make_stack: StackFactory, fake_llm: FakeLLM
) -> None:
    stack = make_stack(lanes=True, env={"LLMJOBS_BATCH_ROW_CONCURRENCY": "8"})
    model, rows = unique_model(), 600
    fake_llm.rule(model, lambda req: Reply(delay=0.05))
    data = ("text\n" + "".join(f"line {i}\n" for i in range(rows))).encode()
    with stack.client(stack.new_key()) as client:
        job_id = submit(client, data, "kill.csv", column="text", model=model).json()["id"]
        wait_until(lambda: stored_rows(stack, job_id) >= 100, 60, "100 stored rows")
        stack.kill("worker:ollama:batch")
        with stack.sessions() as session:
            before = set(session.scalars(
                select(RowResult.row_index).where(RowResult.job_id == job_id)))
        assert len(before) < rows, "the batch finished before the kill"
        stack.restart("worker:ollama:batch")
        job = stack.wait_job(client, job_id, timeout=150)
        output = client.get(f"/v1/jobs/{job_id}/output")
    assert job["status"] == "succeeded", job
    assert counts(job) == {"total": rows, "done": rows, "failed": 0}
    table = list(csv.reader(io.StringIO(output.text)))
    assert table[0] == ["text", "summary"]
    assert [r[0] for r in table[1:]] == [f"line {i}" for i in range(rows)]
    assert all(r[1].startswith("echo:") and r[1].endswith(f"\n{r[0]}") for r in table[1:])
    asked = collections.Counter(r.prompt.rsplit("\n", 1)[-1] for r in fake_llm.requests_for(model))
    assert set(asked) == {f"line {i}" for i in range(rows)}
    # Rows stored before the kill (CSV data lines start at file line 2) were never asked again.
    assert all(asked[f"line {index - 2}"] == 1 for index in before)
    again = [p for p, n in asked.items() if n > 1]
    assert len(again) <= 8 + 100, again  # only rows in flight or not yet flushed at the kill
    with stack.sessions() as session:
        attempts = session.scalars(select(Step.attempts).where(Step.job_id == job_id)).all()
    assert max(attempts) >= 2


def test_output_needs_a_finished_job_of_the_same_tenant(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.rule(model, lambda req: Reply(delay=0.3))
    with stack.client(stack.new_key()) as client, stack.client(stack.new_key()) as other:
        job_id = submit(client, b"text\na\n", "a.csv", column="text", model=model).json()["id"]
        early = client.get(f"/v1/jobs/{job_id}/output")
        assert early.status_code == 404
        assert "no output file" in early.json()["error"]["message"]
        assert stack.wait_job(client, job_id)["status"] == "succeeded"
        assert client.get(f"/v1/jobs/{job_id}/output").status_code == 200
        assert other.get(f"/v1/jobs/{job_id}/output").status_code == 404
        assert other.get(f"/v1/jobs/{job_id}").status_code == 404
        listed = client.get("/v1/jobs", params={"type": "batch"}).json()["data"]
        assert [j["id"] for j in listed] == [job_id]



def test_cli_batch_uploads_watches_and_saves(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "notes.csv"
    source.write_bytes(b"text\nalpha\nbeta\n")
    key = stack.new_key()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "batch", str(source), "--column", "text",
         "--instructions", "Shorten: {value}", "--url", stack.api_url, "--key", key],
        env=stack.env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = list(csv.reader(io.StringIO((tmp_path / "notes-results.csv").read_text())))
    assert table == [["text", "summary"], ["alpha", "echo: Shorten: alpha"],
                     ["beta", "echo: Shorten: beta"]]
    assert "2 rows, 0 failed" in done.stdout

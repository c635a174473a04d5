"""Document analysis end to end: upload, extract, chunk, map in parallel, reduce, typed result."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docx
import httpx
import openpyxl
import pytest
from sqlalchemy import select

from orchestrator.plans.analyze import plan_chunks
from shared.analysis import KeyPointsResult, validate_answer
from shared.documents import extract_text
from shared.models import Step
from tests.conftest import fake_backends
from tests.fakellm import FakeLLM, Hang, RecordedRequest, Reply
from tests.fixtures.stack import Stack
from tests.shared.test_extract import encrypt_pdf, make_long_pdf, make_png

CONTEXT = 2048
REDUCE_MARK = "These are results of the same analysis"
POINT_ID = re.compile(r"kp-[0-9a-f]{10}")


@pytest.fixture(scope="module")
def small_stack(
    tmp_path_factory: pytest.TempPathFactory,
    fake_llm: FakeLLM,
    broker_namespaces: Callable[[], dict[str, str]],
) -> Iterator[Stack]:
    """A stack whose models have a 2,048-token context, so long documents give many chunks."""
    workdir = tmp_path_factory.mktemp("analyze-stack")
    env = {**fake_backends(fake_llm), **broker_namespaces(),
           "LLMJOBS_CONTEXT_TOKENS": str(CONTEXT)}
    stack = Stack(workdir, f"sqlite:///{workdir / 'llm-jobs.db'}", env).start(["ollama"])
    yield stack
    stack.stop()


def unique_model() -> str:
    return f"an-{uuid.uuid4().hex[:10]}"


def upload(client: httpx.Client, path: Path, name: str | None = None) -> str:
    response = client.post(
        "/v1/files",
        files={"file": (name or path.name, path.read_bytes())},
        data={"purpose": "analysis"},
    )
    assert response.status_code == 200, response.text
    file_id: str = response.json()["id"]
    return file_id


def analyze(client: httpx.Client, model: str, document: dict[str, Any], analysis: str,
            **extra: Any) -> dict[str, Any]:
    options = extra.pop("options", {})
    response = client.post("/v1/jobs", json={
        "type": "analyze", "backend": "ollama", "model": model, "options": options,
        "input": {"document": document, "analysis": analysis, **extra},
    })
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def counts(job: dict[str, Any], kind: str) -> int:
    return sum(c["count"] for c in job["steps_summary"] if c["kind"] == kind)


def is_reduce(req: RecordedRequest) -> bool:
    return REDUCE_MARK in req.prompt


def key_points_rule(req: RecordedRequest) -> Reply:
    """Map: one long point per chunk, named by a hash of the chunk; reduce: the ids it saw."""
    if is_reduce(req):
        seen = sorted(set(POINT_ID.findall(req.prompt)))
        return Reply(json.dumps({"key_points": seen}))
    point = "kp-" + hashlib.sha1(req.prompt.encode()).hexdigest()[:10]
    # Long partial results (~400 tokens) so they cannot all be merged in one call.
    filler = " ".join(["the chunk discusses revenue, margins and delivery risk"] * 45)
    return Reply(json.dumps({"key_points": [f"{point} {filler}"]}))


def test_60_page_pdf_maps_every_chunk_and_reduces_hierarchically(
    small_stack: Stack, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    model = unique_model()
    fake_llm.rule(model, key_points_rule)
    pdf = make_long_pdf(tmp_path / "annual-report.pdf", pages=60)
    expected = plan_chunks(
        extract_text(pdf, pdf.name), {"analysis": "key_points"}, CONTEXT, {}
    )
    assert len(expected) > 15
    with small_stack.client(small_stack.new_key()) as client:
        job = analyze(client, model, {"file_id": upload(client, pdf)}, "key_points")
        done = small_stack.wait_job(client, job["id"], timeout=120)
    assert done["status"] == "succeeded", done["error"]

    assert counts(done, "map") == len(expected)
    assert done["progress"]["chunks"] == done["progress"]["chunks_done"] == len(expected)
    maps = [r for r in fake_llm.requests_for(model) if not is_reduce(r)]
    reduces = [r for r in fake_llm.requests_for(model) if is_reduce(r)]
    assert sorted(r.prompt.split("Text:\n", 1)[1] for r in maps) == sorted(expected)
    map_points = {"kp-" + hashlib.sha1(r.prompt.encode()).hexdigest()[:10] for r in maps}
    assert len(map_points) == len(expected)
    # Hierarchical: several reduce calls over the map results, then a reduce over those.
    with small_stack.sessions() as session:
        stages = session.scalars(
            select(Step.stage).where(Step.job_id == job["id"], Step.kind == "reduce")
        ).all()
    assert len(set(stages)) >= 2
    first_level = [r for r in reduces if "chunk discusses" in r.prompt]
    assert len(first_level) == stages.count(min(stages)) > 1
    seen_by_reduce = set().union(*(POINT_ID.findall(r.prompt) for r in first_level))
    assert seen_by_reduce == map_points
    typed = KeyPointsResult.model_validate(done["result"])
    assert set(typed.key_points) == map_points
    assert done["steps_total"] == sum(c["count"] for c in done["steps_summary"])
    assert done["steps_total"] == len(expected) + len(stages)


def test_40_page_docx_summary(small_stack: Stack, fake_llm: FakeLLM, tmp_path: Path) -> None:
    model = unique_model()
    fake_llm.rule(model, lambda req: Reply(json.dumps(
        {"summary": "merged summary" if is_reduce(req) else f"part {len(req.prompt)}"}
    )))
    document = docx.Document()
    for page in range(40):
        document.add_heading(f"Clause {page + 1}", level=1)
        for n in range(6):
            document.add_paragraph(
                f"Clause {page + 1}.{n}: the supplier shall deliver the goods on schedule, "
                "invoice monthly and keep the service levels agreed in the annex."
            )
        document.add_page_break()
    path = tmp_path / "contract.docx"
    document.save(str(path))
    expected = plan_chunks(extract_text(path, path.name), {"analysis": "summary"}, CONTEXT, {})
    assert len(expected) > 3
    with small_stack.client(small_stack.new_key()) as client:
        job = analyze(client, model, {"file_id": upload(client, path)}, "summary")
        done = small_stack.wait_job(client, job["id"], timeout=90)
    assert done["status"] == "succeeded", done["error"]
    assert counts(done, "map") == len(expected)
    assert done["result"] == {"summary": "merged summary"}
    reduces = [r for r in fake_llm.requests_for(model) if is_reduce(r)]
    for n in range(len(expected)):
        partial = [r for r in fake_llm.requests_for(model) if not is_reduce(r)][n]
        assert f"part {len(partial.prompt)}" in "".join(r.prompt for r in reduces)


def test_xlsx_with_three_sheets_is_read_whole(
    small_stack: Stack, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    model = unique_model()
    fake_llm.rule(model, lambda req: Reply(json.dumps(
        {"entities": [{"name": "Contoso", "type": "organisation"}]}
    )))
    workbook = openpyxl.Workbook()
    for index, title in enumerate(("Customers", "Orders", "Invoices")):
        sheet = workbook.active if index == 0 else workbook.create_sheet()
        assert sheet is not None
        sheet.title = title
        sheet.append(["id", "value"])
        sheet.append([index, f"cell-of-{title}"])
    path = tmp_path / "export.xlsx"
    workbook.save(path)
    with small_stack.client(small_stack.new_key()) as client:
        job = analyze(client, model, {"file_id": upload(client, path)}, "entities")
        done = small_stack.wait_job(client, job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["result"] == {"entities": [{"name": "Contoso", "type": "organisation"}]}
    prompt = "".join(r.prompt for r in fake_llm.requests_for(model))
    for title in ("Customers", "Orders", "Invoices"):
        assert title in prompt
        assert f"cell-of-{title}" in prompt


@pytest.mark.parametrize(
    ("make", "reason", "words"),
    [
        ("encrypted", "encrypted", "password-protected"),
        ("png", "unsupported_type", "PNG image"),
    ],
)
def test_unreadable_documents_fail_the_job_naming_the_reason(
    small_stack: Stack, fake_llm: FakeLLM, tmp_path: Path, make: str, reason: str, words: str
) -> None:
    model = unique_model()
    if make == "encrypted":
        plain = make_long_pdf(tmp_path / "plain.pdf", pages=2)
        path = encrypt_pdf(plain, tmp_path / "locked.pdf", "s3cret")
    else:
        path = make_png(tmp_path / "scan.png")
    with small_stack.client(small_stack.new_key()) as client:
        job = analyze(client, model, {"file_id": upload(client, path, "scan.pdf")}, "summary")
        done = small_stack.wait_job(client, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "extraction_failed"
    assert done["error"]["reason"] == reason
    assert f"({reason})" in done["error"]["message"]
    assert words in done["error"]["message"]
    assert "scan.pdf" in done["error"]["message"]
    assert fake_llm.requests_for(model) == []


def test_invalid_json_is_repaired_once(small_stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.script(model, Reply("I think it is rather positive!"),
                    Reply('{"sentiment": "Positive", "score": 0.8}'))
    with small_stack.client(small_stack.new_key()) as client:
        job = analyze(client, model, {"text": "We love the new product."}, "sentiment")
        done = small_stack.wait_job(client, job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["result"] == {"sentiment": "positive", "score": 0.8}
    sent = fake_llm.requests_for(model)
    assert len(sent) == 2
    assert "not valid" in sent[1].prompt
    assert sent[1].json["messages"][-2]["content"] == "I think it is rather positive!"
    with small_stack.sessions() as session:
        step = session.scalars(select(Step).where(Step.job_id == job["id"])).one()
    assert step.result is not None
    assert step.result["repaired"] is True


def test_invalid_json_twice_fails_the_step_clearly(small_stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.script(model, Reply("positive"), Reply('{"sentiment": "great"}'))
    with small_stack.client(small_stack.new_key()) as client:
        job = analyze(client, model, {"text": "We love the new product."}, "sentiment")
        done = small_stack.wait_job(client, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "invalid_answer"
    assert "after one repair attempt" in done["error"]["message"]
    assert "sentiment" in done["error"]["message"]
    assert len(fake_llm.requests_for(model)) == 2
    assert [s["status"] for s in done["steps"]] == ["failed"]


CONTRACT_SCHEMA = {
    "type": "object",
    "properties": {
        "parties": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "term_months": {"type": "integer"},
    },
    "required": ["parties", "term_months"],
}


def test_custom_analysis_must_satisfy_the_callers_schema(
    small_stack: Stack, fake_llm: FakeLLM
) -> None:
    model = unique_model()
    answer = {"parties": ["Contoso", "Fabrikam"], "term_months": 24}
    fake_llm.script(model, Reply('{"result": {"parties": "Contoso"}}'),
                    Reply(json.dumps({"result": answer})))
    with small_stack.client(small_stack.new_key()) as client:
        job = analyze(client, model, {"text": "Contoso and Fabrikam agree for two years."},
                      "custom", instructions="Extract the parties and the term.",
                      schema=CONTRACT_SCHEMA)
        done = small_stack.wait_job(client, job["id"])
        bad = client.post("/v1/jobs", json={
            "type": "analyze", "input": {"document": {"text": "x"}, "analysis": "custom",
                                         "instructions": "x", "schema": {"type": "nope"}}})
        not_custom = client.post("/v1/jobs", json={
            "type": "analyze", "input": {"document": {"text": "x"}, "analysis": "summary",
                                         "schema": CONTRACT_SCHEMA}})
    assert done["status"] == "succeeded", done["error"]
    assert done["result"] == {"result": answer}
    validate_answer("custom", json.dumps(done["result"]), None, CONTRACT_SCHEMA)
    first, repair = fake_llm.requests_for(model)
    assert '"term_months"' in first.prompt  # the schema is in the prompt
    assert first.json["format"]["properties"]["result"] == CONTRACT_SCHEMA
    assert "the requested schema is not satisfied" in repair.prompt
    assert bad.status_code == 422
    assert "not a valid JSON schema" in bad.json()["error"]["message"]
    assert not_custom.status_code == 422
    assert "only for the custom analysis" in not_custom.json()["error"]["message"]


def test_cancel_stops_unstarted_map_steps(
    small_stack: Stack, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    model = unique_model()
    fake_llm.rule(model, lambda req: Hang())
    pdf = make_long_pdf(tmp_path / "long.pdf", pages=60)
    # A large answer reserve leaves little room per chunk: a plan of more than 50 steps.
    options = {"max_tokens": 1400}
    expected = plan_chunks(extract_text(pdf, pdf.name), {"analysis": "summary"}, CONTEXT,
                           options)
    assert len(expected) > 50
    with small_stack.client(small_stack.new_key()) as client:
        job = analyze(client, model, {"file_id": upload(client, pdf)}, "summary",
                      options=options)
        deadline = time.monotonic() + 30
        while len(fake_llm.requests_for(model)) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Every worker slot (8) now hangs on a map step; nothing else can start.
        time.sleep(0.5)
        in_flight = len(fake_llm.requests_for(model))
        assert in_flight == 8
        running = client.get(f"/v1/jobs/{job['id']}").json()
        cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200
        time.sleep(4)  # heartbeats (1 s) notice the cancel; freed slots take the next messages
        final = client.get(f"/v1/jobs/{job['id']}").json()
    assert len(fake_llm.requests_for(model)) == in_flight
    assert running["steps_total"] == len(expected)
    assert len(running["steps"]) == 50
    assert running["progress"]["chunks"] == len(expected)
    assert final["status"] == "cancelled"
    assert final["steps_summary"] == [
        {"kind": "map", "status": "cancelled", "count": len(expected)}
    ]
    with small_stack.sessions() as session:
        attempted = session.scalars(
            select(Step.id).where(Step.job_id == job["id"], Step.attempts > 0)
        ).all()
    assert len(attempted) == in_flight
    deadline = time.monotonic() + 10
    while fake_llm.in_flight and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fake_llm.in_flight == 0  # the hung calls were abandoned, not left open

"""Document analysis figures: a 60-page PDF on the fake backend and on the embedded local model.

Run: .venv/bin/python -m bench.analyze  (needs the machine's Redis, like the tests)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from orchestrator.plans.analyze import plan_chunks
from shared.documents import extract_text
from shared.models import Step
from tests.conftest import fake_backends
from tests.fakellm import FakeLLM
from tests.fakellm_wire import last_user_text
from tests.fixtures.services import broker_namespace, drop_namespace
from tests.fixtures.stack import Stack
from tests.shared.test_extract import make_long_pdf


def _summary_reply(body: dict[str, Any]) -> str:
    """A valid summary JSON answer for map and reduce calls alike."""
    return json.dumps({"summary": f"summary of {len(last_user_text(body))} characters"})


def _run_job(
    workdir: Path, env: dict[str, str], worker: str, pdf: Path, options: dict[str, Any],
    timeout: float,
) -> dict[str, Any]:
    url, prefix = broker_namespace()
    stack = Stack(workdir, f"sqlite:///{workdir / 'bench.db'}",
                  {**env, "LLMJOBS_REDIS_URL": url, "LLMJOBS_BROKER_KEY_PREFIX": prefix})
    try:
        stack.start([worker])
        with stack.client(stack.new_key()) as client:
            uploaded = client.post("/v1/files", files={"file": (pdf.name, pdf.read_bytes())},
                                   data={"purpose": "analysis"}).json()
            started = time.monotonic()
            job = client.post("/v1/jobs", json={
                "type": "analyze", "backend": worker, "options": options,
                "input": {"document": {"file_id": uploaded["id"]}, "analysis": "summary"},
            }).json()
            done = stack.wait_job(client, job["id"], timeout=timeout)
            wall = time.monotonic() - started
        with stack.sessions() as session:
            by_kind = dict(session.execute(
                select(Step.kind, func.count()).where(Step.job_id == job["id"])
                .group_by(Step.kind)
            ).all())
        return {
            "status": done["status"],
            "error": done["error"],
            "wall_s": round(wall, 2),
            "steps": {str(k): int(v) for k, v in by_kind.items()},
            "usage": done["usage"],
        }
    finally:
        stack.stop()
        drop_namespace(prefix)


def run(
    pages: int = 60,
    latency_s: float = 0.1,
    concurrency: int = 8,
    fake_context_tokens: int = 2048,
    local: bool = True,
    local_pages: int = 6,
    local_context_tokens: int = 2048,
    local_max_tokens: int = 256,
) -> dict[str, Any]:
    """Analyze (summary) a generated PDF on the fake backend, then on the local model."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as tmp:
        root = Path(tmp)
        pdf = make_long_pdf(root / f"report-{pages}p.pdf", pages=pages)
        text = extract_text(pdf, pdf.name)
        with FakeLLM(latency=latency_s, reply_fn=_summary_reply) as fake:
            env = {**fake_backends(fake),
                   "LLMJOBS_CONTEXT_TOKENS": str(fake_context_tokens),
                   "LLMJOBS_WORKER_CONCURRENCY": str(concurrency)}
            (root / "fake").mkdir()
            result = _run_job(root / "fake", env, "ollama", pdf, {}, timeout=600)
            result.update(
                pages=pages,
                latency_s=latency_s,
                concurrency=concurrency,
                context_tokens=fake_context_tokens,
                chunks_planned=len(plan_chunks(text, {"analysis": "summary"},
                                               fake_context_tokens, {})),
                backend_calls=len(fake.requests),
                backend_max_in_flight=fake.max_in_flight,
            )
            out["fake"] = result
        if local:
            small = make_long_pdf(root / f"report-{local_pages}p.pdf", pages=local_pages)
            env = {"LLMJOBS_LOCAL_ENABLED": "true",
                   "LLMJOBS_LOCAL_CONTEXT_TOKENS": str(local_context_tokens),
                   "LLMJOBS_LOCAL_MAX_TOKENS": str(local_max_tokens),
                   "LLMJOBS_STEP_DEADLINE_S": "900",
                   "LLMJOBS_BACKEND_TIMEOUT_S": "600"}
            (root / "local").mkdir()
            options = {"max_tokens": local_max_tokens}
            result = _run_job(root / "local", env, "local", small, options, timeout=1800)
            tokens = result["usage"]["prompt_tokens"] + result["usage"]["completion_tokens"]
            result.update(
                pages=local_pages,
                context_tokens=local_context_tokens,
                max_tokens=local_max_tokens,
                chunks_planned=len(plan_chunks(extract_text(small, small.name),
                                               {"analysis": "summary"},
                                               local_context_tokens, options)),
                tokens_per_s=round(tokens / result["wall_s"], 1) if result["wall_s"] else None,
            )
            out["local"] = result
    return out


if __name__ == "__main__":
    print(json.dumps(run(local="--no-local" not in sys.argv), indent=2))

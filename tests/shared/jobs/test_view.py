"""One public view of a job, with one base URL from the settings."""

from __future__ import annotations

from pathlib import Path

from shared.db import make_engine, make_sessionmaker, session_scope
from shared.ids import new_id
from shared.jobs.view import job_url, job_view
from shared.keys import ensure_tenant
from shared.migrate import upgrade
from shared.models import Job, Step
from shared.settings import Settings


def test_the_base_url_is_the_public_one_else_the_api_address() -> None:
    assert Settings(_env_file=None, api_port=8123).api_base_url == "http://127.0.0.1:8123"
    assert Settings(_env_file=None, api_host="0.0.0.0", api_port=80).api_base_url == (
        "http://127.0.0.1:80")
    public = Settings(_env_file=None, public_base_url="https://llm.example.com/base/")
    assert public.api_base_url == "https://llm.example.com/base"
    assert job_url(public, "job_1") == "https://llm.example.com/base/v1/jobs/job_1"


def test_view_counts_chunks_and_names_the_output_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'view.db'}"
    upgrade(url)
    engine = make_engine(url)
    settings = Settings(_env_file=None, public_base_url="https://llm.example.com")
    with session_scope(make_sessionmaker(engine)) as s:
        tenant = ensure_tenant(s, "t-view")
        job = Job(id=new_id("job"), tenant_id=tenant.id, type="summarize", status="succeeded",
                  backend="ollama", model="m", input={}, output_file_id="file_x",
                  progress_total=3, progress_done=3)
        s.add(job)
        for seq, (kind, status) in enumerate((("map", "succeeded"), ("map", "failed"),
                                              ("reduce", "succeeded"))):
            s.add(Step(id=new_id("step"), job_id=job.id, tenant_id=tenant.id, kind=kind,
                       seq=seq, status=status, backend="ollama"))
        s.flush()
        full = job_view(s, settings, job).model_dump(mode="json")
        brief = job_view(s, settings, job, with_steps=False).model_dump(mode="json")
    engine.dispose()
    assert full["output_file_url"] == f"https://llm.example.com/v1/jobs/{job.id}/output"
    assert full["progress"] == {"total": 3, "done": 3, "failed": 0, "chunks": 2,
                                "chunks_done": 1}
    assert full["steps_total"] == 3
    assert len(full["steps"]) == 3
    assert brief["progress"] == {"total": 3, "done": 3, "failed": 0}
    assert brief["steps"] == []
    assert brief["output_file_url"] == full["output_file_url"]

"""Retention: finished jobs (steps, row results), files and webhook deliveries age out."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.db import after_commit
from shared.jobs.status import JOB_TERMINAL
from shared.logging import get_logger
from shared.models import Job, RowResult, Step, StoredFile, utcnow
from shared.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookProgressMark
from shared.settings import Settings
from shared.storage import is_temp_file, path_for

log = get_logger(__name__)
# A file still being written is renamed into place within seconds; one this old was left by
# a process killed mid-write (an upload, a result workbook).
STALE_TEMP_AGE_S = 3600.0


@dataclass
class PurgeReport:
    """What one purge removed."""

    jobs: int = 0
    steps: int = 0
    row_results: int = 0
    files: int = 0
    deliveries: int = 0
    removed_paths: list[Path] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The row counts (for logs and metrics)."""
        return {"jobs": self.jobs, "steps": self.steps, "row_results": self.row_results,
                "files": self.files, "deliveries": self.deliveries}


def purge(
    session: Session, settings: Settings, now: dt.datetime | None = None, limit: int = 1000
) -> PurgeReport:
    """Delete up to `limit` expired jobs (with their rows), files and deliveries; files on
    disk go once the transaction commits. Nothing when retention is 0."""
    report = PurgeReport()
    if settings.retention_days <= 0:
        return report
    cutoff = (now or utcnow()) - dt.timedelta(days=settings.retention_days)
    _purge_jobs(session, cutoff, limit, report)
    _purge_deliveries(session, cutoff, limit, report)
    _purge_files(session, settings, cutoff, limit, report)
    paths = list(report.removed_paths)
    after_commit(session, lambda: _unlink(paths))
    return report


def _count(session: Session, statement: object) -> int:
    return int(getattr(session.execute(statement), "rowcount", 0) or 0)  # type: ignore[call-overload]


def _purge_jobs(session: Session, cutoff: dt.datetime, limit: int, report: PurgeReport) -> None:
    ids = list(session.scalars(
        select(Job.id).where(Job.status.in_(JOB_TERMINAL), Job.finished_at < cutoff).limit(limit)
    ))
    if not ids:
        return
    # Children first: not every database enforces ON DELETE CASCADE (SQLite needs a pragma).
    report.row_results = _count(session, delete(RowResult).where(RowResult.job_id.in_(ids)))
    report.steps = _count(session, delete(Step).where(Step.job_id.in_(ids)))
    _count(session, delete(WebhookProgressMark).where(WebhookProgressMark.job_id.in_(ids)))
    report.jobs = _count(session, delete(Job).where(Job.id.in_(ids)))


def _purge_deliveries(
    session: Session, cutoff: dt.datetime, limit: int, report: PurgeReport
) -> None:
    # Pending deliveries are still being retried; only ended ones age out.
    ids = list(session.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status != "pending", WebhookDelivery.created_at < cutoff)
        .limit(limit)
    ))
    if not ids:
        return
    _count(session, delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
    report.deliveries = _count(session, delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))


def _purge_files(
    session: Session, settings: Settings, cutoff: dt.datetime, limit: int, report: PurgeReport
) -> None:
    # A file a remaining job reads or produced stays as long as that job does.
    used = select(Job.input_file_id).where(Job.input_file_id.is_not(None)).union(
        select(Job.output_file_id).where(Job.output_file_id.is_not(None))
    )
    files = list(session.scalars(
        select(StoredFile).where(StoredFile.created_at < cutoff, StoredFile.id.not_in(used))
        .limit(limit)
    ))
    if not files:
        return
    for stored in files:
        report.removed_paths += _paths(settings.data_dir, stored)
    report.files = _count(
        session, delete(StoredFile).where(StoredFile.id.in_([f.id for f in files]))
    )


def _paths(data_dir: Path, stored: StoredFile) -> list[Path]:
    """Where a file's bytes may be: the canonical path and its recorded storage key."""
    root = Path(data_dir).resolve()
    candidates: list[Path] = []
    try:
        candidates.append(path_for(data_dir, stored.tenant_id, stored.id))
    except ValueError:
        pass
    for base in (root, root / "files"):
        candidates.append(base / stored.storage_key)
    # Never follow a storage key out of the data directory.
    return [p for p in candidates if p.resolve().is_relative_to(root)]


def _unlink(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("retention could not remove a file", path=str(path), error=str(exc))


def remove_stale_temp_files(
    data_dir: Path, older_than_s: float = STALE_TEMP_AGE_S, now: float | None = None
) -> int:
    """Remove temporary files under `<data_dir>/files` not touched for `older_than_s`."""
    root = Path(data_dir) / "files"
    if not root.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - older_than_s
    removed = 0
    for tenant_dir in root.iterdir():
        if not tenant_dir.is_dir():
            continue
        for path in tenant_dir.iterdir():
            if not is_temp_file(path):
                continue
            try:
                if path.stat().st_mtime < cutoff and path.is_file():
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # renamed into place or removed meanwhile
    if removed:
        log.info("stale temporary files removed", count=removed)
    return removed

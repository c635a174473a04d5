"""Batch API input files: validated line by line as OpenAI does, read back by byte span."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.backends.routing import ModelNotFound, route_model
from shared.models import Job
from shared.settings import Settings

WINDOW = dt.timedelta(hours=24)  # the only completion_window OpenAI offers


def expires_at(job: Job) -> dt.datetime:
    """When a Batch API job's completion window closes."""
    return job.created_at + WINDOW


MAX_ERRORS = 100  # errors listed on a failed batch; enough to fix a file, not a flood


@dataclass(frozen=True)
class Line:
    """A valid request line: its number (1-based), custom_id and where it is in the file."""

    number: int
    custom_id: str
    offset: int
    length: int


@dataclass
class Checked:
    """The outcome of validating an input file."""

    lines: list[Line] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    backend: str | None = None
    model: str | None = None

    def error(self, code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


def raw_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, bytes) of every line of the file."""
    offset = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            yield number, offset, raw
            offset += len(raw)


def validate(path: Path, endpoint: str, settings: Settings) -> Checked:
    """Every line must be a JSON request to `endpoint` with a unique custom_id and a body."""
    out = Checked()
    seen: set[str] = set()
    for number, offset, raw in raw_lines(path):
        if not raw.strip():
            continue
        if len(out.lines) >= settings.openai_batch_max_lines:
            out.error("too_many_tasks",
                      f"the file has more than {settings.openai_batch_max_lines} requests",
                      number)
            break
        item = _check_line(out, number, raw, endpoint, seen, settings)
        if item is not None:
            out.lines.append(Line(number, item, offset, len(raw)))
    if not out.lines and not out.errors:
        out.error("empty_file", "the input file has no requests", None)
    return out


def _check_line(
    out: Checked, number: int, raw: bytes, endpoint: str, seen: set[str], settings: Settings
) -> str | None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        out.error("invalid_json_line", "this line is not valid JSON", number)
        return None
    if not isinstance(data, dict):
        out.error("invalid_json_line", "this line is not a JSON object", number)
        return None
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        out.error("missing_required_parameter", "custom_id is required (a string)", number,
                  "custom_id")
        return None
    if custom_id in seen:
        out.error("duplicate_custom_id",
                  f"the custom_id {custom_id!r} is used by an earlier line; custom_ids must "
                  "be unique", number, "custom_id")
        return None
    seen.add(custom_id)
    if data.get("method") != "POST":
        out.error("invalid_method", "method must be POST", number, "method")
        return None
    if data.get("url") != endpoint:
        out.error("mismatched_endpoint",
                  f"url {data.get('url')!r} differs from the batch's endpoint {endpoint!r}",
                  number, "url")
        return None
    body = data.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        out.error("missing_required_parameter", "body must be an object with a model", number,
                  "body.model")
        return None
    try:
        backend, model = route_model(settings, body["model"])
    except ModelNotFound as exc:
        out.error("model_not_found", str(exc), number, "body.model")
        return None
    if out.backend is None:
        out.backend, out.model = backend, model
    elif backend != out.backend:
        out.error("mismatched_model",
                  f"model {body['model']!r} runs on backend {backend!r}, but earlier lines run "
                  f"on {out.backend!r}; one batch runs on one backend", number, "body.model")
        return None
    return custom_id


def read_span(path: Path, offset: int, length: int) -> dict[str, Any]:
    """One validated line, read back from its byte span."""
    with path.open("rb") as fh:
        fh.seek(offset)
        data: dict[str, Any] = json.loads(fh.read(length))
    return data

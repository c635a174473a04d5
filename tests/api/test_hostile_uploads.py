"""Zip bombs, forged archives and oversized tables are refused by the API before parsing."""

from __future__ import annotations

import threading
import time

import httpx
import psutil
import pytest

from tests.fixtures.hostile import (
    MIB,
    docx_bomb,
    understate_sizes,
    wide_csv,
    xlsx_bomb,
)
from tests.fixtures.stack import Stack
from tests.fixtures.workbooks import submit

BOMB_UNPACKED = 320 * MIB
# Generous bound for "well under a second"; timings proper live in bench/.
REFUSED_WITHIN_S = 5.0
RSS_GROWTH_MB = 100


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Each bomb is about 0.3 MB on the wire and 320 MiB unpacked."""
    folder = tmp_path_factory.mktemp("bombs")
    xlsx = xlsx_bomb(folder / "bomb.xlsx", BOMB_UNPACKED)
    forged = understate_sizes(xlsx_bomb(folder / "forged.xlsx", BOMB_UNPACKED), 1000)
    docx = docx_bomb(folder / "bomb.docx", BOMB_UNPACKED)
    return {"xlsx": xlsx.read_bytes(), "forged": forged.read_bytes(), "docx": docx.read_bytes()}


def api_rss(stack: Stack) -> int:
    proc = psutil.Process(stack.processes["api"].pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def error_of(response: httpx.Response, statuses: tuple[int, ...]) -> str:
    assert response.status_code in statuses, response.text
    error = response.json()["error"]
    assert error["param"] == "file"
    assert error["type"] in ("payload_too_large", "invalid_request")
    return str(error["message"])


def timed(call: object) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = call()  # type: ignore[operator]
    return response, time.monotonic() - start


def upload_file(client: httpx.Client, name: str, data: bytes) -> httpx.Response:
    return client.post("/v1/files", files={"file": (name, data)}, data={"purpose": "analysis"})


def test_bombs_are_refused_fast_and_without_unpacking(stack: Stack, bombs: dict[str, bytes]):
    attempts = [
        ("batch xlsx", lambda c: submit(c, bombs["xlsx"], "bomb.xlsx", column="A")),
        ("batch forged", lambda c: submit(c, bombs["forged"], "forged.xlsx", column="A")),
        ("files xlsx", lambda c: upload_file(c, "bomb.xlsx", bombs["xlsx"])),
        ("files docx", lambda c: upload_file(c, "bomb.docx", bombs["docx"])),
        ("files forged", lambda c: upload_file(c, "forged.xlsx", bombs["forged"])),
    ]
    with stack.client(stack.new_key()) as client:
        assert client.get("/v1/jobs").status_code == 200  # warm the process up first
        before = api_rss(stack)
        for what, attempt in attempts:
            response, elapsed = timed(lambda attempt=attempt: attempt(client))
            message = error_of(response, (413, 422))
            assert "LLMJOBS_ARCHIVE_" in message or "forged" in message, (what, message)
            assert elapsed < REFUSED_WITHIN_S, (what, elapsed)
        growth = (api_rss(stack) - before) / MIB
    assert growth < RSS_GROWTH_MB, f"API RSS grew by {growth:.0f} MB"
    # Nothing of the refused uploads is left on disk.
    files = stack.workdir / "data" / "files"
    assert not any(p.stat().st_size == len(bombs["xlsx"]) for p in files.rglob("*") if p.is_file())


def test_polling_answers_while_bombs_are_refused(stack: Stack, bombs: dict[str, bytes]) -> None:
    with stack.client(stack.new_key()) as client:
        created = submit(client, b"text\nhello\n", "small.csv", column="text")
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        refusals: list[int] = []

        def attack() -> None:
            with stack.client(stack.new_key()) as hostile:
                for _ in range(6):
                    for name in ("forged", "xlsx"):
                        refusals.append(
                            submit(hostile, bombs[name], f"{name}.xlsx", column="A").status_code
                        )

        thread = threading.Thread(target=attack)
        thread.start()
        polls: list[int] = []
        try:
            while thread.is_alive():
                polls.append(client.get(f"/v1/jobs/{job_id}", timeout=10).status_code)
        finally:
            thread.join()
    assert polls, "no poll overlapped the hostile uploads"
    assert set(polls) <= {200, 202}
    assert len(refusals) == 12
    assert set(refusals) <= {413, 422}


def test_wide_csv_is_422_not_500(stack: Stack) -> None:
    with stack.client(stack.new_key()) as client:
        response = submit(client, wide_csv(20_000), "wide.csv", column="missing")
    message = error_of(response, (422,))
    assert "LLMJOBS_SHEET_MAX_COLUMNS" in message


def test_too_many_rows_is_422(stack: Stack) -> None:
    # One data row, then a million empty records: the sheet is too long though almost empty.
    data = b"text\nhello\n" + b"\n" * 1_000_000
    with stack.client(stack.new_key()) as client:
        response = submit(client, data, "long.csv", column="text")
    assert "LLMJOBS_SHEET_MAX_ROWS" in error_of(response, (422,))

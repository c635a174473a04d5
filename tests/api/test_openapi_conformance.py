"""The OpenAPI document and the live API agree: schemathesis runs every check against a stack."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.db import session_scope
from shared.keys import ALL_SCOPES, create_key
from tests.fixtures.stack import Stack

SEED = 20261204
# Per operation and phase; with the coverage phase's own cases the run takes a minute or two.
MAX_EXAMPLES = 10
CONFIG = Path(__file__).with_name("schemathesis.toml")
# Operations left out of the run, each with the reason. Everything else is tested.
EXCLUDED = {
    "JobEvents": "server-sent events that last until the job ends; schemathesis reads a "
    "response whole, so a queued job's stream would hold each case for its full wait",
    "RevokeApiKey": "destructive to the run itself: it finds the key it authenticates with "
    "(in GET /v1/admin/keys) and would revoke it",
    "RotateApiKey": "destructive to the run itself: rotating its own key with grace_s=0 ends it",
}


def _unlimited_key(stack: Stack) -> str:
    # A thousand-odd calls a minute would otherwise meet the key's rate limit.
    with session_scope(stack.sessions) as session:
        return create_key(
            session, "tenant-openapi-conformance", "schemathesis", ALL_SCOPES,
            rate_limit_per_min=0,
        ).secret


def test_the_live_api_conforms_to_its_openapi_document(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = _unlimited_key(stack)
    st = Path(sys.executable).with_name("st")
    command = [
        str(st), "--config-file", str(CONFIG), "--no-color", "run", f"{stack.api_url}/openapi.json",
        "--header", f"Authorization: Bearer {key}",
        "--checks", "all",
        "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1",
        "--generation-database", "none",
        "--request-timeout", "60",
    ]
    for operation_id in EXCLUDED:
        command += ["--exclude-operation-id", operation_id]
    started = time.monotonic()
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    cases = re.search(r"(\d+) generated", output)
    tested = re.search(r"Tested: (\d+)", output)
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    summary = (
        f"schemathesis: seed {SEED}, {cases.group(1) if cases else '?'} cases, "
        f"{tested.group(1) if tested else '?'} operations, {elapsed:.0f} s; excluded: "
        + "; ".join(f"{op} ({why})" for op, why in EXCLUDED.items())
    )
    with capsys.disabled():
        print(f"\n{summary}")
    assert run.returncode == 0, f"{summary}\n{output[-20000:]}"
    assert cases is not None, output[-5000:]
    assert int(cases.group(1)) > 0, output[-5000:]
    assert selected is not None, output[-5000:]
    assert tested is not None, output[-5000:]
    # Every operation but the listed exclusions was selected and actually tested.
    assert int(selected.group(2)) - int(selected.group(1)) == len(EXCLUDED), output[-5000:]
    assert tested.group(1) == selected.group(1), output[-5000:]

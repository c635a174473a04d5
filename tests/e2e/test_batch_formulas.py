"""A CSV batch never hands a spreadsheet a formula the model wrote."""

from __future__ import annotations

import csv
import io
import uuid

from tests.fakellm import FakeLLM, Reply, RuleFn
from tests.fakellm_behaviors import RecordedRequest
from tests.fixtures.hostile import FORMULA_ANSWERS
from tests.fixtures.stack import Stack
from tests.fixtures.workbooks import submit

# The user's own cells, formulas included, come back exactly as given.
INPUTS = ["=1+2 first", "+second", "-third", "@fourth", "fifth", "sixth"]


def answer_by_row(rows: list[str]) -> RuleFn:
    def rule(request: RecordedRequest) -> Reply | None:
        for i, text in enumerate(rows):
            if text in request.prompt:
                return Reply(content=FORMULA_ANSWERS[i])
        return None

    return rule


def test_formula_answers_are_neutralised_in_csv_output(stack: Stack, fake_llm: FakeLLM) -> None:
    model = f"m-{uuid.uuid4().hex[:10]}"
    fake_llm.rule(model, answer_by_row(INPUTS))
    body = "".join(f"{i},{text}\r\n" for i, text in enumerate(INPUTS))
    with stack.client(stack.new_key()) as client:
        created = submit(client, ("id,text\r\n" + body).encode(), "f.csv", column="text",
                         model=model)
        assert created.status_code == 202, created.text
        job = stack.wait_job(client, created.json()["id"], timeout=60)
        assert job["status"] == "succeeded", job
        output = client.get(f"/v1/jobs/{job['id']}/output")
    table = list(csv.reader(io.StringIO(output.text, newline="")))
    assert table[0] == ["id", "text", "summary"]
    for i, row in enumerate(table[1:]):
        assert row[:2] == [str(i), INPUTS[i]]
        answer = FORMULA_ANSWERS[i]
        assert row[2][0] == "'", row
        # The quote is the only change: a leading tab or CR is kept (or trimmed with the rest
        # of the surrounding blanks by the worker), never left as a bare formula.
        assert row[2][1:] in (answer, answer.strip()), row

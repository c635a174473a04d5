"""PII never reaches a cloud backend for a tenant with redaction on (asserted on the fake)."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import update

from shared.db import session_scope
from shared.models import ApiKey, Tenant
from shared.redaction import job_redactions
from tests.conftest import StackFactory
from tests.fakellm import FakeLLM
from tests.fixtures.stack import Stack

PLANTED = [
    "anna.berg@example.com", "+49 171 1234567", "(555) 123-4567",
    "4111 1111 1111 1111", "5500-0000-0000-0004", "DE89 3704 0044 0532 0130 00",
]
TEXT = (
    "Customer anna.berg@example.com called from +49 171 1234567 (office: (555) 123-4567). "
    "She paid with 4111 1111 1111 1111, then 5500-0000-0000-0004; refund to "
    "DE89 3704 0044 0532 0130 00 please."
)


def _tenant_of(stack: Stack, key: str) -> str:
    with stack.client(key) as client:
        key_id = client.get("/v1/admin/keys").json()["data"][0]["id"]
    with stack.sessions() as session:
        row = session.get(ApiKey, key_id)
        assert row is not None
        return row.tenant_id


def test_cloud_backend_never_sees_planted_pii(make_stack: StackFactory, fake_llm: FakeLLM) -> None:
    stack = make_stack(
        workers=("openai",),
        env={"LLMJOBS_OPENAI_BASE_URL": f"{fake_llm.url}/v1",
             "LLMJOBS_OPENAI_API_KEY": "sk-test-redaction"},
    )
    model = f"m-{uuid.uuid4().hex[:10]}"
    plain_model = f"m-{uuid.uuid4().hex[:10]}"
    redacting, plain = stack.new_key(), stack.new_key()
    with session_scope(stack.sessions) as session:
        session.execute(update(Tenant).where(Tenant.id == _tenant_of(stack, redacting))
                        .values(redact_pii=True))
    body = {"type": "chat", "backend": "openai", "model": model,
            "input": {"messages": [{"role": "system", "content": "Reply to anna.berg@example.com"},
                                   {"role": "user", "content": TEXT}]}}
    with stack.client(redacting) as client:
        job = client.post("/v1/jobs", json=body).json()
        done = stack.wait_job(client, job["id"])
    assert done["status"] == "succeeded", done
    sent = fake_llm.requests_for(model)
    assert len(sent) == 1
    wire = json.dumps(sent[0].json)
    for secret in PLANTED:
        assert secret not in wire
    assert "[EMAIL_1]" in wire
    assert "[CARD_2]" in wire
    assert "[IBAN_1]" in wire
    # The fake echoes the (redacted) text; the stored answer has the values put back.
    answer = done["result"]["message"]["content"]
    assert "anna.berg@example.com" in answer
    assert "DE89 3704 0044 0532 0130 00" in answer
    with stack.sessions() as session:
        counts = job_redactions(session, job["id"])
    assert counts == {"email": 2, "phone": 2, "credit_card": 2, "iban": 1}
    # Never logged: neither the values nor the placeholders' mapping.
    for name in ("api", "worker:openai", "orchestrator"):
        assert "anna.berg@example.com" not in stack.logs(name)

    # A tenant without redaction sends its text as is.
    with stack.client(plain) as client:
        other = client.post("/v1/jobs", json={**body, "model": plain_model}).json()
        assert stack.wait_job(client, other["id"])["status"] == "succeeded"
    assert "anna.berg@example.com" in json.dumps(fake_llm.requests_for(plain_model)[0].json)

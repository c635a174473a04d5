"""Which API operations the Power Platform connector exposes, and how they are presented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConnectorOp:
    """How one API route appears in the connector."""

    operation_id: str
    summary: str
    visibility: str | None = None
    # Long-running: the API answers 202 + Location and the flow engine polls it.
    asynchronous: bool = False
    trigger: bool = False
    description: str | None = None


# Keyed by (method, path) so routes are picked up from the app as they exist: an operation
# whose route is missing (another team's work not merged yet) is simply left out.
OPERATIONS: dict[tuple[str, str], ConnectorOp] = {
    ("post", "/v1/actions/chat"): ConnectorOp("Chat", "Chat", "important", asynchronous=True),
    ("post", "/v1/actions/summarize"): ConnectorOp(
        "SummarizeText", "Summarize text", "important", asynchronous=True),
    ("post", "/v1/actions/analyze"): ConnectorOp(
        "AnalyzeDocument", "Analyze document", "important", asynchronous=True),
    ("post", "/v1/jobs/batch-summarize"): ConnectorOp(
        "SummarizeSpreadsheetRows", "Summarize spreadsheet rows", "important",
        asynchronous=True,
        description="Summarize every non-empty row of an .xlsx, .csv or .jsonl file; the result "
        "is the same workbook with an output column added. Answers 202 with Location and "
        "Retry-After; the flow polls until the job ends.",
    ),
    ("get", "/v1/jobs/{job_id}"): ConnectorOp("GetJob", "Get job"),
    ("post", "/v1/jobs/{job_id}/cancel"): ConnectorOp("CancelJob", "Cancel job", "advanced"),
    ("post", "/v1/webhooks"): ConnectorOp(
        "WhenAJobFinishes", "When a job finishes", trigger=True,
        description="Triggers the flow when one of this key's jobs succeeds, fails or is "
        "cancelled; the flow receives the job.",
    ),
    ("delete", "/v1/webhooks/{webhook_id}"): ConnectorOp(
        "DeleteWebhook", "Delete webhook subscription", "internal",
        description="Unsubscribe the trigger (called by Power Automate when the flow is "
        "turned off or deleted).",
    ),
}

# Fields users rarely set: shown under "advanced" in the designer.
ADVANCED_FIELDS = frozenset({
    "backend", "model", "callback_url", "temperature", "max_tokens", "metadata", "sheet",
    "output_column", "fail_on_error", "description", "events",
})

API_PROPERTIES: dict[str, Any] = {
    "properties": {
        "connectionParameters": {
            "api_key": {
                "type": "securestring",
                "uiDefinition": {
                    "displayName": "API key",
                    "description": "An llm-jobs API key (lj_live_…)",
                    "tooltip": "Create one on the server with: llm-jobs keys create <tenant>",
                    "constraints": {"tabIndex": 2, "clearText": False, "required": "true"},
                },
            }
        },
        "iconBrandColor": "#3A5BA0",
        "capabilities": [],
        "publisher": "llm-jobs",
        "stackOwner": "llm-jobs",
    }
}

README = """# llm-jobs custom connector (Power Automate / Power Apps)

Files: `apiDefinition.swagger.json` (Swagger 2.0, generated from the API's routes) and
`apiProperties.json` (the API-key connection parameter). Regenerate them after upgrading
llm-jobs: `llm-jobs connector export DIR --host your.host.example`, or download them from a
running server at `/connector/apiDefinition.swagger.json` and `/connector/apiProperties.json`.

## Import with paconn (Power Platform Connectors CLI)
    pip install paconn
    paconn login
    paconn create --api-def apiDefinition.swagger.json --api-prop apiProperties.json
    # later, to update it:
    paconn update --api-def apiDefinition.swagger.json --api-prop apiProperties.json

## Import in the maker portal
1. make.powerautomate.com → Data → Custom connectors → New custom connector →
   Import an OpenAPI file; pick `apiDefinition.swagger.json`.
2. Security: "API Key", parameter label "API key", name `X-API-Key`, location Header.
3. Create the connector, then a connection with an API key made by
   `llm-jobs keys create <tenant>`.

## What it offers
- Actions Chat, Summarize text, Analyze document, Summarize spreadsheet rows: long-running;
  Power Automate follows the 202 answer's Location, waiting Retry-After seconds between polls,
  until the job ends, and the action's output is the finished job.
- Get job, Cancel job.
- Trigger "When a job finishes": a webhook subscription created when the flow is saved and
  deleted when it is turned off. The server must reach the flow's callback URL (outbound
  HTTPS to *.logic.azure.com).
"""

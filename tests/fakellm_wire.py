"""Wire formats for the fake LLM: request parsing, payload builders and HTTP framing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

AZURE_CHAT = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")


def text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def last_user_text(body: Any) -> str:
    """Return the last user message's text, or the generate `prompt`."""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("prompt"), str):
        return str(body["prompt"])
    for msg in reversed(body.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return text(msg.get("content"))
    return ""


def wants_json(body: dict[str, Any]) -> bool:
    """Whether an OpenAI or Ollama request asks for JSON output."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        return True
    return body.get("format") == "json" or isinstance(body.get("format"), dict)


def default_reply(body: dict[str, Any]) -> str:
    """Echo the last user message, as a small JSON object when JSON was asked for."""
    text = last_user_text(body)
    if wants_json(body):
        return json.dumps({"echo": text[:40]})
    return ("echo: " + text)[:200]


def prompt_tokens(body: dict[str, Any]) -> int:
    texts = [text(body.get("prompt")), text(body.get("system"))]
    texts += [text(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)]
    return sum(len(t.split()) for t in texts)


def pieces(content: str) -> list[str]:
    # Word-sized deltas so clients really have to reassemble a multi-chunk stream.
    return re.findall(r"\S+\s*|\s+", content)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_body(flavor: str, code: int, message: str) -> dict[str, Any]:
    """Build the native error object for `flavor` ("openai", "azure" or "ollama")."""
    if flavor == "ollama":
        return {"error": message}
    if flavor == "azure":
        return {"error": {"code": str(code), "message": message}}
    kinds = {401: ("invalid_request_error", "invalid_api_key"),
             429: ("requests", "rate_limit_exceeded")}
    fallback = ("invalid_request_error" if code < 500 else "server_error", None)
    etype, ecode = kinds.get(code, fallback)
    return {"error": {"message": message, "type": etype, "param": None, "code": ecode}}


def phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Status"


def head(code: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {code} {phrase(code)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class RawRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


async def read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    conn = headers.get("connection", "").lower()
    keep = conn != "close" and (version == "HTTP/1.1" or conn == "keep-alive")
    return RawRequest(method.upper(), target, headers, body, keep)


def azure_path(path: str) -> bool:
    """Whether `path` is an Azure OpenAI deployment chat-completions path."""
    return AZURE_CHAT.match(path) is not None


def tagged(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


def ollama_tag(model: str) -> dict[str, Any]:
    name = tagged(model)
    return {
        "name": name, "model": name, "modified_at": "2024-11-01T12:00:00.000000Z",
        "size": 1_234_567_890, "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {"parent_model": "", "format": "gguf", "family": "llama",
                    "families": ["llama"], "parameter_size": "1B",
                    "quantization_level": "Q4_K_M"},
    }


def usage(body: dict[str, Any], content: str) -> dict[str, int]:
    prompt, completion = prompt_tokens(body), len(content.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def openai_completion(
    model: str, content: str, finish: str, cid: str, body: dict[str, Any]
) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, "refusal": None}
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "system_fingerprint": "fp_fakellm",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage(body, content),
    }


def openai_sse(
    model: str, content: str, finish: str, cid: str, usage: dict[str, int] | None
) -> list[bytes]:
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_fakellm"}

    def chunk(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return {**base, "choices": [choice]}

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": piece}, None) for piece in pieces(content)]
    events.append(chunk({}, finish))
    if usage is not None:
        events.append({**base, "choices": [], "usage": usage})
    lines = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    return [*lines, b"data: [DONE]\n\n"]


def ollama_part(kind: str, model: str, text: str) -> dict[str, Any]:
    key_value: dict[str, Any] = {"response": text}
    if kind == "chat":
        key_value = {"message": {"role": "assistant", "content": text}}
    return {"model": model, "created_at": now_rfc3339(), **key_value, "done": False}


def ollama_final(
    kind: str, model: str, content: str, finish: str, body: dict[str, Any], whole: bool
) -> dict[str, Any]:
    final = ollama_part(kind, model, content if whole else "")
    final.update(
        done=True, done_reason=finish, total_duration=1_000_000, load_duration=100_000,
        prompt_eval_count=prompt_tokens(body), prompt_eval_duration=200_000,
        eval_count=len(content.split()), eval_duration=700_000,
    )
    return final


def ollama_ndjson(
    kind: str, model: str, content: str, finish: str, body: dict[str, Any]
) -> list[bytes]:
    parts = [ollama_part(kind, model, piece) for piece in pieces(content)]
    parts.append(ollama_final(kind, model, content, finish, body, False))
    return [json.dumps(p).encode() + b"\n" for p in parts]

"""In-process fake LLM backend speaking the OpenAI, Azure OpenAI and Ollama wire formats."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakellm_behaviors import (
    BadJson,
    Behavior,
    Drop,
    Faults,
    Hang,
    RecordedRequest,
    Reply,
    ReplyFn,
    RuleFn,
    Slow,
    Status,
)
from tests.fakellm_wire import (
    AZURE_CHAT,
    RawRequest,
    azure_path,
    default_reply,
    error_body,
    head,
    ollama_final,
    ollama_ndjson,
    ollama_tag,
    openai_completion,
    openai_sse,
    phrase,
    read_request,
    tagged,
    usage,
    wants_json,
)

__all__ = [
    "BadJson", "Behavior", "Drop", "FakeLLM", "Hang", "RecordedRequest", "Reply", "Slow",
    "ReplyFn", "RuleFn", "Status", "default_reply",
]


@dataclass
class _Call:
    rec: RecordedRequest
    flavor: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    keep_alive: bool


_OLLAMA = ("chat", "generate")
_CLIENT_GONE = (ConnectionError, asyncio.IncompleteReadError)
_MALFORMED = (asyncio.LimitOverrunError, ValueError)
_CHAT_KINDS = {"/v1/chat/completions": "openai", "/api/chat": "chat", "/api/generate": "generate"}


class FakeLLM:
    """Threaded asyncio HTTP/1.1 server faking LLM backends, with scripted faults and recording."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: list[str] | None = None,
        api_key: str | None = None,
        azure_api_key: str | None = None,
        latency: float = 0.0,
        ollama_strict_models: bool = False,
        reply_fn: ReplyFn | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.models = list(models or ["fake-model"])
        self.api_key, self.azure_api_key = api_key, azure_api_key
        self.latency = latency
        self.ollama_strict_models = ollama_strict_models
        self._default_reply_fn: ReplyFn = reply_fn or default_reply
        self.reply_fn: ReplyFn = self._default_reply_fn
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Behavior]] = {}
        self._rules: dict[str, RuleFn] = {}
        self._faults: Faults | None = None
        self._in_flight = self._max_in_flight = 0
        self.connections = 0  # accepted TCP connections; shows whether clients keep alive
        self._busy = 0.0
        self._active: dict[int, float] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._startup_error: BaseException | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeLLM:
        """Start serving in a daemon thread and return once the socket is listening."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)
        if self._startup_error is not None:
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Abort every connection, stop the loop and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(
                    self._on_connect, self.host, self.port, limit=1 << 20, backlog=1024
                )
            )
        except OSError as exc:
            self._startup_error = exc
            ready.set()
            loop.close()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._conns)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- test-facing controls (called from other threads) -----------------------------------

    def script(self, model: str, *behaviors: Behavior) -> None:
        """Queue behaviors for the next requests naming `model` ("*" = any model)."""
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(behaviors)

    def rule(self, model: str, fn: RuleFn) -> None:
        """Install a persistent per-model ("*" = any) rule; it returns a behavior or None."""
        with self._lock:
            self._rules[model] = fn

    def set_faults(
        self,
        rate: float,
        kinds: tuple[str, ...] = ("429", "500", "drop", "timeout", "bad_json"),
        seed: int | None = None,
        retry_after: float = 1,
        timeout_seconds: float = 30.0,
    ) -> None:
        """Fail each LLM request with probability `rate` using one of `kinds` (0 turns off)."""
        unknown = [k for k in kinds if k not in ("drop", "timeout", "bad_json") and not k.isdigit()]
        if unknown:
            raise ValueError(f"unknown fault kinds: {unknown}")
        faults = Faults(rate, tuple(kinds), random.Random(seed), retry_after, timeout_seconds)
        with self._lock:
            self._faults = faults if rate > 0 else None

    def reset(self) -> None:
        """Clear records, scripts, rules, faults, errors and counters; latency 0, reply_fn reset."""
        with self._lock:
            self._requests.clear()
            self._scripts.clear()
            self._rules.clear()
            self._faults = None
            self.errors.clear()
            self._max_in_flight = self._in_flight
            self._busy = 0.0
            self.connections = 0
        self.latency = 0.0
        self.reply_fn = self._default_reply_fn

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every recorded request, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        """Recorded requests whose model (Azure: deployment) is `model`."""
        return [r for r in self.requests if r.model == model]

    def count(self, path: str | None = None, model: str | None = None) -> int:
        """Number of recorded requests matching `path` and/or `model`."""
        return sum(
            1 for r in self.requests
            if (path is None or r.path == path) and (model is None or r.model == model)
        )

    @property
    def in_flight(self) -> int:
        """Requests being processed right now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """Peak number of concurrently processed requests."""
        return self._max_in_flight

    def busy_seconds(self) -> float:
        """Handler time summed over requests, including the running part of in-flight ones."""
        now = time.monotonic()
        with self._lock:
            return self._busy + sum(now - t for t in self._active.values())

    # -- connection and request handling (event-loop thread) --------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while (raw := await read_request(reader)) is not None:
                if not await self._handle(raw, reader, writer):
                    break
        except (*_CLIENT_GONE, *_MALFORMED):
            pass  # a client that vanished or sent garbage just loses its connection
        except asyncio.CancelledError:
            pass  # stop(); re-raising makes asyncio 3.11 log the cancelled connection task
        finally:
            self._conns.discard(task)
            self._writers.discard(writer)
            writer.close()

    def _record(self, raw: RawRequest) -> RecordedRequest:
        parts = urlsplit(raw.target)
        try:
            body = json.loads(raw.body) if raw.body else None
        except ValueError:
            body = None
        azure = AZURE_CHAT.match(parts.path)
        model = azure.group(1) if azure else body.get("model") if isinstance(body, dict) else None
        return RecordedRequest(
            raw.method, parts.path, dict(parse_qsl(parts.query)), raw.headers, body,
            time.monotonic(), model if isinstance(model, str) else None,
        )

    async def _handle(
        self, raw: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        rec = self._record(raw)
        start = rec.received_at
        with self._lock:
            self._requests.append(rec)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._active[id(rec)] = start
        flavor = "ollama" if rec.path.startswith("/api/") else "openai"
        flavor = "azure" if rec.path.startswith("/openai/") else flavor
        call = _Call(rec, flavor, reader, writer, raw.keep_alive)
        try:
            return await self._route(call) and raw.keep_alive
        except _CLIENT_GONE:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken reply_fn/rule shows as a 500, not a hang
            self.errors.append(repr(exc))
            with contextlib.suppress(Exception):
                await self._error(call, 500, f"fake server error: {exc!r}")
            return False
        finally:
            with self._lock:
                self._in_flight -= 1
                self._busy += time.monotonic() - start
                self._active.pop(id(rec), None)

    async def _route(self, call: _Call) -> bool:
        rec = call.rec
        if rec.path == "/health":
            rec.outcome = "ok"
            return await self._send_json(call, 200, {"status": "ok"})
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if call.flavor == "openai" and self.api_key is not None:
            if rec.headers.get("authorization") != f"Bearer {self.api_key}":
                return await self._error(call, 401, "Incorrect API key provided.")
        if call.flavor == "azure" and self.azure_api_key is not None:
            if rec.headers.get("api-key") != self.azure_api_key:
                return await self._error(call, 401, "Access denied due to invalid subscription key"
                                         " or wrong API endpoint.")
        listing = self._listing(rec.method, rec.path)
        if listing is not None:
            rec.outcome = "ok"
            return await self._send_json(call, 200, listing)
        kind = "azure" if call.flavor == "azure" else _CHAT_KINDS.get(rec.path)
        if kind is None or rec.method != "POST" or (kind == "azure" and not azure_path(rec.path)):
            return await self._error(call, 404, f"Not found: {rec.method} {rec.path}")
        body = rec.json
        if not isinstance(body, dict):
            return await self._error(call, 400, "Could not parse the JSON body of the request.")
        if kind == "azure" and "api-version" not in rec.query:
            return await self._error(call, 400, "Missing required query parameter: api-version")
        if kind in ("openai", "azure") and not isinstance(body.get("messages"), list):
            return await self._error(call, 400, "Missing required parameter: 'messages'.")
        if call.flavor == "ollama" and self.ollama_strict_models and not self._known(rec.model):
            msg = f'model "{rec.model}" not found, try pulling it first'
            return await self._error(call, 404, msg)
        return await self._perform(call, kind, body, self._choose(rec))

    def _listing(self, method: str, path: str) -> dict[str, Any] | None:
        if method != "GET":
            return None
        if path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fakellm"}
                    for m in self.models]
            return {"object": "list", "data": data}
        if path == "/api/tags":
            return {"models": [ollama_tag(m) for m in self.models]}
        if path == "/api/version":
            return {"version": "0.6.0"}
        return None

    def _known(self, model: str | None) -> bool:
        return model is not None and tagged(model) in {tagged(m) for m in self.models}

    def _choose(self, rec: RecordedRequest) -> Behavior:
        key = rec.model or ""
        with self._lock:
            for name in (key, "*"):
                queue = self._scripts.get(name)
                if queue:
                    return queue.popleft()
            rules = [r for r in (self._rules.get(key), self._rules.get("*")) if r is not None]
            faults = self._faults
        for rule_fn in rules:
            chosen = rule_fn(rec)
            if chosen is not None:
                return chosen
        if faults is not None:
            with self._lock:
                drawn = faults.draw()
            if drawn is not None:
                return drawn
        return Reply()

    async def _perform(self, call: _Call, kind: str, body: dict[str, Any], b: Behavior) -> bool:
        rec, writer = call.rec, call.writer
        stream = bool(body.get("stream", kind in _OLLAMA))
        if isinstance(b, Hang):
            rec.outcome = "hang"
            while await call.reader.read(65536):
                pass
            return False
        if isinstance(b, Drop):
            rec.outcome = "drop_after_headers" if b.after_headers else "drop"
            if b.after_headers:
                ctype = "application/json"
                framing = {"Content-Length": "4096"}
                if stream:
                    ctype = "application/x-ndjson" if kind in _OLLAMA else "text/event-stream"
                    framing = {"Transfer-Encoding": "chunked"}
                writer.write(head(200, {"Content-Type": ctype, **framing}))
                await writer.drain()
            writer.close()
            return False
        if isinstance(b, Reply | Status) and b.delay > 0:
            await asyncio.sleep(b.delay)
        if isinstance(b, Status):
            payload = b.body
            if payload is None:
                payload = error_body(call.flavor, b.code, phrase(b.code))
            rec.outcome = f"error:{b.code}"
            return await self._send_json(call, b.code, payload, b.headers)
        content = b.content if isinstance(b, Reply) else None
        if content is None:
            content = self.reply_fn(body)
        finish = b.finish_reason if isinstance(b, Reply) else "stop"
        rec.outcome = "ok"
        if isinstance(b, BadJson) and wants_json(body):
            content, rec.outcome = 'Sure! Here is the JSON: {"echo": ', "bad_json"
        model = rec.model or "fake-model"
        if kind not in _OLLAMA:
            cid = f"chatcmpl-fake{next(self._ids):08d}"
            if not stream:
                answer = openai_completion(model, content, finish, cid, body)
                return await self._send_json(call, 200, answer)
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            counts = usage(body, content) if with_usage else None
            events = openai_sse(model, content, finish, cid, counts)
            return await self._send_stream(call, "text/event-stream", events)
        if stream:
            lines = ollama_ndjson(kind, model, content, finish, body)
            return await self._send_stream(call, "application/x-ndjson", lines)
        answer = ollama_final(kind, model, content, finish, body, True)
        return await self._send_json(call, 200, answer)

    # -- response writers --------------------------------------------------------------------

    def _conn_header(self, call: _Call) -> str:
        return "keep-alive" if call.keep_alive else "close"

    async def _send_json(
        self, call: _Call, code: int, payload: Any, extra: dict[str, str] | None = None
    ) -> bool:
        is_text = isinstance(payload, str)
        data = (payload if is_text else json.dumps(payload)).encode()
        headers = {
            "Content-Type": "text/plain; charset=utf-8" if is_text else "application/json",
            "Content-Length": str(len(data)),
            "Connection": self._conn_header(call),
            **(extra or {}),
        }
        call.writer.write(head(code, headers) + data)
        await call.writer.drain()
        return True

    async def _send_stream(self, call: _Call, ctype: str, chunks: list[bytes]) -> bool:
        headers = {"Content-Type": ctype, "Transfer-Encoding": "chunked",
                   "Cache-Control": "no-cache", "Connection": self._conn_header(call)}
        out = [head(200, headers)]
        out += [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks]
        out.append(b"0\r\n\r\n")
        call.writer.write(b"".join(out))
        await call.writer.drain()
        return True

    async def _error(self, call: _Call, code: int, message: str) -> bool:
        call.rec.outcome = f"error:{code}"
        return await self._send_json(call, code, error_body(call.flavor, code, message))


def main(argv: list[str] | None = None) -> None:
    """Serve standalone until SIGTERM/SIGINT, printing the URL once listening."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakellm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--api-key")
    parser.add_argument("--azure-api-key")
    parser.add_argument("--model", action="append", dest="models")
    parser.add_argument("--ollama-strict-models", action="store_true")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fake = FakeLLM(args.host, args.port, models=args.models, api_key=args.api_key,
                   azure_api_key=args.azure_api_key, latency=args.latency,
                   ollama_strict_models=args.ollama_strict_models)
    with fake:
        print(f"listening {fake.url}", flush=True)
        while not stop.wait(0.5):
            pass


if __name__ == "__main__":
    main()

"""Backend figures: local model tokens/s, and the wait a 429 with Retry-After: 2 adds."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any

from shared.backends import BackendConfig, ChatRequest
from shared.settings import Settings

PROMPTS = [
    "Summarize in one sentence: the quarterly report shows revenue grew 12% while costs fell.",
    "Write three short bullet points about why backups matter.",
    "Explain what a circuit breaker is in software, in two sentences.",
]


def local_tokens_per_second(runs: int = 3, max_tokens: int = 128) -> dict[str, Any]:
    """Generation speed of the `local` backend (llama.cpp, bundled SmolLM2 or LOCAL_MODEL_PATH)."""
    from workers.backends.local import LocalAdapter

    settings = Settings(local_max_tokens=max_tokens)
    adapter = LocalAdapter(BackendConfig("local", "local"), settings)

    async def go() -> list[tuple[int, int, float]]:
        await adapter.chat(ChatRequest(messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4))  # load the model outside the timing
        out = []
        for i in range(runs):
            request = ChatRequest(
                messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                max_tokens=max_tokens, temperature=0.7,
            )
            start = time.perf_counter()
            result = await adapter.chat(request)
            out.append((result.prompt_tokens, result.completion_tokens,
                        time.perf_counter() - start))
        return out

    samples = asyncio.run(go())
    rates = [c / s for _, c, s in samples if s > 0]
    return {
        "model": str(adapter.path.name),
        "threads": settings.local_threads or "llama.cpp default",
        "cores": os.cpu_count(),
        "runs": runs,
        "completion_tokens": [c for _, c, _ in samples],
        "seconds": [round(s, 3) for _, _, s in samples],
        "tokens_per_s_median": round(statistics.median(rates), 1),
    }


def retry_after_added_wait(runs: int = 3) -> dict[str, Any]:
    """How long the real retry path waits after a 429 saying Retry-After: 2 (fake backend)."""
    from tests.fakellm import FakeLLM, Reply, Status
    from workers.backends import build_adapter
    from workers.llm import run_llm_step

    settings = Settings(local_enabled=False)  # default retry settings (initial wait 0.5 s)
    waits: list[float] = []
    with FakeLLM() as fake:
        config = BackendConfig("compat", "openai_compatible", f"{fake.url}/v1",
                               default_model="fake-model")
        for _ in range(runs):
            model = f"bench-{uuid.uuid4().hex[:8]}"
            fake.script(model, Status(429, headers={"Retry-After": "2"}), Reply("ok"))

            async def go(m: str = model) -> None:
                adapter = build_adapter(config, settings)
                try:
                    step = {"messages": [{"role": "user", "content": "x"}], "options": {}}
                    await run_llm_step(adapter, step, m, settings)
                finally:
                    await adapter.aclose()

            asyncio.run(go())
            first, second = fake.requests_for(model)
            waits.append(second.received_at - first.received_at)
    return {
        "retry_after_s": 2,
        "runs": runs,
        "waits_s": [round(w, 3) for w in waits],
        "median_wait_s": round(statistics.median(waits), 3),
        "max_wait_s": round(max(waits), 3),
    }


def main() -> None:
    """Print both figures (python -m bench.backends)."""
    for name, fn in (("local tokens/s", local_tokens_per_second),
                     ("429 Retry-After: 2 wait", retry_after_added_wait)):
        print(name, fn())  # noqa: T201 - a benchmark's output is its point


if __name__ == "__main__":
    main()

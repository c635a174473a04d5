"""`python -m bench.hostile`: time and API memory to refuse zip bombs (honest and forged).

Prints, per upload, the HTTP status, the seconds to the answer and the API processes' RSS
growth, plus how long a GET /v1/jobs/{id} took while the bombs were being refused.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from bench.system import chat, system
from tests.fakellm import FakeLLM
from tests.fixtures.hostile import MIB, docx_bomb, understate_sizes, xlsx_bomb
from tests.fixtures.stack import Stack
from tests.fixtures.workbooks import submit


def api_rss(stack: Stack) -> int:
    proc = psutil.Process(stack.processes["api"].pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--unpacked-mib", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    size = args.unpacked_mib * MIB
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bombs = {
            "xlsx": xlsx_bomb(folder / "b.xlsx", size).read_bytes(),
            "forged xlsx": understate_sizes(xlsx_bomb(folder / "f.xlsx", size), 1000).read_bytes(),
            "docx": docx_bomb(folder / "b.docx", size).read_bytes(),
        }
        for name, data in bombs.items():
            print(f"{name}: {len(data) / 1024:.0f} KiB on the wire, ~{args.unpacked_mib} MiB "
                  "unpacked")
        with FakeLLM() as fake, system(fake) as stack:
            key = stack.new_key()
            with stack.client(key) as client:
                job_id = client.post("/v1/jobs", json=chat("hi")).json()["id"]
                client.get(f"/v1/jobs/{job_id}")
                base = api_rss(stack)
                calls = [
                    ("batch xlsx", lambda c: submit(c, bombs["xlsx"], "b.xlsx", column="A")),
                    ("batch forged", lambda c: submit(c, bombs["forged xlsx"], "f.xlsx",
                                                      column="A")),
                    ("files xlsx", lambda c: c.post("/v1/files", files={"file": (
                        "b.xlsx", bombs["xlsx"])}, data={"purpose": "analysis"})),
                    ("files docx", lambda c: c.post("/v1/files", files={"file": (
                        "b.docx", bombs["docx"])}, data={"purpose": "analysis"})),
                ]
                peak = base
                for name, call in calls:
                    times, statuses = [], set()
                    for _ in range(args.repeat):
                        start = time.perf_counter()
                        response: httpx.Response = call(client)
                        times.append(time.perf_counter() - start)
                        statuses.add(response.status_code)
                        peak = max(peak, api_rss(stack))
                    median_ms = statistics.median(times) * 1000
                    print(f"{name:13} status {sorted(statuses)}  median {median_ms:.0f} ms  "
                          f"max {max(times) * 1000:.0f} ms")
                polls: list[float] = []
                done = threading.Event()

                def attack() -> None:
                    with stack.client(key) as hostile:
                        for _ in range(args.repeat):
                            submit(hostile, bombs["forged xlsx"], "f.xlsx", column="A")
                    done.set()

                thread = threading.Thread(target=attack)
                thread.start()
                while not done.is_set():
                    start = time.perf_counter()
                    client.get(f"/v1/jobs/{job_id}")
                    polls.append(time.perf_counter() - start)
                thread.join()
                peak = max(peak, api_rss(stack))
            print(f"GET /v1/jobs/{{id}} during forged-bomb uploads: {len(polls)} polls, max "
                  f"{max(polls) * 1000:.0f} ms")
            print(f"API RSS: {base / MIB:.0f} MiB before, peak {peak / MIB:.0f} MiB, "
                  f"growth {(peak - base) / MIB:.0f} MiB")


if __name__ == "__main__":
    main()

"""The Excel add-in (clients/excel): its manifest, and its JS run by node against a real stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fakellm import FakeLLM, Reply
from tests.fixtures.stack import REPO, Stack

ADDIN = REPO / "clients" / "excel"
ORIGIN = "https://addin.example.test"
NS = {
    "o": "http://schemas.microsoft.com/office/appforoffice/1.1",
    "ov": "http://schemas.microsoft.com/office/taskpaneappversionoverrides",
    "bt": "http://schemas.microsoft.com/office/officeappbasictypes/1.0",
}
PLACEHOLDER = "https://localhost:3000"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def node() -> str:
    """The node binary; the suite fails (never skips) without it."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not installed: the Excel add-in tests need Node.js >= 20 on PATH")
    return found


def resources(root: ET.Element, path: str) -> dict[str, str]:
    """Resource id -> DefaultValue for the manifest's `path` elements."""
    return {el.get("id", ""): el.get("DefaultValue", "") for el in root.iterfind(path, NS)}


def test_manifest_points_at_the_files_and_namespace() -> None:
    root = ET.parse(ADDIN / "manifest.xml").getroot()
    urls = resources(root, ".//bt:Url")
    images = resources(root, ".//bt:Images/bt:Image")
    strings = resources(root, ".//bt:String")
    point = root.find(f".//ov:ExtensionPoint[@{{{XSI}}}type='CustomFunctions']", NS)
    assert point is not None
    namespace = point.find("ov:Namespace", NS)
    assert namespace is not None
    assert strings[namespace.get("resid", "")] == "LLMJOBS"
    # Every resid used anywhere is defined in Resources.
    used = {el.get("resid") for el in root.iter() if el.get("resid")}
    assert used <= {*urls, *images, *strings}, used - {*urls, *images, *strings}
    # Every URL is on the one documented placeholder host and names a file that exists.
    tags = ("IconUrl", "HighResolutionIconUrl", "SupportUrl", "DefaultSettings/o:SourceLocation")
    plain = [root.find(f"o:{tag}", NS) for tag in tags]
    every = [*urls.values(), *images.values(),
             *(el.get("DefaultValue", "") for el in plain if el is not None)]
    assert len(every) == len(urls) + len(images) + 4
    for url in every:
        assert url.startswith(PLACEHOLDER + "/"), url
        assert (ADDIN / urlsplit(url).path.lstrip("/")).is_file(), url
    assert urls["Functions.Metadata.Url"].endswith("/functions.json")
    assert urls["Functions.Script.Url"].endswith("/functions.js")
    # The shared runtime's page hosts the functions: it must load core before functions.
    runtime = root.find(".//ov:Runtime", NS)
    page_source = point.find("ov:Page/ov:SourceLocation", NS)
    assert runtime is not None
    assert page_source is not None
    assert runtime.get("resid") == page_source.get("resid") == "Taskpane.Url"
    page = (ADDIN / "taskpane.html").read_text()
    assert page.index('src="functions-core.js"') < page.index('src="functions.js"')
    metadata = json.loads((ADDIN / "functions.json").read_text())
    assert [f["id"] for f in metadata["functions"]] == ["SUMMARIZE", "CLASSIFY", "ASK"]
    for js in ("functions-core.js", "functions.js", "taskpane.js"):
        subprocess.run([node(), "--check", str(ADDIN / js)], check=True)


def test_excel_functions_against_the_running_api(
    make_stack: Callable[..., Stack], fake_llm: FakeLLM
) -> None:
    stack = make_stack(env={"LLMJOBS_CORS_ORIGINS": ORIGIN, "LLMJOBS_POLL_RETRY_AFTER_S": "1"})
    classify_model = f"excel-label-{uuid.uuid4().hex[:8]}"
    slow_model = f"excel-slow-{uuid.uuid4().hex[:8]}"
    # The default fake answers {"echo": ...} to JSON requests, which has no label; this model
    # answers like a real classifier so CLASSIFY's success path is exercised too.
    fake_llm.rule(classify_model, lambda req: Reply(json.dumps({"label": "neg"})))
    fake_llm.rule(slow_model, lambda req: Reply("too late", delay=5))
    env = {
        **os.environ,
        "LLMJOBS_URL": stack.api_url,
        "LLMJOBS_KEY": stack.new_key(),
        "LLMJOBS_CORS_ORIGIN": ORIGIN,
        "LLMJOBS_CLASSIFY_MODEL": classify_model,
        "LLMJOBS_SLOW_MODEL": slow_model,
    }
    done = subprocess.run(
        [node(), "--test", "--test-reporter=spec", str(Path("clients/excel/test"))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"node --test failed:\n{output}\n--- api log ---\n" + \
        stack.logs("api")[-3000:]
    counts = dict(re.findall(r"^ℹ (pass|fail|skipped|cancelled) (\d+)$", output, re.M))
    assert counts == {"pass": counts["pass"], "fail": "0", "skipped": "0", "cancelled": "0"}
    assert int(counts["pass"]) >= 15, output
    assert fake_llm.requests_for(classify_model), "CLASSIFY never reached the backend"

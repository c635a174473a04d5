// The Excel add-in's functions against the real llm-jobs API (started by
// tests/clients/test_excel_addin.py), plus the pure request/answer logic.
// Run: LLMJOBS_URL=http://127.0.0.1:8000 LLMJOBS_KEY=lj_live_... node --test clients/excel/test/
"use strict";

const { describe, it, before } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

const core = require("../functions-core.js");

const ADDIN = path.resolve(__dirname, "..");
const env = process.env;
const API = env.LLMJOBS_URL;
const KEY = env.LLMJOBS_KEY;
const ORIGIN = env.LLMJOBS_CORS_ORIGIN || "https://addin.example.test";

function config(extra) {
  return { baseUrl: API, apiKey: KEY, ...extra };
}

/** Real fetch and real sleep, recorded: what was asked, what came back, how long we waited. */
function recorder() {
  const log = { requests: [], sleeps: [] };
  log.fetch = async (url, init) => {
    const entry = { url: String(url), method: (init && init.method) || "GET" };
    log.requests.push(entry);
    const response = await fetch(url, init);
    entry.status = response.status;
    entry.retryAfter = response.headers.get("Retry-After");
    entry.location = response.headers.get("Location");
    return response;
  };
  log.sleep = (ms, signal) => {
    log.sleeps.push(ms);
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); });
    });
  };
  return log;
}

async function waitForStatus(jobUrl, wanted) {
  const deadline = Date.now() + 20000;
  let job;
  while (Date.now() < deadline) {
    const response = await fetch(jobUrl, { headers: { Authorization: "Bearer " + KEY } });
    job = await response.json();
    if (wanted.includes(job.status)) return job;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail("job never reached " + wanted + ": " + JSON.stringify(job));
}

before(() => {
  // Fail, not skip: without a server these tests would prove nothing.
  assert.ok(API, "LLMJOBS_URL is not set: run through tests/clients/test_excel_addin.py");
  assert.ok(KEY, "LLMJOBS_KEY is not set: run through tests/clients/test_excel_addin.py");
  // Models the pytest side scripted on the fake backend: a valid label, a slow answer.
  assert.ok(env.LLMJOBS_CLASSIFY_MODEL, "LLMJOBS_CLASSIFY_MODEL is not set");
  assert.ok(env.LLMJOBS_SLOW_MODEL, "LLMJOBS_SLOW_MODEL is not set");
});

describe("request bodies and answers (pure)", () => {
  it("builds a summarize job with the configured routing", () => {
    const body = core.summarizeBody("Long text", { backend: "ollama", model: "m" });
    assert.deepEqual(body, {
      type: "summarize",
      input: { text: "Long text" },
      metadata: { source: "excel", function: "SUMMARIZE" },
      backend: "ollama",
      model: "m",
    });
  });

  it("splits labels from a string or a range, dropping blanks and duplicates", () => {
    assert.deepEqual(core.parseLabels("pos, neg,neutral,,POS"), ["pos", "neg", "neutral"]);
    assert.deepEqual(core.parseLabels([["pos"], ["neg,neutral"], [null]]), ["pos", "neg", "neutral"]);
    assert.throws(() => core.parseLabels("only"), /at least two/);
    const body = core.classifyBody("great!", "pos,neg", {});
    assert.deepEqual(body.input, {
      document: { text: "great!" }, analysis: "classification", labels: ["pos", "neg"],
    });
  });

  it("joins a 2-D range as a table", () => {
    const table = core.tableText([
      ["name", "score", ""],
      ["a|b", 3, true],
      ["", null, ""],
      ["two\nlines", 0, false],
    ]);
    assert.equal(table, "name | score\na\\|b | 3 | TRUE\ntwo lines | 0 | FALSE");
    const body = core.askBody("Who scored most?", [["x", 1]], {});
    assert.equal(body.type, "chat");
    assert.equal(body.input.messages.at(-1).role, "user");
    assert.match(body.input.messages.at(-1).content, /^Who scored most\?\n\nTable .*\nx \| 1$/s);
  });

  it("reads the cell text out of each kind of finished job", () => {
    const done = (result) => ({ id: "job_1", status: "succeeded", result });
    assert.equal(core.answerFrom("summarize", done({ summary: "S" })), "S");
    assert.equal(core.answerFrom("classify", done({ label: "pos", scores: {} })), "pos");
    assert.equal(core.answerFrom("ask", done({ message: { role: "assistant", content: "A" } })), "A");
    assert.throws(
      () => core.answerFrom("ask", { id: "job_2", status: "failed", error: { message: "boom" } }),
      (e) => e.code === "JOB_FAILED" && /boom \(job job_2\)/.test(e.message)
    );
  });

  it("refuses missing or malformed settings before any request", async () => {
    const log = recorder();
    assert.match(await core.summarize("x", { config: {}, fetch: log.fetch }),
      /^#LLMJOBS! CONFIG: no API base URL set/);
    assert.match(await core.summarize("x", { config: { baseUrl: API }, fetch: log.fetch }),
      /^#LLMJOBS! CONFIG: no API key set/);
    assert.match(await core.summarize("x", { config: { baseUrl: "ftp://h", apiKey: "k" } }),
      /^#LLMJOBS! CONFIG: .*https:\/\//);
    assert.match(await core.summarize("  ", { config: config(), fetch: log.fetch }),
      /^#LLMJOBS! INPUT: text is empty/);
    assert.equal(log.requests.length, 0);
    assert.equal(core.normalizeConfig({ baseUrl: API + "/v1/", apiKey: "k" }).baseUrl, API);
  });
});

describe("the functions against the running API", () => {
  it("SUMMARIZE submits a job, polls Location honouring Retry-After, returns the summary", async () => {
    const log = recorder();
    const text = "Quarterly revenue grew while costs fell.";
    const answer = await core.summarize(text, { config: config(), fetch: log.fetch, sleep: log.sleep });
    assert.ok(answer.startsWith("echo: "), answer);
    assert.ok(answer.includes("Quarterly revenue grew"), answer);
    const [post, ...polls] = log.requests;
    assert.equal(post.method, "POST");
    assert.equal(post.status, 202);
    assert.ok(polls.length >= 1);
    for (const poll of polls) assert.equal(poll.url, post.location); // followed Location
    assert.equal(polls.at(-1).status, 200);
    // Each wait is the Retry-After of the answer before it (POST, then every 202).
    const announced = [post, ...polls.slice(0, -1)].map((r) => Number(r.retryAfter) * 1000);
    assert.deepEqual(log.sleeps, announced);
  });

  it("CLASSIFY returns the label the model chose", async () => {
    const answer = await core.classify("I hated every minute", "pos,neg,neutral", {
      config: config({ model: env.LLMJOBS_CLASSIFY_MODEL }),
    });
    assert.equal(answer, "neg");
  });

  it("CLASSIFY against the default fake model fails clearly (its JSON has no label)", async (t) => {
    const answer = await core.classify("fine", "pos,neg", { config: config() });
    t.diagnostic(answer);
    assert.match(answer, /^#LLMJOBS! JOB_FAILED: .*\(job job_[0-9a-z]+\)$/);
    assert.match(answer, /label/);
  });

  it("ASK sends the prompt and the range as a table and returns the chat answer", async () => {
    const range = [["name", "score"], ["ann", 3], ["bob", null]];
    const answer = await core.ask("Who scored?", range, { config: config() });
    assert.ok(answer.startsWith("echo: Who scored?"), answer);
    assert.ok(answer.includes("name | score\nann | 3\nbob"), answer);
  });

  it("names the problem: refused key, unknown backend, unreachable server", async (t) => {
    const refused = await core.summarize("x", { config: config({ apiKey: "lj_live_wrong" }) });
    assert.match(refused, /^#LLMJOBS! AUTH: the API key was refused/);
    const bad = await core.summarize("x", { config: config({ backend: "no_such_backend" }) });
    assert.match(bad, /^#LLMJOBS! HTTP_4\d\d: /);
    assert.match(bad, /no_such_backend|backend/);
    const closed = await core.summarize("x", {
      config: config({ baseUrl: "http://127.0.0.1:9" }),
      sleep: () => Promise.resolve(),
    });
    for (const cell of [refused, bad, closed]) t.diagnostic(cell);
    assert.match(closed, /^#LLMJOBS! NETWORK: cannot reach http:\/\/127\.0\.0\.1:9\/v1\/jobs .*LLMJOBS_CORS_ORIGINS/);
  });

  it("cancelling the cell cancels the job", async () => {
    const log = recorder();
    const controller = new AbortController();
    const pending = core.ask("take your time", null, {
      config: config({ model: env.LLMJOBS_SLOW_MODEL }),
      fetch: log.fetch, sleep: log.sleep, signal: controller.signal,
    });
    while (!log.requests.some((r) => r.status === 202)) await new Promise((r) => setTimeout(r, 20));
    controller.abort();
    assert.match(await pending, /^#LLMJOBS! CANCELLED: Excel cancelled the call \(job job_/);
    const jobUrl = log.requests[0].location;
    assert.ok(log.requests.some((r) => r.method === "POST" && r.url === jobUrl + "/cancel"));
    assert.equal((await waitForStatus(jobUrl, ["cancelled", "succeeded"])).status, "cancelled");
  });
});

describe("functions.js inside a simulated Excel runtime", () => {
  function loadAddin(storage) {
    const associated = {};
    const sandbox = {
      CustomFunctions: { associate: (id, fn) => { associated[id] = fn; } },
      OfficeRuntime: { storage },
      LlmJobsCore: core,
      AbortController, fetch, setTimeout, clearTimeout, URL, crypto,
    };
    vm.createContext(sandbox);
    vm.runInContext(fs.readFileSync(path.join(ADDIN, "functions.js"), "utf8"), sandbox);
    return associated;
  }

  function memoryStorage() {
    const items = new Map();
    return {
      getItem: async (k) => (items.has(k) ? items.get(k) : null),
      setItem: async (k, v) => { items.set(k, v); },
    };
  }

  it("registers every function in functions.json", () => {
    const metadata = JSON.parse(fs.readFileSync(path.join(ADDIN, "functions.json"), "utf8"));
    const ids = metadata.functions.map((f) => f.id).sort();
    assert.deepEqual(Object.keys(loadAddin(memoryStorage())).sort(), ids);
    assert.deepEqual(ids, ["ASK", "CLASSIFY", "SUMMARIZE"]);
  });

  it("answers from the settings the task pane saved", async () => {
    const storage = memoryStorage();
    const fns = loadAddin(storage);
    const invocation = {};
    assert.match(await fns.SUMMARIZE("hello", invocation), /^#LLMJOBS! CONFIG: no API base URL/);
    await core.saveConfig(storage, { baseUrl: API + "/v1", apiKey: KEY });
    assert.equal(typeof invocation.onCanceled, "function"); // Excel can cancel the call
    const answer = await fns.SUMMARIZE("Excel says hello", {});
    assert.ok(answer.startsWith("echo: ") && answer.includes("Excel says hello"), answer);
    assert.ok((await fns.ASK("Sum?", [[1, 2]], {})).startsWith("echo: Sum?"));
  });
});

describe("CORS for the add-in's origin", () => {
  const preflight = (origin) => fetch(API + "/v1/jobs", {
    method: "OPTIONS",
    headers: {
      Origin: origin,
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    },
  });

  it("allows the configured origin, its headers, and exposes Location and Retry-After", async () => {
    const response = await preflight(ORIGIN);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("access-control-allow-origin"), ORIGIN);
    const allowed = response.headers.get("access-control-allow-headers").toLowerCase();
    for (const h of ["authorization", "content-type", "idempotency-key"]) assert.ok(allowed.includes(h), allowed);
    assert.match(response.headers.get("access-control-allow-methods"), /POST/);

    const created = await fetch(API + "/v1/jobs", {
      method: "POST",
      headers: { Origin: ORIGIN, Authorization: "Bearer " + KEY, "Content-Type": "application/json" },
      body: JSON.stringify(core.summarizeBody("cors check", {})),
    });
    assert.equal(created.status, 202);
    assert.equal(created.headers.get("access-control-allow-origin"), ORIGIN);
    const exposed = created.headers.get("access-control-expose-headers").toLowerCase();
    assert.ok(exposed.includes("location") && exposed.includes("retry-after"), exposed);
  });

  it("gives another origin no allow header", async () => {
    const response = await preflight("https://evil.example");
    assert.equal(response.headers.get("access-control-allow-origin"), null);
    const get = await fetch(API + "/healthz", { headers: { Origin: "https://evil.example" } });
    assert.equal(get.headers.get("access-control-allow-origin"), null);
  });
});

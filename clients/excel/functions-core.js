/*
 * LLM Jobs for Excel: the add-in's logic, free of Office APIs so node can test it.
 *
 * Loaded by taskpane.html before functions.js (as the global `LlmJobsCore`) and importable
 * by node (`require("./functions-core.js")`). The only network API used is `fetch`, passed in
 * (`options.fetch`) or the global one; waiting is `options.sleep` or setTimeout. Every public
 * function resolves to a string: the answer, or "#LLMJOBS! PROBLEM: what to do" — never a
 * rejected promise, because Excel would only show #VALUE! for that.
 */
(function (root) {
  "use strict";

  const STORAGE_KEYS = Object.freeze({
    baseUrl: "llmjobs.baseUrl",
    apiKey: "llmjobs.apiKey",
    backend: "llmjobs.backend",
    model: "llmjobs.model",
  });
  const DEFAULT_POLL_MS = 2000; // when the API sends no Retry-After
  const MAX_POLL_MS = 60000; // a bogus Retry-After must not park a cell for hours
  const DEFAULT_MAX_WAIT_MS = 10 * 60 * 1000; // a cell gives up after 10 minutes
  const NETWORK_RETRIES = 3; // consecutive network failures tolerated while polling
  const MAX_MESSAGE = 300; // keep error cells readable
  const SETTINGS_HINT = "open LLM Jobs settings (Home tab > LLM Jobs)";

  /** A failure that becomes a "#LLMJOBS! CODE: message" cell. */
  class LlmJobsError extends Error {
    constructor(code, message) {
      super(message);
      this.name = "LlmJobsError";
      this.code = code;
    }
  }

  function errorText(code, message) {
    const text = String(message || "").replace(/\s+/g, " ").trim();
    const short = text.length > MAX_MESSAGE ? text.slice(0, MAX_MESSAGE - 1) + "…" : text;
    return "#LLMJOBS! " + code + ": " + short;
  }

  function isErrorText(value) {
    return typeof value === "string" && value.startsWith("#LLMJOBS! ");
  }

  // -- configuration -----------------------------------------------------------------------

  /** Check and tidy settings; throws LlmJobsError("CONFIG") naming what to fix. */
  function normalizeConfig(raw) {
    const cfg = raw || {};
    let baseUrl = String(cfg.baseUrl || "").trim();
    const apiKey = String(cfg.apiKey || "").trim();
    if (!baseUrl) throw new LlmJobsError("CONFIG", "no API base URL set: " + SETTINGS_HINT);
    let url;
    try {
      url = new URL(baseUrl);
    } catch (e) {
      throw new LlmJobsError("CONFIG", "the API base URL '" + baseUrl + "' is not a URL");
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new LlmJobsError("CONFIG", "the API base URL must start with https://");
    }
    // Accept ".../v1" too: users paste what the API docs show.
    baseUrl = url.href.replace(/\/+$/, "").replace(/\/v1$/, "");
    if (!apiKey) throw new LlmJobsError("CONFIG", "no API key set: " + SETTINGS_HINT);
    return {
      baseUrl: baseUrl,
      apiKey: apiKey,
      backend: String(cfg.backend || "").trim(),
      model: String(cfg.model || "").trim(),
    };
  }

  /** Read the settings from OfficeRuntime.storage (or anything with async getItem). */
  async function loadConfig(storage) {
    const cfg = {};
    for (const [field, key] of Object.entries(STORAGE_KEYS)) {
      cfg[field] = (await storage.getItem(key)) || "";
    }
    return cfg;
  }

  /** Validate and store the settings; returns the stored (normalised) values. */
  async function saveConfig(storage, raw) {
    const cfg = normalizeConfig(raw);
    for (const [field, key] of Object.entries(STORAGE_KEYS)) {
      await storage.setItem(key, cfg[field]);
    }
    return cfg;
  }

  // -- request bodies ----------------------------------------------------------------------

  function cellText(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "boolean") return value ? "TRUE" : "FALSE";
    return String(value);
  }

  function requiredText(value, what) {
    const text = cellText(Array.isArray(value) ? value.flat().map(cellText).join(" ") : value);
    if (!text.trim()) throw new LlmJobsError("INPUT", what + " is empty");
    return text;
  }

  /** Labels from "pos,neg,neutral" or a range of cells (each may hold commas too). */
  function parseLabels(labels) {
    const cells = Array.isArray(labels) ? labels.flat(Infinity) : [labels];
    const seen = new Set();
    const out = [];
    for (const cell of cells) {
      for (const part of cellText(cell).split(",")) {
        const label = part.trim();
        if (label && !seen.has(label.toLowerCase())) {
          seen.add(label.toLowerCase());
          out.push(label);
        }
      }
    }
    if (out.length < 2) {
      throw new LlmJobsError("INPUT", 'labels: give at least two, e.g. "pos,neg,neutral"');
    }
    if (out.length > 50) throw new LlmJobsError("INPUT", "labels: at most 50 are allowed");
    const long = out.find((l) => l.length > 100);
    if (long) throw new LlmJobsError("INPUT", "labels: '" + long.slice(0, 20) + "…' is over 100 characters");
    return out;
  }

  /** A 2-D range as text: one line per row, cells joined by " | ", blank rows dropped. */
  function tableText(range) {
    if (range === null || range === undefined || range === "") return "";
    const rows = Array.isArray(range) ? range : [[range]];
    const lines = [];
    for (const row of rows) {
      const cells = (Array.isArray(row) ? row : [row]).map((c) =>
        cellText(c).replace(/\r?\n/g, " ").replace(/\|/g, "\\|").trim()
      );
      while (cells.length && cells[cells.length - 1] === "") cells.pop();
      if (cells.length) lines.push(cells.join(" | "));
    }
    return lines.join("\n");
  }

  function withRouting(body, cfg) {
    if (cfg.backend) body.backend = cfg.backend;
    if (cfg.model) body.model = cfg.model;
    return body;
  }

  function summarizeBody(text, cfg) {
    return withRouting(
      {
        type: "summarize",
        input: { text: requiredText(text, "text") },
        metadata: { source: "excel", function: "SUMMARIZE" },
      },
      cfg || {}
    );
  }

  function classifyBody(text, labels, cfg) {
    return withRouting(
      {
        type: "analyze",
        input: {
          document: { text: requiredText(text, "text") },
          analysis: "classification",
          labels: parseLabels(labels),
        },
        metadata: { source: "excel", function: "CLASSIFY" },
      },
      cfg || {}
    );
  }

  const ASK_SYSTEM =
    "You answer questions about spreadsheet data. Reply with the answer only, briefly: " +
    "it is shown in one spreadsheet cell.";

  function askBody(prompt, range, cfg) {
    const question = requiredText(prompt, "prompt");
    const table = tableText(range);
    const content = table
      ? question + "\n\nTable (one row per line, cells separated by \" | \"):\n" + table
      : question;
    return withRouting(
      {
        type: "chat",
        input: {
          messages: [
            { role: "system", content: ASK_SYSTEM },
            { role: "user", content: content },
          ],
        },
        metadata: { source: "excel", function: "ASK" },
      },
      cfg || {}
    );
  }

  // -- answers -----------------------------------------------------------------------------

  /** The cell text from a finished job object, or an LlmJobsError saying why there is none. */
  function answerFrom(kind, job) {
    if (!job || typeof job !== "object") throw new LlmJobsError("BAD_ANSWER", "the API sent no job");
    if (job.status === "failed") {
      const err = job.error || {};
      const why = err.message || err.type || "no reason given";
      throw new LlmJobsError("JOB_FAILED", why + " (job " + job.id + ")");
    }
    if (job.status === "cancelled") {
      throw new LlmJobsError("CANCELLED", "job " + job.id + " was cancelled");
    }
    if (job.status !== "succeeded") {
      throw new LlmJobsError("BAD_ANSWER", "job " + job.id + " is still " + job.status);
    }
    const result = job.result || {};
    let text;
    if (kind === "summarize") text = result.summary;
    else if (kind === "classify") text = result.label;
    else if (kind === "ask") text = result.message && result.message.content;
    if (typeof text !== "string") {
      throw new LlmJobsError("BAD_ANSWER", "job " + job.id + " has no " + kind + " result");
    }
    return text;
  }

  // -- HTTP --------------------------------------------------------------------------------

  function defaultSleep(ms, signal) {
    return new Promise((resolve) => {
      if (signal && signal.aborted) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        if (signal) signal.removeEventListener("abort", done);
        resolve();
      }
      if (signal) signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Retry-After in ms (seconds or an HTTP date), bounded; the default when absent. */
  function retryAfterMs(response, fallbackMs) {
    const value = response.headers.get("Retry-After");
    if (value === null || value.trim() === "") return fallbackMs;
    let ms = Number(value) * 1000;
    if (!Number.isFinite(ms)) ms = Date.parse(value) - Date.now();
    if (!Number.isFinite(ms)) return fallbackMs;
    return Math.min(Math.max(ms, 0), MAX_POLL_MS);
  }

  async function apiMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) {
        return body.error.message + (body.error.param ? " (" + body.error.param + ")" : "");
      }
    } catch (e) {
      // Not our error shape (a proxy's page, say): the status line has to do.
    }
    return "HTTP " + response.status + (response.statusText ? " " + response.statusText : "");
  }

  async function httpError(response, url) {
    const message = await apiMessage(response);
    if (response.status === 401) {
      return new LlmJobsError("AUTH", "the API key was refused (" + message + "): " + SETTINGS_HINT);
    }
    if (response.status === 403) return new LlmJobsError("FORBIDDEN", message);
    if (response.status === 404) return new LlmJobsError("NOT_FOUND", message + " at " + url);
    if (response.status === 413) return new LlmJobsError("TOO_LARGE", message);
    if (response.status === 429) return new LlmJobsError("RATE_LIMITED", message);
    return new LlmJobsError("HTTP_" + response.status, message);
  }

  function networkError(url, err) {
    const why = err && err.message ? err.message : String(err);
    return new LlmJobsError(
      "NETWORK",
      "cannot reach " + url + " (" + why + "): check the base URL, that the API is served " +
        "over HTTPS, and that LLMJOBS_CORS_ORIGINS on the server lists this add-in's origin"
    );
  }

  function newIdempotencyKey() {
    const c = typeof crypto !== "undefined" ? crypto : null;
    if (c && typeof c.randomUUID === "function") return "excel-" + c.randomUUID();
    return "excel-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  function runtime(options) {
    const opts = options || {};
    const fetchFn = opts.fetch || (typeof fetch !== "undefined" ? fetch : null);
    if (!fetchFn) throw new LlmJobsError("RUNTIME", "this Excel has no fetch API");
    return {
      fetch: fetchFn,
      sleep: opts.sleep || defaultSleep,
      signal: opts.signal,
      maxWaitMs: opts.maxWaitMs || DEFAULT_MAX_WAIT_MS,
      now: opts.now || (() => Date.now()),
    };
  }

  function checkAborted(rt, jobId) {
    if (rt.signal && rt.signal.aborted) {
      throw new LlmJobsError("CANCELLED", "Excel cancelled the call" + (jobId ? " (job " + jobId + ")" : ""));
    }
  }

  /** POST /v1/jobs; retried on 429/503 and network errors with one Idempotency-Key. */
  async function submitJob(cfg, body, rt) {
    const url = cfg.baseUrl + "/v1/jobs";
    const headers = {
      Authorization: "Bearer " + cfg.apiKey,
      "Content-Type": "application/json",
      // Safe retries: a repeated POST answers the job the first one created.
      "Idempotency-Key": newIdempotencyKey(),
    };
    const deadline = rt.now() + rt.maxWaitMs;
    for (let attempt = 1; ; attempt++) {
      checkAborted(rt);
      let response;
      try {
        response = await rt.fetch(url, {
          method: "POST",
          headers: headers,
          body: JSON.stringify(body),
          signal: rt.signal,
        });
      } catch (err) {
        checkAborted(rt);
        if (attempt >= NETWORK_RETRIES) throw networkError(url, err);
        await rt.sleep(DEFAULT_POLL_MS * attempt, rt.signal);
        continue;
      }
      if (response.status === 202 || response.status === 200 || response.status === 201) {
        const job = await response.json();
        const location = response.headers.get("Location");
        // Location is the contract; the fallback covers a proxy that hides the header.
        const jobUrl = location
          ? new URL(location, cfg.baseUrl + "/").href
          : cfg.baseUrl + "/v1/jobs/" + encodeURIComponent(job.id);
        return { job: job, jobUrl: jobUrl, waitMs: retryAfterMs(response, DEFAULT_POLL_MS) };
      }
      if (response.status === 429 || response.status === 503) {
        const waitMs = retryAfterMs(response, DEFAULT_POLL_MS);
        if (rt.now() + waitMs > deadline) throw await httpError(response, url);
        await rt.sleep(waitMs, rt.signal);
        continue;
      }
      throw await httpError(response, url);
    }
  }

  /** GET the job's Location until it answers 200, waiting Retry-After between polls. */
  async function waitForJob(cfg, submitted, rt) {
    const headers = { Authorization: "Bearer " + cfg.apiKey };
    const deadline = rt.now() + rt.maxWaitMs;
    const jobId = submitted.job.id;
    let waitMs = submitted.waitMs;
    let failures = 0;
    for (;;) {
      if (rt.now() + waitMs > deadline) {
        throw new LlmJobsError(
          "TIMEOUT",
          "job " + jobId + " still running after " + Math.round(rt.maxWaitMs / 1000) + " s; recalculate to try again"
        );
      }
      await rt.sleep(waitMs, rt.signal);
      checkAborted(rt, jobId);
      let response;
      try {
        response = await rt.fetch(submitted.jobUrl, { headers: headers, signal: rt.signal });
      } catch (err) {
        checkAborted(rt, jobId);
        failures += 1;
        if (failures >= NETWORK_RETRIES) throw networkError(submitted.jobUrl, err);
        waitMs = DEFAULT_POLL_MS * failures;
        continue;
      }
      failures = 0;
      if (response.status === 200) return response.json();
      if (response.status === 202 || response.status === 429 || response.status === 503) {
        waitMs = retryAfterMs(response, DEFAULT_POLL_MS);
        continue;
      }
      throw await httpError(response, submitted.jobUrl);
    }
  }

  async function cancelQuietly(cfg, jobUrl, rt) {
    try {
      await rt.fetch(jobUrl.replace(/\/+$/, "") + "/cancel", {
        method: "POST",
        headers: { Authorization: "Bearer " + cfg.apiKey },
      });
    } catch (e) {
      // Best effort: the sweep expires abandoned jobs anyway.
    }
  }

  /** Submit `body`, poll it to the end and return the cell text (or an error text). */
  async function runJob(kind, makeBody, options) {
    let rt;
    let cfg;
    let submitted = null;
    try {
      rt = runtime(options);
      cfg = normalizeConfig(options && options.config);
      const body = makeBody(cfg);
      submitted = await submitJob(cfg, body, rt);
      const job = await waitForJob(cfg, submitted, rt);
      return answerFrom(kind, job);
    } catch (err) {
      if (submitted && rt && rt.signal && rt.signal.aborted) {
        // Excel dropped the cell (edit, recalculation): stop paying for the answer.
        await cancelQuietly(cfg, submitted.jobUrl, rt);
      }
      if (err instanceof LlmJobsError) return errorText(err.code, err.message);
      return errorText("INTERNAL", err && err.message ? err.message : String(err));
    }
  }

  function summarize(text, options) {
    return runJob("summarize", (cfg) => summarizeBody(text, cfg), options);
  }

  function classify(text, labels, options) {
    return runJob("classify", (cfg) => classifyBody(text, labels, cfg), options);
  }

  function ask(prompt, range, options) {
    return runJob("ask", (cfg) => askBody(prompt, range, cfg), options);
  }

  /** For the settings page: "OK ..." or an error text, by listing one job with the key. */
  async function checkConnection(options) {
    try {
      const rt = runtime(options);
      const cfg = normalizeConfig(options && options.config);
      const url = cfg.baseUrl + "/v1/jobs?limit=1";
      let response;
      try {
        response = await rt.fetch(url, { headers: { Authorization: "Bearer " + cfg.apiKey } });
      } catch (err) {
        throw networkError(url, err);
      }
      if (response.status !== 200) throw await httpError(response, url);
      return "OK: " + cfg.baseUrl + " accepted the key";
    } catch (err) {
      if (err instanceof LlmJobsError) return errorText(err.code, err.message);
      return errorText("INTERNAL", err && err.message ? err.message : String(err));
    }
  }

  const api = {
    STORAGE_KEYS: STORAGE_KEYS,
    LlmJobsError: LlmJobsError,
    errorText: errorText,
    isErrorText: isErrorText,
    normalizeConfig: normalizeConfig,
    loadConfig: loadConfig,
    saveConfig: saveConfig,
    parseLabels: parseLabels,
    tableText: tableText,
    summarizeBody: summarizeBody,
    classifyBody: classifyBody,
    askBody: askBody,
    answerFrom: answerFrom,
    retryAfterMs: retryAfterMs,
    runJob: runJob,
    summarize: summarize,
    classify: classify,
    ask: ask,
    checkConnection: checkConnection,
  };

  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.LlmJobsCore = api;
})(typeof globalThis !== "undefined" ? globalThis : this);

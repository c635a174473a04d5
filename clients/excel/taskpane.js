/* LLM Jobs for Excel: the settings form, saving to OfficeRuntime.storage. */
/* global Office, OfficeRuntime, LlmJobsCore, document */
(function () {
  "use strict";

  const FIELDS = ["baseUrl", "apiKey", "backend", "model"];

  function show(text) {
    const status = document.getElementById("status");
    status.textContent = text;
    status.className = LlmJobsCore.isErrorText(text) ? "error" : "ok";
  }

  function formValues() {
    const values = {};
    for (const field of FIELDS) values[field] = document.getElementById(field).value;
    return values;
  }

  async function fill() {
    const config = await LlmJobsCore.loadConfig(OfficeRuntime.storage);
    for (const field of FIELDS) document.getElementById(field).value = config[field] || "";
  }

  async function save(event) {
    event.preventDefault();
    try {
      const saved = await LlmJobsCore.saveConfig(OfficeRuntime.storage, formValues());
      show("Saved. Using " + saved.baseUrl + ". Recalculate (Ctrl+Alt+F9) to rerun formulas.");
    } catch (err) {
      show(err instanceof LlmJobsCore.LlmJobsError
        ? LlmJobsCore.errorText(err.code, err.message)
        : LlmJobsCore.errorText("CONFIG", "could not save: " + err.message));
    }
  }

  async function test() {
    show("Checking…");
    show(await LlmJobsCore.checkConnection({ config: formValues() }));
  }

  Office.onReady(function () {
    document.getElementById("settings").addEventListener("submit", save);
    document.getElementById("test").addEventListener("click", test);
    fill().catch(function (err) {
      show(LlmJobsCore.errorText("CONFIG", "cannot read the settings: " + err.message));
    });
  });
})();

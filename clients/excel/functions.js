/*
 * LLM Jobs for Excel: registers =LLMJOBS.SUMMARIZE, =LLMJOBS.CLASSIFY and =LLMJOBS.ASK.
 *
 * Plain JavaScript, no build step. taskpane.html (the add-in's shared-runtime page) loads
 * functions-core.js first, which defines the global LlmJobsCore holding all the logic; this
 * file only binds it to Excel: settings from OfficeRuntime.storage, cancellation from the
 * invocation object, and CustomFunctions.associate for the ids in functions.json.
 */
/* global CustomFunctions, OfficeRuntime, LlmJobsCore */
(function () {
  "use strict";

  const SETUP_ERROR =
    "#LLMJOBS! SETUP: functions-core.js did not load; serve it next to functions.js and " +
    "list it before functions.js in taskpane.html";

  // Set synchronously: Excel may cancel before the first await finishes.
  function cancelSignal(invocation) {
    if (!invocation || typeof AbortController === "undefined") return undefined;
    const controller = new AbortController();
    invocation.onCanceled = function () {
      controller.abort();
    };
    return controller.signal;
  }

  async function run(invocation, call) {
    if (typeof LlmJobsCore === "undefined") return SETUP_ERROR;
    const signal = cancelSignal(invocation);
    let config;
    try {
      config = await LlmJobsCore.loadConfig(OfficeRuntime.storage);
    } catch (err) {
      return LlmJobsCore.errorText("CONFIG", "cannot read the add-in's settings: " + err.message);
    }
    return call({ config: config, signal: signal });
  }

  /**
   * Summarize text with the LLM Jobs API.
   * @param {any} text Cell or text to summarize.
   * @param {CustomFunctions.CancelableInvocation} invocation
   * @returns {Promise<string>} The summary.
   */
  function summarize(text, invocation) {
    return run(invocation, (options) => LlmJobsCore.summarize(text, options));
  }

  /**
   * Classify text into one of the given labels.
   * @param {any} text Cell or text to classify.
   * @param {any[][]} labels "pos,neg,neutral" or a range of labels.
   * @param {CustomFunctions.CancelableInvocation} invocation
   * @returns {Promise<string>} The chosen label.
   */
  function classify(text, labels, invocation) {
    return run(invocation, (options) => LlmJobsCore.classify(text, labels, options));
  }

  /**
   * Ask a question about a range of cells.
   * @param {any} prompt The question or instruction.
   * @param {any[][]} [range] The cells the question is about, sent as a table.
   * @param {CustomFunctions.CancelableInvocation} invocation
   * @returns {Promise<string>} The model's answer.
   */
  function ask(prompt, range, invocation) {
    return run(invocation, (options) => LlmJobsCore.ask(prompt, range, options));
  }

  if (typeof CustomFunctions !== "undefined") {
    CustomFunctions.associate("SUMMARIZE", summarize);
    CustomFunctions.associate("CLASSIFY", classify);
    CustomFunctions.associate("ASK", ask);
  }
})();

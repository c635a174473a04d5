"""The prompts llm-jobs sends: one place to read and tune them."""

from __future__ import annotations

import json

SYSTEM = "You are a careful assistant. Answer only with what is asked, without preamble."


def summarize(text: str, instructions: str | None, max_words: int) -> list[dict[str, str]]:
    """Messages asking for a summary of one text."""
    ask = f"Summarize the following text in at most {max_words} words."
    if instructions:
        ask += f" {instructions}"
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{ask}\n\nText:\n{text}"},
    ]


def combine_summaries(parts: list[str], instructions: str | None, max_words: int) -> list[
    dict[str, str]
]:
    """Messages merging partial summaries of consecutive sections into one."""
    joined = "\n\n".join(f"Section {i + 1}:\n{p}" for i, p in enumerate(parts))
    ask = (
        "These are summaries of consecutive sections of one document. Write one summary of the "
        f"whole document in at most {max_words} words."
    )
    if instructions:
        ask += f" {instructions}"
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{ask}\n\n{joined}"},
    ]


_ANALYSIS_ASK = {
    "summary": 'Summarize the text. Answer JSON: {"summary": "..."}.',
    "sentiment": (
        'Judge the overall sentiment of the text. Answer JSON: {"sentiment": '
        '"positive|neutral|negative", "score": a number from -1 (very negative) to 1 '
        "(very positive)}."
    ),
    "classification": (
        "Classify the text into exactly one of these labels: {labels}. Answer JSON: "
        '{{"label": "<one of the labels>", "scores": {{"<label>": probability, ...}}}}.'
    ),
    "key_points": 'List the key points of the text. Answer JSON: {"key_points": ["...", ...]}.',
    "entities": (
        "List the named entities (people, organisations, places, dates, amounts, products) in "
        'the text. Answer JSON: {"entities": [{"name": "...", "type": "..."}, ...]}.'
    ),
    "custom": '{instructions} Answer JSON: {{"result": <your answer>}}.',
}


def _schema_ask(result_schema: dict[str, object] | None) -> str:
    if result_schema is None:
        return ""
    return (
        " The value of \"result\" must satisfy this JSON schema: "
        + json.dumps(result_schema, ensure_ascii=False, separators=(",", ":"))
    )


def analyze(
    text: str,
    analysis: str,
    labels: list[str] | None,
    instructions: str | None,
    result_schema: dict[str, object] | None = None,
) -> list[dict[str, str]]:
    """Messages asking for one analysis of a text, answered as JSON."""
    ask = _ANALYSIS_ASK[analysis]
    if analysis == "classification":
        ask = ask.format(labels=", ".join(labels or []))
    elif analysis == "custom":
        ask = ask.format(instructions=instructions or "") + _schema_ask(result_schema)
    return [
        {"role": "system", "content": SYSTEM + " Reply with one JSON object and nothing else."},
        {"role": "user", "content": f"{ask}\n\nText:\n{text}"},
    ]


def combine_analyses(
    partials: list[dict[str, object]],
    analysis: str,
    instructions: str | None,
    result_schema: dict[str, object] | None = None,
) -> list[dict[str, str]]:
    """Messages merging per-section analysis results into one result of the same shape."""
    ask = (
        "These are results of the same analysis on consecutive sections of one document. "
        "Merge them into one result for the whole document, same JSON shape, removing "
        "duplicates."
    )
    if instructions:
        ask += f" The analysis asked: {instructions}"
    ask += _schema_ask(result_schema)
    body = "\n".join(json.dumps(p, ensure_ascii=False) for p in partials)
    return [
        {"role": "system", "content": SYSTEM + " Reply with one JSON object and nothing else."},
        {"role": "user", "content": f"{ask}\n\n{body}"},
    ]


def repair(error: str) -> dict[str, str]:
    """The follow-up message asking the model to fix invalid JSON once."""
    return {
        "role": "user",
        "content": (
            f"Your answer was not valid: {error}. Reply again with only the corrected JSON "
            "object, no other text."
        ),
    }


def batch_row(text: str, mode: str, labels: list[str] | None) -> list[dict[str, str]]:
    """Messages for one spreadsheet row: its filled-in instructions, or a classification."""
    if mode == "classify":
        ask = _ANALYSIS_ASK["classification"].format(labels=", ".join(labels or []))
        return [
            {"role": "system", "content": SYSTEM + " Reply with one JSON object and nothing else."},
            {"role": "user", "content": f"{ask}\n\n{text}"},
        ]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]

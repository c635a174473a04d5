"""Splitting long inputs to fit a model's context: chunks for map, groups for reduce."""

from __future__ import annotations

from shared.documents.chunking import budget_for, chunk_text
from shared.tokens import count_tokens

PROMPT_TOKENS = 200


def chunk_budget(
    context_tokens: int, answer_tokens: int, prompt_tokens: int = PROMPT_TOKENS
) -> int:
    """Tokens of text one step may carry."""
    return budget_for(context_tokens, prompt_tokens, answer_tokens)


def split_text(
    text: str, context_tokens: int, answer_tokens: int, prompt_tokens: int = PROMPT_TOKENS
) -> list[str]:
    """The text as chunks that fit, overlapping a little so no sentence loses its context."""
    budget = chunk_budget(context_tokens, answer_tokens, prompt_tokens)
    if count_tokens(text) <= budget:
        return [text]
    return chunk_text(text, budget, overlap_tokens=min(128, budget // 10))


def group_parts(
    parts: list[str], context_tokens: int, answer_tokens: int, prompt_tokens: int = PROMPT_TOKENS
) -> list[list[str]]:
    """Consecutive parts packed into groups that each fit one reduce call (at least 2 a group)."""
    budget = chunk_budget(context_tokens, answer_tokens, prompt_tokens)
    groups: list[list[str]] = [[]]
    used = 0
    for part in parts:
        cost = count_tokens(part) + 8  # the separator and label around each part
        if groups[-1] and used + cost > budget and len(groups[-1]) >= 2:
            groups.append([])
            used = 0
        groups[-1].append(part)
        used += cost
    return groups

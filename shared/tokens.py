"""Token estimates without a tokenizer: the one estimator for budgets, checks and limits."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Scripts written without spaces; a BPE vocabulary spends about one token per character on them.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
_ASCII_WORD = re.compile(r"[A-Za-z]+")
_NUMBER = re.compile(r"\d+")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_OTHER_WORD = re.compile(f"[^\\W\\d_A-Za-z{_CJK}]+")
_SYMBOL = re.compile(r"[^\w\s]|_")
_WHITESPACE = re.compile(r"\s+")
_SINGLE_SPACE = re.compile(r"(?<!\s) (?!\s)")


def count_tokens(text: str) -> int:
    """Estimate the number of BPE tokens in `text` without any tokenizer download.

    ASCII words count one token per started 4 letters, other alphabetic words one per 2 letters,
    numbers one per 3 digits, every CJK character and punctuation mark one, and every whitespace
    run other than a single space one. On English prose this comes to about 3.4-3.6 characters
    per token, so it slightly overestimates cl100k (about 4 characters per token); that slack
    keeps chunk budgets safe for models with smaller vocabularies too. CJK text may need more
    tokens than estimated with cl100k-sized vocabularies, so keep a margin there.
    """
    if not text:
        return 0
    tokens = sum((len(w) + 3) // 4 for w in _ASCII_WORD.findall(text))
    tokens += sum((len(n) + 2) // 3 for n in _NUMBER.findall(text))
    tokens += sum((len(w) + 1) // 2 for w in _OTHER_WORD.findall(text))
    tokens += len(_CJK_CHAR.findall(text)) + len(_SYMBOL.findall(text))
    tokens += len(_WHITESPACE.findall(text)) - len(_SINGLE_SPACE.findall(text))
    return tokens


# Role markers and separators a chat template adds around each message.
MESSAGE_OVERHEAD_TOKENS = 8
# What a call is assumed to answer when it sets no max_tokens (a rate-limit reservation).
DEFAULT_ANSWER_TOKENS = 256


def messages_tokens(messages: Iterable[Mapping[str, str | None]]) -> int:
    """Tokens a list of chat messages takes in the prompt."""
    return sum(count_tokens(m.get("content") or "") + MESSAGE_OVERHEAD_TOKENS for m in messages)


def call_tokens(messages: Iterable[Mapping[str, str | None]], max_tokens: int | None) -> int:
    """Tokens a call may use before it is made: its prompt plus the answer it allows."""
    return messages_tokens(messages) + (max_tokens or DEFAULT_ANSWER_TOKENS)

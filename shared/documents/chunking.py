"""Structure-aware chunking of long texts for chunk → map → reduce jobs."""

from __future__ import annotations

import re
from collections.abc import Callable

from shared.tokens import count_tokens


def budget_for(context_tokens: int, prompt_tokens: int, answer_tokens: int) -> int:
    """Return the tokens left for one chunk after the fixed prompt and the reserved answer."""
    budget = context_tokens - prompt_tokens - answer_tokens
    if budget <= 64:
        raise ValueError(
            f"Only {budget} tokens are left for the document in a {context_tokens}-token context "
            f"after the prompt ({prompt_tokens}) and the reserved answer ({answer_tokens}); "
            "use a model with a larger context window or ask for a shorter answer."
        )
    return budget


# Separators are whitespace only (or empty), so a chunk boundary never drops a visible character.
_PARAGRAPH_SEP = re.compile(r"\n[^\S\n]*\n\s*")
_LINE_SEP = re.compile(r"\s*\n\s*")
_SENTENCE_SEP = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+|(?<=[。！？；])\s*")
_CELL_SEP = re.compile(r"(?<=\|)\s+")
_WORD_SEP = re.compile(r"\s+")
_TABLE_ROW = re.compile(r"\S\s+\|\s+\S")

Span = tuple[int, int]


def _spans(text: str, start: int, end: int, sep: re.Pattern[str]) -> list[Span]:
    """Split text[start:end] at `sep` into stripped, non-empty spans."""
    out: list[Span] = []
    pos = start
    for match in sep.finditer(text, start, end):
        if match.start() > pos:
            out.append((pos, match.start()))
        pos = max(pos, match.end())
    if pos < end:
        out.append((pos, end))
    return [s for s in (_strip(text, a, b) for a, b in out) if s[0] < s[1]]


def _strip(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _paragraphs(text: str, start: int, end: int) -> list[Span]:
    return _spans(text, start, end, _PARAGRAPH_SEP)


def _lines(text: str, start: int, end: int) -> list[Span]:
    return _spans(text, start, end, _LINE_SEP)


def _sentences(text: str, start: int, end: int) -> list[Span]:
    # A table row's periods are not sentence ends; split it between cells instead.
    is_row = _TABLE_ROW.search(text, start, end) is not None or (
        text[start] == "|" and text[end - 1] == "|"
    )
    return _spans(text, start, end, _CELL_SEP if is_row else _SENTENCE_SEP)


def _words(text: str, start: int, end: int) -> list[Span]:
    return _spans(text, start, end, _WORD_SEP)


_LEVELS: tuple[Callable[[str, int, int], list[Span]], ...] = (
    _paragraphs,
    _lines,
    _sentences,
    _words,
)


def _longest_prefix(text: str, start: int, end: int, limit: int) -> int:
    """Return the largest cut <= end with count_tokens(text[start:cut]) <= limit (at least +1)."""
    lo, hi = start + 1, min(end, start + 4 * limit + 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[start:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


# A piece is (start, end, level): level indexes the splitter to apply if it must be cut further.
Piece = tuple[int, int, int]
_WORD_LEVEL = len(_LEVELS)  # pieces at this level contain no whitespace


def _pieces(text: str, start: int, end: int, limit: int, level: int = 0) -> list[Piece]:
    """Split a span into pieces of at most `limit` tokens, coarsest boundaries first."""
    if count_tokens(text[start:end]) <= limit:
        return [(start, end, level)]
    out: list[Piece] = []
    if level == _WORD_LEVEL:
        # One unbroken run of characters longer than the budget: cut it by token count.
        while start < end:
            cut = _longest_prefix(text, start, end, limit)
            out.append((start, cut, level))
            start = cut
        return out
    for a, b in _LEVELS[level](text, start, end):
        out.extend(_pieces(text, a, b, limit, level + 1))
    return out


def _refine(text: str, piece: Piece, room: int, max_tokens: int) -> list[Piece] | None:
    """Cut a piece one level finer so part of it can fill a chunk; None if it should stay whole."""
    start, end, level = piece
    while level < _WORD_LEVEL:
        spans = _LEVELS[level](text, start, end)
        level += 1
        if len(spans) > 1:
            return [(a, b, level) for a, b in spans]
    # Ordinary words stay whole; only a long unbroken run is cut mid-way.
    if room < 1 or 4 * count_tokens(text[start:end]) <= max_tokens:
        return None
    cut = _longest_prefix(text, start, end, room)
    return [(start, cut, level), (cut, end, level)] if cut < end else None


# Overlap start candidates, best first, each with the share of the overlap budget it must fill
# to be taken: whole lines (table rows), then sentences or cells, then words.
_OVERLAP_TIERS: tuple[tuple[tuple[re.Pattern[str], ...], float], ...] = (
    ((_LINE_SEP,), 0.25),
    ((_LINE_SEP, _SENTENCE_SEP, _CELL_SEP), 0.5),
    ((_WORD_SEP,), 0.0),
)


def _boundaries(text: str, start: int, end: int, seps: tuple[re.Pattern[str], ...]) -> list[int]:
    """Sorted offsets inside text[start:end] where a unit following one of `seps` begins."""
    found = {_strip(text, m.end(), end)[0] for sep in seps for m in sep.finditer(text, start, end)}
    return sorted(p for p in found if start < p < end)


def _overlap_start(text: str, start: int, end: int, budget: int) -> int | None:
    """Offset where the trailing overlap of chunk text[start:end] begins, or None for none."""
    best: int | None = None
    for seps, share in _OVERLAP_TIERS:
        candidates = _boundaries(text, start, end, seps)
        # Suffix token counts fall as the start moves right: binary search the earliest fit.
        lo, hi = 0, len(candidates)
        while lo < hi:
            mid = (lo + hi) // 2
            if count_tokens(text[candidates[mid] : end]) <= budget:
                hi = mid
            else:
                lo = mid + 1
        if lo < len(candidates):
            best = candidates[lo]
            if count_tokens(text[best:end]) >= share * budget:
                return best
    if best is None:
        # The last word alone exceeds the budget: take its tail. Counts are reversal-invariant.
        tail = text[start:end][::-1]
        best = end - _longest_prefix(tail, 0, len(tail), budget)
        best = best if start < best < end else None
    return best


def chunk_text(text: str, max_tokens: int, overlap_tokens: int = 0) -> list[str]:
    """Split `text` into chunks of at most `max_tokens` tokens, sharing about `overlap_tokens`.

    Breaks at paragraphs first, then lines (table rows stay whole), sentences, words and, for a
    single over-long word, characters. Every chunk is a contiguous slice of `text`, so no
    visible character is lost and chunks appear in document order. Raises ValueError unless
    max_tokens >= 1 and 0 <= overlap_tokens <= max_tokens // 2.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if overlap_tokens < 0 or (overlap_tokens and 2 * overlap_tokens > max_tokens):
        raise ValueError("overlap_tokens must be between 0 and half of max_tokens")
    if not text.strip():
        return []
    if count_tokens(text) <= max_tokens:
        return [text]
    # Leave room in every chunk for the overlap and the whitespace token that follows it.
    piece_limit = max_tokens - overlap_tokens - 1 if overlap_tokens else max_tokens
    if piece_limit < 1:
        raise ValueError("max_tokens is too small for the requested overlap")
    start, end = _strip(text, 0, len(text))
    pending = _pieces(text, start, end, piece_limit)[::-1]  # a stack: next piece last

    chunks: list[str] = []
    carry: int | None = None  # where the overlap taken from the previous chunk starts
    while pending:
        first = pending.pop()
        chunk_start = first[0] if carry is None else carry
        chunk_end = first[1]
        used = count_tokens(text[chunk_start:chunk_end])
        while pending:
            nxt = pending[-1]
            sep = count_tokens(text[chunk_end : nxt[0]])
            cost = count_tokens(text[nxt[0] : nxt[1]])
            # Counts are subadditive across whitespace, so `used` bounds the chunk's true count.
            if used + sep + cost <= max_tokens:
                pending.pop()
                chunk_end, used = nxt[1], used + sep + cost
                continue
            if 2 * used < max_tokens:
                # Under half full: split the next piece rather than waste most of the budget.
                finer = _refine(text, nxt, max_tokens - used - sep, max_tokens)
                if finer:
                    pending[-1:] = finer[::-1]
                    continue
            break
        chunks.append(text[chunk_start:chunk_end])
        carry = None
        if overlap_tokens and pending:
            carry = _overlap_start(text, chunk_start, chunk_end, overlap_tokens)
    return chunks

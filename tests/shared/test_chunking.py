"""Chunker properties over generated texts of very different shapes, and the token estimate."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.documents import budget_for, chunk_text, count_tokens, extract_text
from tests.shared.test_extract import make_long_pdf

VOCAB = (
    "the of and to in a is that for it as with was on be by at this from or which an are "
    "revenue forecast international infrastructure contract quarter supplier implementation "
    "customer delivery management responsibility agreement performance"
).split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(VOCAB) for _ in range(rng.randint(4, 24))]
    words.append(f"{rng.randint(0, 99999)}")
    return " ".join(words).capitalize() + rng.choice([".", ".", "?", "!", '."'])


def long_paragraphs(rng: random.Random) -> str:
    return "\n\n".join(
        " ".join(sentence(rng) for _ in range(rng.randint(1, 40))) for _ in range(120)
    )


def giant_paragraph(rng: random.Random) -> str:
    # No blank lines at all: a few hard line breaks, otherwise one endless paragraph.
    return "\n".join(" ".join(sentence(rng) for _ in range(300)) for _ in range(4))


def table_rows(rng: random.Random) -> str:
    rows = [
        f"{i} | {rng.choice(VOCAB).title()} Inc. | {rng.randint(1, 9999)}.{rng.randint(0, 99):02d}"
        f" | {sentence(rng)}"
        for i in range(1500)
    ]
    return "Region | Company | Amount | Note\n" + "\n".join(rows)


def one_huge_word(rng: random.Random) -> str:
    word = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(10_000))
    return f"Intro sentence before the blob. {word} and a short tail after it."


def cjk_text(rng: random.Random) -> str:
    chars = [chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(12_000)]
    for i in range(30, len(chars), rng.randint(20, 60)):
        chars[i] = "。"
    half = len(chars) // 2
    # The second half has no sentence punctuation at all.
    return "".join(chars[:half]) + "\n\n" + "".join(c for c in chars[half:] if c != "。")


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "long_paragraphs": long_paragraphs,
    "giant_paragraph": giant_paragraph,
    "table_rows": table_rows,
    "one_huge_word": one_huge_word,
    "cjk": cjk_text,
}
BUDGETS = [(1500, 0), (1500, 150), (300, 60), (60, 20)]


def non_ws(text: str) -> str:
    return "".join(text.split())


def shared_overlap(previous: str, current: str) -> str:
    """The longest suffix of `previous` that `current` starts with."""
    for size in range(min(len(previous), len(current)), 0, -1):
        if previous.endswith(current[:size]):
            return current[:size]
    return ""


def assert_covers_in_order(text: str, chunks: list[str]) -> None:
    """Chunks, read in order and allowing overlaps, spell out every visible character."""
    full = non_ws(text)
    covered = 0
    start = 0
    for chunk in chunks:
        piece = non_ws(chunk)
        start = full.find(piece, start)
        assert 0 <= start <= covered, "a chunk is out of order or text was skipped"
        covered = max(covered, start + len(piece))
    assert covered == len(full)


@pytest.mark.parametrize("shape", sorted(GENERATORS))
@pytest.mark.parametrize(("max_tokens", "overlap"), BUDGETS)
def test_chunk_properties(shape: str, max_tokens: int, overlap: int) -> None:
    text = GENERATORS[shape](random.Random(shape))
    chunks = chunk_text(text, max_tokens, overlap)

    assert len(chunks) > 1
    assert all(chunk.strip() for chunk in chunks)
    assert max(count_tokens(chunk) for chunk in chunks) <= max_tokens
    assert_covers_in_order(text, chunks)
    assert chunk_text(text, max_tokens, overlap) == chunks
    overlaps = [shared_overlap(a, b) for a, b in zip(chunks, chunks[1:], strict=False)]
    if overlap:
        assert all(overlaps), "every pair of consecutive chunks should share text"
        sizes = [count_tokens(o) for o in overlaps]
        assert max(sizes) <= overlap
        assert sum(sizes) / len(sizes) >= overlap / 2
    else:
        # Without overlap the chunks tile the text: their visible lengths add up exactly.
        assert sum(len(non_ws(c)) for c in chunks) == len(non_ws(text))


def test_chunks_fill_their_budget() -> None:
    text = long_paragraphs(random.Random(1))
    chunks = chunk_text(text, 1500)
    # Greedy packing: all chunks but the last are at least half full.
    assert min(count_tokens(c) for c in chunks[:-1]) >= 1500 / 2


def test_paragraph_and_row_boundaries_preferred() -> None:
    rows = table_rows(random.Random(2))
    # The overlap budget exceeds the longest row, so the overlap can always be whole rows.
    assert max(count_tokens(row) for row in rows.splitlines()) < 150
    for chunk in chunk_text(rows, 400, 150):
        for line in chunk.splitlines():
            assert line.count(" | ") == 3, f"table row cut apart: {line!r}"
    paragraphs = [f"Paragraph {i}. " + "Some words here. " * 20 for i in range(30)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    for chunk in chunk_text(text, 200):
        assert chunk.startswith("Paragraph ")
        assert chunk.endswith("Some words here.")


def test_short_text_is_one_chunk() -> None:
    text = "  A short note.\n\nWith two paragraphs.  "
    assert chunk_text(text, 100) == [text]
    assert chunk_text(text, 100, 20) == [text]
    assert chunk_text("   \n\n  ", 100) == []


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("text", 0)
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_text("text", 100, 60)
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_text("text", 100, -1)


def test_long_pdf_chunks(tmp_path: Path) -> None:
    text = extract_text(make_long_pdf(tmp_path / "report.pdf"), "report.pdf")
    total = count_tokens(text)
    chunks = chunk_text(text, 1500)
    assert chunks == chunk_text(text, 1500)
    assert max(count_tokens(c) for c in chunks) <= 1500
    assert -(-total // 1500) <= len(chunks) <= -(-total // 1500) + 2
    assert_covers_in_order(text, chunks)
    # Paragraph-first splitting: no chunk starts or ends inside a line.
    lines = set(text.splitlines())
    for chunk in chunks:
        assert chunk.splitlines()[0] in lines
        assert chunk.splitlines()[-1] in lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello world", 4),  # two 5-letter words, two pieces each; a single space is free
        ("a  b", 3),  # a run of spaces is a token
        ("Hi, there!", 5),  # punctuation marks count one each
        ("1234567", 3),  # digits in groups of three
        ("你好。", 3),
        ("привет", 3),  # non-Latin letters in pieces of two
        ("line\n\nnext", 3),
    ],
)
def test_count_tokens_examples(text: str, expected: int) -> None:
    assert count_tokens(text) == expected


def test_count_tokens_overestimates_english() -> None:
    prose = long_paragraphs(random.Random(3))
    # cl100k averages about 4 characters per English token; the estimate must not count fewer.
    assert count_tokens(prose) >= len(prose) / 4
    assert count_tokens(prose) <= len(prose) / 2


def test_budget_for() -> None:
    assert budget_for(8192, 500, 1024) == 6668
    assert budget_for(200, 35, 100) == 65
    with pytest.raises(ValueError, match="64 tokens"):
        budget_for(200, 36, 100)
    with pytest.raises(ValueError, match="larger context"):
        budget_for(4096, 3000, 2000)

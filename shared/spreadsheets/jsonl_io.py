"""JSON Lines input and output: one object per line, new keys appended in place."""

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.spreadsheets.model import (
    Row,
    SheetLimits,
    SpreadsheetError,
    TableSpec,
    cell_text,
    check_row_count,
    find_column,
    is_blank,
    missing_column,
    no_rows_error,
)

_BOM = "\ufeff"
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r|$)")


def _read(path: Path) -> tuple[list[str], str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpreadsheetError("a JSONL file must be UTF-8 text", param="file", status=400) from exc
    encoding = "utf-8"
    if text.startswith(_BOM):
        text, encoding = text[1:], "utf-8-sig"
    return [m.group() for m in _LINE.finditer(text) if m.group()], encoding


def _objects(lines: Sequence[str]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpreadsheetError(
                f"line {number} is not valid JSON: {exc.msg}", param="file"
            ) from exc
        if not isinstance(obj, dict):
            raise SpreadsheetError(f"line {number} is not a JSON object", param="file")
        yield number, line, obj


def inspect_jsonl(
    path: Path, column: str, max_rows: int, limits: SheetLimits | None = None
) -> TableSpec:
    """Check every line of a JSONL file and count the objects that have the key."""
    limits = limits or SheetLimits()
    lines, encoding = _read(path)
    limits.check_rows(len(lines))
    objects = list(_objects(lines))
    keys = list(dict.fromkeys(k for _, _, obj in objects for k in obj))
    limits.check_width(len(keys))
    pos = find_column(column, keys, None)
    if pos is None:
        raise missing_column(column, keys, None, "the JSON objects")
    key = keys[pos]
    total = empty = 0
    for number, _, obj in objects:
        value = cell_text(obj.get(key))
        if is_blank(value):
            empty += 1
        else:
            total += 1
            check_row_count(total, max_rows)
            limits.check_cell(value, f"line {number}")
    if total == 0:
        raise no_rows_error(key)
    return TableSpec(
        format="jsonl",
        sheet=None,
        header_row=0,
        column=key,
        column_index=0,
        headers=keys,
        encoding=encoding,
        delimiter=None,
        total_rows=total,
        empty_rows=empty,
    )


def iter_jsonl(path: Path, spec: TableSpec) -> Iterator[Row]:
    """Yield the lines whose input key holds a non-empty value."""
    lines, _ = _read(path)
    for number, _, obj in _objects(lines):
        value = cell_text(obj.get(spec.column))
        if not is_blank(value):
            yield Row(number, value, {k: cell_text(v) for k, v in obj.items()})


def _with_keys(line: str, pairs: Sequence[tuple[str, str | None]]) -> str:
    body = line.strip()
    start = line.index(body)
    lead, tail = line[:start], line[start + len(body) :]
    inner = body[1:-1]
    added = ", ".join(
        f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
        for k, v in pairs
    )
    sep = ", " if inner.strip() else ""
    return lead + "{" + inner + sep + added + "}" + tail


def write_jsonl(
    src: Path,
    dst: Path,
    spec: TableSpec,
    results: Mapping[int, tuple[str | None, str | None]],
    names: Sequence[str],
) -> None:
    """Write ``src`` to ``dst``, adding the output (and error) key to lines with a result."""
    lines, encoding = _read(src)
    out = []
    for number, line in enumerate(lines, start=1):
        if number not in results or not line.strip():
            out.append(line)
            continue
        output, error = results[number]
        pairs: list[tuple[str, str | None]] = [(names[0], output)]
        if error is not None and len(names) > 1:
            pairs.append((names[1], error))
        out.append(_with_keys(line, pairs))
    dst.write_bytes("".join(out).encode(encoding))

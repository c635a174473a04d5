"""Types and format-independent helpers for the batch-summarize spreadsheet I/O."""

import dataclasses
import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openpyxl.utils import column_index_from_string, get_column_letter, range_boundaries

from shared.archives import ArchiveError, ensure_bounded

# How many leading rows (or records) header detection looks at.
HEADER_SCAN_ROWS = 20
# Longest column list quoted back in an error message.
_MAX_LISTED = 40


class SpreadsheetError(ValueError):
    """Bad input a user must fix; maps onto an HTTP error for the form field at fault."""

    def __init__(self, message: str, param: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


def check_archive(path: Path) -> None:
    """Refuse a zip-based upload over the archive limits before any parser opens it."""
    try:
        ensure_bounded(path)
    except ArchiveError as exc:
        raise SpreadsheetError(exc.message, param="file", status=exc.status) from exc


@dataclass(frozen=True)
class TableSpec:
    """Where the input column lives in an uploaded table; stored on the job as JSON."""

    format: str
    sheet: str | None
    header_row: int
    column: str
    column_index: int
    headers: list[str]
    encoding: str | None
    delimiter: str | None
    total_rows: int
    empty_rows: int
    # Column number of headers[0] (xlsx tables and ranges need not start in column A).
    first_column: int = 1
    # Last data row to read (xlsx table body end); 0 means "to the end of the sheet/file".
    end_row: int = 0
    # Column (xlsx) or field position (csv) where the output column goes; 0 for jsonl.
    insert_column: int = 0
    # Name of the Excel table holding the data, if any.
    table: str | None = None
    # Whether the output columns are added to that table (False when the cells beside it are used).
    extend_table: bool = False
    # csv line terminator of the header record.
    line_terminator: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-serialisable form (the inverse of ``TableSpec(**d)``)."""
        return dataclasses.asdict(self)

    def cache_key(self) -> str:
        """Return a hashable identity for this spec."""
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class Row:
    """One data row with a non-empty input cell."""

    index: int
    value: str
    fields: dict[str, str] = field(default_factory=dict)


def bounds(ref: str) -> tuple[int, int, int, int]:
    """Return (min_col, min_row, max_col, max_row) of a closed range such as "B2:F90"."""
    min_col, min_row, max_col, max_row = range_boundaries(ref)
    if min_col is None or min_row is None or max_col is None or max_row is None:
        raise ValueError(f"open-ended range {ref!r}")
    return min_col, min_row, max_col, max_row


def cell_text(value: object) -> str:
    """Render a cell value as the text a person would read in it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def is_blank(value: object) -> bool:
    """Tell whether a cell counts as empty (None or only whitespace)."""
    return value is None or (isinstance(value, str) and not value.strip())


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def _is_label(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and not _looks_numeric(value.strip())


def detect_header(rows: Sequence[tuple[int, Sequence[object]]]) -> int | None:
    """Pick the header row number among the first rows of a table, or None if all are blank.

    The header is the first row that is about as wide as the widest row and mostly holds
    labels; a lone title line above the table is skipped because it is too narrow.
    """
    counts = []
    for number, cells in rows:
        filled = [c for c in cells if not is_blank(c)]
        if filled:
            counts.append((number, len(filled), sum(1 for c in filled if _is_label(c))))
    if not counts:
        return None
    widest = max(n for _, n, _ in counts)
    wide = [(number, n, labels) for number, n, labels in counts if n * 2 >= widest]
    for number, n, labels in wide:
        if labels * 2 > n:
            return number
    return wide[0][0]


def header_names(cells: Sequence[object], first_column: int) -> list[str]:
    """Turn header cells into names; a blank header is named after its column letter."""
    names = []
    for offset, cell in enumerate(cells):
        text = cell_text(cell).strip()
        names.append(text or get_column_letter(first_column + offset))
    return names


def list_columns(headers: Sequence[str], first_column: int | None) -> str:
    """Describe the available columns for an error message."""
    listed = headers[:_MAX_LISTED]
    if first_column is None:
        parts = [json.dumps(h, ensure_ascii=False) for h in listed]
    else:
        parts = [
            f"{get_column_letter(first_column + i)} {json.dumps(h, ensure_ascii=False)}"
            for i, h in enumerate(listed)
        ]
    more = len(headers) - _MAX_LISTED
    shown = ", ".join(parts)
    return shown + (f" and {more} more" if more > 0 else "")


_LETTERS = re.compile(r"[A-Za-z]{1,3}")


def find_column(column: str, headers: Sequence[str], first_column: int | None) -> int | None:
    """Return the 0-based position of ``column`` in ``headers``, or None.

    Matches the exact header, then a trimmed case-insensitive header, then (when the headers
    sit in sheet columns, ``first_column`` not None) a column letter such as "C" or "AA".
    """
    if column in headers:
        return headers.index(column)
    wanted = column.strip().casefold()
    for i, name in enumerate(headers):
        if name.strip().casefold() == wanted:
            return i
    if first_column is not None and _LETTERS.fullmatch(column.strip()):
        pos = column_index_from_string(column.strip().upper()) - first_column
        if 0 <= pos < len(headers):
            return pos
    return None


def missing_column(
    column: str, headers: Sequence[str], first_column: int | None, where: str
) -> SpreadsheetError:
    """Build the error for a column that does not exist, listing the ones that do."""
    if not column.strip():
        lead = "choose the column to summarize"
    else:
        lead = f"column {json.dumps(column, ensure_ascii=False)} not found in {where}"
    return SpreadsheetError(
        f"{lead}; available columns: {list_columns(headers, first_column)}", param="column"
    )


def check_row_count(total: int, max_rows: int) -> None:
    """Raise 413 once more than ``max_rows`` rows have been seen."""
    if total > max_rows:
        raise SpreadsheetError(
            f"too many rows: the limit is {max_rows:,} non-empty rows per file; "
            "split the file and upload the parts separately",
            param="file",
            status=413,
        )


@dataclass(frozen=True)
class SheetLimits:
    """How large a sheet may be, whatever its format (LLMJOBS_SHEET_MAX_*)."""

    max_rows: int = 1_000_000
    max_columns: int = 16_384
    max_cell_chars: int = 200_000

    def check_cell(self, text: str | None, where: str) -> None:
        """Raise 422 for an input cell longer than the per-cell limit."""
        if text is not None and len(text) > self.max_cell_chars:
            raise SpreadsheetError(
                f"the input cell in {where} has {len(text):,} characters; the limit is "
                f"{self.max_cell_chars:,} (LLMJOBS_SHEET_MAX_CELL_CHARS)",
                param="file",
            )

    def check_width(self, width: int) -> None:
        """Raise 422 for a row wider than the column limit."""
        if width > self.max_columns:
            raise SpreadsheetError(
                f"too many columns: a row has {width:,}, the limit is {self.max_columns:,} "
                "(LLMJOBS_SHEET_MAX_COLUMNS)",
                param="file",
            )

    def check_rows(self, rows: int) -> None:
        """Raise 422 once a sheet has more rows than the row limit."""
        if rows > self.max_rows:
            raise SpreadsheetError(
                f"too many rows: the sheet has more than {self.max_rows:,} rows, empty ones "
                "included; the limit is set by LLMJOBS_SHEET_MAX_ROWS",
                param="file",
            )


def no_rows_error(column: str) -> SpreadsheetError:
    """Build the error for a table whose input column is empty throughout."""
    return SpreadsheetError(
        f"no data rows: column {json.dumps(column, ensure_ascii=False)} has no non-empty "
        "cells below its header",
        param="column",
    )


def unique_name(name: str, taken: Sequence[str]) -> str:
    """Return ``name``, suffixed " (2)", " (3)"... if a header already uses it."""
    used = {t.strip().casefold() for t in taken}
    candidate, n = name, 1
    while candidate.strip().casefold() in used:
        n += 1
        candidate = f"{name} ({n})"
    return candidate


def output_names(
    spec: TableSpec, output_column: str, error_column: str, with_error: bool
) -> list[str]:
    """Names of the columns (or keys) write_output adds, made unique against the headers."""
    out = unique_name(output_column, spec.headers)
    if not with_error:
        return [out]
    return [out, unique_name(error_column, [*spec.headers, out])]

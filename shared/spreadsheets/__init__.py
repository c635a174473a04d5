"""Spreadsheet I/O for batch-summarize: read one column of an upload, write results back.

Supported inputs are .xlsx, .csv and .jsonl, told apart by their bytes (see ``sniff``).
``write_output`` adds the output column right after the table's last used column, and an
error column after it only when at least one row failed; a new name that clashes with an
existing header gets " (2)", " (3)"... appended. Everything else in the file is kept.
"""

import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from shared.spreadsheets.csv_io import inspect_csv, iter_csv, write_csv
from shared.spreadsheets.jsonl_io import inspect_jsonl, iter_jsonl, write_jsonl
from shared.spreadsheets.model import (
    Row,
    SheetLimits,
    SpreadsheetError,
    TableSpec,
    output_names,
)
from shared.spreadsheets.prompt import check_template, render_prompt
from shared.spreadsheets.sniff import detect_format
from shared.spreadsheets.xlsx_read import inspect_xlsx, iter_xlsx
from shared.spreadsheets.xlsx_write import write_xlsx
from shared.storage import TEMP_SUFFIX

__all__ = [
    "Row",
    "SheetLimits",
    "SpreadsheetError",
    "TableSpec",
    "check_template",
    "detect_format",
    "inspect_table",
    "iter_rows",
    "media_type",
    "output_names",
    "read_rows",
    "render_prompt",
    "write_output",
]

_MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
}
# Parsed files kept per process so that ~400 read_rows calls on one file parse it once.
_CACHE_FILES = 2
_cache: OrderedDict[tuple[str, int, int, str], dict[int, Row]] = OrderedDict()
_cache_lock = threading.Lock()
# One parse per file at a time: the chunks that arrive together wait for it, not repeat it.
_parse_locks: dict[tuple[str, int, int, str], threading.Lock] = {}


def inspect_table(
    path: Path,
    filename: str,
    column: str,
    sheet: str | None = None,
    max_rows: int = 100_000,
    *,
    max_sheet_rows: int = 1_000_000,
    max_columns: int = 16_384,
    max_cell_chars: int = 200_000,
) -> TableSpec:
    """Validate an upload and locate its input column; raise SpreadsheetError on bad input."""
    limits = SheetLimits(max_sheet_rows, max_columns, max_cell_chars)
    fmt = detect_format(path, filename)
    if fmt == "xlsx":
        return inspect_xlsx(path, column, sheet, max_rows, limits)
    if fmt == "csv":
        return inspect_csv(path, column, max_rows, limits)
    return inspect_jsonl(path, column, max_rows, limits)


def iter_rows(path: Path, spec: TableSpec) -> Iterator[Row]:
    """Yield the rows with a non-empty input cell, in file order."""
    if spec.format == "xlsx":
        return iter_xlsx(path, spec)
    if spec.format == "csv":
        return iter_csv(path, spec)
    if spec.format == "jsonl":
        return iter_jsonl(path, spec)
    raise ValueError(f"unknown table format {spec.format!r}")


def read_rows(path: Path, spec: TableSpec, indexes: Collection[int]) -> list[Row]:
    """Return the rows with these indexes (in file order), parsing each file once per process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, spec.cache_key())
    rows = _cached(key)
    if rows is None:
        with _cache_lock:
            parse_lock = _parse_locks.setdefault(key, threading.Lock())
        with parse_lock:
            rows = _cached(key)
            if rows is None:
                try:
                    rows = {row.index: row for row in iter_rows(path, spec)}
                except BaseException:
                    with _cache_lock:  # an unreadable file keeps no lock behind
                        _parse_locks.pop(key, None)
                    raise
                with _cache_lock:
                    _cache[key] = rows
                    while len(_cache) > _CACHE_FILES:
                        _parse_locks.pop(_cache.popitem(last=False)[0], None)
    return [rows[i] for i in sorted(set(indexes)) if i in rows]


def _cached(key: tuple[str, int, int, str]) -> dict[int, Row] | None:
    with _cache_lock:
        rows = _cache.get(key)
        if rows is not None:
            _cache.move_to_end(key)
        return rows


def write_output(
    src: Path,
    dst: Path,
    spec: TableSpec,
    results: Mapping[int, tuple[str | None, str | None]],
    output_column: str = "summary",
    error_column: str = "error",
) -> None:
    """Write ``src`` to ``dst`` with the results added; ``dst`` appears complete or not at all."""
    with_error = any(error is not None for _, error in results.values())
    names = output_names(spec, output_column, error_column, with_error)
    writers = {"xlsx": write_xlsx, "csv": write_csv, "jsonl": write_jsonl}
    if spec.format not in writers:
        raise ValueError(f"unknown table format {spec.format!r}")
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writers[spec.format](src, tmp, spec, results, names)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def media_type(fmt: str) -> str:
    """Return the Content-Type for a result file of this format."""
    try:
        return _MEDIA_TYPES[fmt]
    except KeyError:
        raise ValueError(f"unknown table format {fmt!r}") from None

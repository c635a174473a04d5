"""CSV input and output that leaves the original bytes untouched apart from the new columns."""

import csv
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.spreadsheets.model import (
    HEADER_SCAN_ROWS,
    Row,
    SheetLimits,
    SpreadsheetError,
    TableSpec,
    check_row_count,
    detect_header,
    find_column,
    header_names,
    is_blank,
    missing_column,
    no_rows_error,
)

_BOM = b"\xef\xbb\xbf"
_DELIMITERS = ",;\t|"
_LINE_END = re.compile(r"\r\n|\n|\r")
_SNIFF_RECORDS = 50
# A spreadsheet opening the CSV runs a cell starting with one of these as a formula; a leading
# tab or CR is dropped on import, so they count too (OWASP "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """Prefix a quote to a cell a spreadsheet would evaluate, keeping every character after it."""
    return "'" + value if value.startswith(_FORMULA_START) else value


@dataclass(frozen=True)
class _Record:
    text: str  # the record as written, without its line terminator
    end: str  # its line terminator ("" for a last line without one)


def _decode(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    if data.startswith(_BOM):
        return data[len(_BOM) :].decode("utf-8", errors="strict"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        raise SpreadsheetError(
            'could not decode the CSV file; save it as "CSV UTF-8"', param="file", status=400
        ) from exc


def _records(text: str) -> list[_Record]:
    """Split CSV text into records; a line break inside double quotes stays in its record."""
    records: list[_Record] = []
    start = pos = 0
    quoted = False
    for match in _LINE_END.finditer(text):
        quoted ^= text.count('"', pos, match.start()) % 2 == 1
        pos = match.end()
        if not quoted:
            records.append(_Record(text[start : match.start()], match.group()))
            start = pos
    if start < len(text):
        records.append(_Record(text[start:], ""))
    return records


def _fields(record: _Record, delimiter: str) -> list[str]:
    return next(csv.reader([record.text], delimiter=delimiter, quotechar='"'), [])


def _sniff_delimiter(records: Sequence[_Record]) -> str:
    sample_records = [r for r in records[:_SNIFF_RECORDS] if r.text.strip()]
    if not sample_records:
        return ","
    first = sample_records[0].text
    sample = "\n".join(r.text for r in sample_records)
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ""
    if delimiter and delimiter in first:
        return delimiter
    counts = {d: first.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _load(path: Path, spec: TableSpec | None = None) -> tuple[list[_Record], str, str]:
    text, encoding = _decode(path)
    records = _records(text)
    delimiter = spec.delimiter if spec and spec.delimiter else _sniff_delimiter(records)
    return records, encoding, delimiter


def inspect_csv(
    path: Path, column: str, max_rows: int, limits: SheetLimits | None = None
) -> TableSpec:
    """Find the header record and input column of a CSV file and count its rows."""
    limits = limits or SheetLimits()
    records, encoding, delimiter = _load(path)
    limits.check_rows(len(records))
    top = [(n, _fields(r, delimiter)) for n, r in enumerate(records[:HEADER_SCAN_ROWS], start=1)]
    for _, fields in top:
        limits.check_width(len(fields))
    header_row = detect_header(top)
    if header_row is None:
        raise SpreadsheetError("the CSV file has no header row", param="file")
    cells = _fields(records[header_row - 1], delimiter)
    headers = header_names(cells, 1)
    pos = find_column(column, headers, 1)
    if pos is None:
        raise missing_column(column, headers, 1, f"the header row (line {header_row})")
    total = empty = 0
    width = len(cells)
    for number, record in enumerate(records[header_row:], start=header_row + 1):
        fields = _fields(record, delimiter)
        width = max(width, len(fields))
        limits.check_width(width)
        value = fields[pos] if pos < len(fields) else None
        if is_blank(value):
            empty += 1
        else:
            total += 1
            check_row_count(total, max_rows)
            limits.check_cell(value, f"line {number}")
    trailing = 0
    for record in reversed(records[header_row:]):
        if record.text.strip():
            break
        trailing += 1
    if total == 0:
        raise no_rows_error(headers[pos])
    return TableSpec(
        format="csv",
        sheet=None,
        header_row=header_row,
        column=headers[pos],
        column_index=pos + 1,
        headers=headers,
        encoding=encoding,
        delimiter=delimiter,
        total_rows=total,
        empty_rows=empty - trailing,
        insert_column=width + 1,
        line_terminator=records[header_row - 1].end or "\r\n",
    )


def iter_csv(path: Path, spec: TableSpec) -> Iterator[Row]:
    """Yield the records of an inspected CSV file whose input field is not empty."""
    records, _, delimiter = _load(path, spec)
    pos = spec.column_index - 1
    for number, record in enumerate(records[spec.header_row :], start=spec.header_row + 1):
        fields = _fields(record, delimiter)
        value = fields[pos] if pos < len(fields) else ""
        if is_blank(value):
            continue
        row_fields: dict[str, str] = {}
        for i, name in enumerate(spec.headers):
            row_fields.setdefault(name, fields[i] if i < len(fields) else "")
        yield Row(number, value, row_fields)


def _quote(value: str, delimiter: str) -> str:
    if any(ch in value for ch in (delimiter, '"', "\r", "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


def write_csv(
    src: Path,
    dst: Path,
    spec: TableSpec,
    results: Mapping[int, tuple[str | None, str | None]],
    names: Sequence[str],
) -> None:
    """Write ``src`` to ``dst`` with the new columns appended to each record."""
    records, encoding, delimiter = _load(src, spec)
    out: list[str] = []
    for number, record in enumerate(records, start=1):
        if number < spec.header_row or (number > spec.header_row and not record.text):
            out.append(record.text + record.end)
            continue
        if number == spec.header_row:
            extra: list[str] = list(names)
        else:
            output, error = results.get(number, (None, None))
            extra = [output or "", error or ""][: len(names)]
        pad = spec.insert_column - 1 - len(_fields(record, delimiter))
        # Only the cells written here are neutralised; the user's own cells pass through as given.
        cells = delimiter.join(_quote(neutralise(v), delimiter) for v in extra)
        out.append(record.text + delimiter * max(pad, 0) + delimiter + cells + record.end)
    # Text the model wrote that the file's encoding cannot hold becomes "?".
    dst.write_bytes("".join(out).encode(encoding, errors="replace"))

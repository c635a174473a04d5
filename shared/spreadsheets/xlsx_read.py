"""Read .xlsx workbooks in streaming (read-only) mode: inspect the layout, iterate rows."""

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.packaging.relationship import get_dependents, get_rels_path
from openpyxl.utils import get_column_letter
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.table import Table
from openpyxl.xml.constants import REL_NS
from openpyxl.xml.functions import fromstring

from shared.spreadsheets.model import (
    HEADER_SCAN_ROWS,
    Row,
    SheetLimits,
    SpreadsheetError,
    TableSpec,
    bounds,
    cell_text,
    check_archive,
    check_row_count,
    detect_header,
    find_column,
    header_names,
    is_blank,
    missing_column,
    no_rows_error,
)

# Output and error columns: the cells this many columns beside a table must be free to grow it.
_GROWTH = 2
_TABLE_REL = f"{REL_NS}/table"  # relationship type of a sheet's table parts


@dataclass(frozen=True)
class _Layout:
    header_row: int
    first_column: int
    headers: list[str]
    data_end: int  # last data row, 0 = end of sheet
    scan_end: int  # last row that belongs to the table (totals row included), 0 = end of sheet
    table: Table | None = None


def open_readonly(path: Path) -> Workbook:
    """Open a workbook for streaming reads of cached cell values."""
    check_archive(path)
    try:
        # A file object: stored uploads are named by id, without the extension openpyxl
        # insists on when given a path.
        data = io.BytesIO(path.read_bytes())
        return load_workbook(data, read_only=True, data_only=True, keep_links=False)
    except Exception as exc:  # openpyxl raises many types for damaged files
        raise SpreadsheetError(
            f"could not read the workbook ({type(exc).__name__}); open it in Excel and save it "
            "again as .xlsx",
            param="file",
            status=400,
        ) from exc


def _pick_sheet(wb: Workbook, sheet: str | None) -> Any:
    sheets = wb.worksheets
    if not sheets:
        raise SpreadsheetError("the workbook has no worksheets", param="file")
    if sheet is None or not sheet.strip():
        return sheets[0]
    for candidate in (sheet, sheet.strip().casefold()):
        for ws in sheets:
            if ws.title == candidate or ws.title.strip().casefold() == candidate:
                return ws
    names = ", ".join(json.dumps(ws.title, ensure_ascii=False) for ws in sheets)
    raise SpreadsheetError(
        f"sheet {json.dumps(sheet, ensure_ascii=False)} not found; sheets: {names}", param="sheet"
    )


def _tables(wb: Workbook, ws: Any) -> list[Table]:
    """Excel tables on a read-only sheet (openpyxl only loads them in normal mode)."""
    archive = getattr(wb, "_archive", None)
    sheet_path = getattr(ws, "_worksheet_path", None)
    if archive is None or sheet_path is None:
        return []
    rels_path = get_rels_path(sheet_path)  # type: ignore[no-untyped-call]
    if rels_path not in archive.namelist():
        return []
    tables = []
    for rel in get_dependents(archive, rels_path).find(_TABLE_REL):
        if rel.target in archive.namelist():
            table = Table.from_tree(fromstring(archive.read(rel.target)))
            if table is not None:
                tables.append(table)
    return tables


def _table_layout(table: Table) -> _Layout:
    min_col, min_row, max_col, max_row = bounds(table.ref)
    names = [str(col.name) for col in table.tableColumns]
    if len(names) != max_col - min_col + 1:
        names = [get_column_letter(c) for c in range(min_col, max_col + 1)]
    totals = table.totalsRowCount or 0
    return _Layout(min_row, min_col, names, max_row - totals, max_row, table)


def _width(cells: Sequence[object]) -> int:
    for i in range(len(cells) - 1, -1, -1):
        if cells[i] is not None:
            return i + 1
    return 0


def _range_layout(ws: Any, limits: SheetLimits) -> _Layout | None:
    top = list(ws.iter_rows(min_row=1, max_row=HEADER_SCAN_ROWS, values_only=True))
    for cells in top:
        limits.check_width(_width(cells))
    number = detect_header(list(enumerate(top, start=1)))
    if number is None:
        return None
    cells = top[number - 1]
    filled = [i for i, c in enumerate(cells) if not is_blank(c)]
    first, last = filled[0], filled[-1]
    return _Layout(number, first + 1, header_names(cells[first : last + 1], first + 1), 0, 0)


def _resolve(
    ws: Any, tables: list[Table], column: str, limits: SheetLimits
) -> tuple[_Layout, int]:
    for table in tables:
        layout = _table_layout(table)
        pos = find_column(column, layout.headers, layout.first_column)
        if pos is not None:
            return layout, pos
    layout_or_none = _range_layout(ws, limits)
    if layout_or_none is None:
        raise SpreadsheetError(f"sheet {json.dumps(ws.title)} is empty", param="sheet")
    pos = find_column(column, layout_or_none.headers, layout_or_none.first_column)
    if pos is None:
        where = f"the header row (row {layout_or_none.header_row}) of sheet {ws.title!r}"
        raise missing_column(column, layout_or_none.headers, layout_or_none.first_column, where)
    return layout_or_none, pos


def _overlaps_other_table(tables: list[Table], layout: _Layout) -> bool:
    last = layout.first_column + len(layout.headers) - 1
    for table in tables:
        if table is layout.table:
            continue
        min_col, min_row, max_col, max_row = bounds(table.ref)
        if (
            min_col <= last + _GROWTH
            and max_col > last
            and min_row <= layout.scan_end
            and max_row >= layout.header_row
        ):
            return True
    return False


def inspect_xlsx(
    path: Path, column: str, sheet: str | None, max_rows: int, limits: SheetLimits | None = None
) -> TableSpec:
    """Find the sheet, header row and input column of a workbook and count its rows."""
    limits = limits or SheetLimits()
    wb = open_readonly(path)
    try:
        ws = _pick_sheet(wb, sheet)
        tables = [t for t in _tables(wb, ws) if t.headerRowCount != 0]
        ws.reset_dimensions()  # some writers store a wrong <dimension>; read every row
        layout, pos = _resolve(ws, tables, column, limits)
        col = layout.first_column + pos
        last_header = layout.first_column + len(layout.headers) - 1
        total = empty = blank_run = 0
        max_used = last_header
        beside_free = True
        rows = ws.iter_rows(
            min_row=layout.header_row, max_row=layout.scan_end or None, values_only=True
        )
        for number, cells in enumerate(rows, start=layout.header_row):
            limits.check_rows(number)
            width = _width(cells)
            limits.check_width(width)
            if width > last_header and any(
                c is not None for c in cells[last_header : last_header + _GROWTH]
            ):
                beside_free = False
            max_used = max(max_used, width)
            if number == layout.header_row or (layout.data_end and number > layout.data_end):
                continue
            if width == 0:
                blank_run += 1  # counted as empty only if data follows
                continue
            empty += blank_run
            blank_run = 0
            value = cells[col - 1] if col <= len(cells) else None
            if is_blank(value):
                empty += 1
            else:
                total += 1
                check_row_count(total, max_rows)
                limits.check_cell(cell_text(value), f"row {number}")
    finally:
        wb.close()
    if total == 0:
        raise no_rows_error(layout.headers[pos])
    table = layout.table
    extend = table is not None and beside_free and not _overlaps_other_table(tables, layout)
    return TableSpec(
        format="xlsx",
        sheet=ws.title,
        header_row=layout.header_row,
        column=layout.headers[pos],
        column_index=col,
        headers=layout.headers,
        encoding=None,
        delimiter=None,
        total_rows=total,
        empty_rows=empty,
        first_column=layout.first_column,
        end_row=layout.data_end,
        insert_column=last_header + 1 if extend else max_used + 1,
        table=None if table is None else str(table.name),
        extend_table=extend,
    )


def iter_xlsx(path: Path, spec: TableSpec) -> Iterator[Row]:
    """Yield the rows of an inspected sheet whose input cell is not empty."""
    wb = open_readonly(path)
    try:
        ws = _pick_sheet(wb, spec.sheet)
        ws.reset_dimensions()
        col = spec.column_index
        start = spec.header_row + 1
        rows = ws.iter_rows(min_row=start, max_row=spec.end_row or None, values_only=True)
        for number, cells in enumerate(rows, start=start):
            value = cells[col - 1] if col <= len(cells) else None
            if is_blank(value):
                continue
            fields: dict[str, str] = {}
            for offset, name in enumerate(spec.headers):
                c = spec.first_column + offset
                fields.setdefault(name, cell_text(cells[c - 1]) if c <= len(cells) else "")
            yield Row(number, cell_text(value), fields)
    finally:
        wb.close()

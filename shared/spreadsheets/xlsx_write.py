"""Write results into a copy of an .xlsx workbook, keeping everything else as it was."""

import io
from collections.abc import Mapping, Sequence
from copy import copy
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.utils import get_column_letter, range_boundaries
from openpyxl.worksheet.table import Table, TableColumn

from shared.spreadsheets.model import TableSpec, bounds, check_archive

# Excel refuses to open a cell holding more characters than this.
EXCEL_CELL_LIMIT = 32_767
_WIDTHS = (60.0, 40.0)  # output column, error column


def _set_text(cell: Any, text: str) -> None:
    text = ILLEGAL_CHARACTERS_RE.sub("", text)
    if len(text) > EXCEL_CELL_LIMIT:
        text = text[: EXCEL_CELL_LIMIT - 1] + "\u2026"
    cell.value = text
    # openpyxl turns "=..." into a formula and "#N/A" into an error; model output is only text.
    cell.data_type = "s"


def _copy_style(src: Any, dst: Any) -> None:
    if src.has_style:
        dst.font = copy(src.font)
        dst.fill = copy(src.fill)
        dst.border = copy(src.border)
        dst.alignment = copy(src.alignment)
        dst.number_format = src.number_format
        dst.protection = copy(src.protection)


def _has_width(ws: Any, column: int) -> bool:
    for dim in ws.column_dimensions.values():
        if dim.min is not None and dim.max is not None and dim.min <= column <= dim.max:
            return True
    return False


def _find_table(ws: Any, name: str) -> Table | None:
    for table in ws.tables.values():
        if name in (table.name, table.displayName):
            return table  # type: ignore[no-any-return]
    return None


def _grow_table(table: Table, names: Sequence[str]) -> None:
    min_col, min_row, max_col, max_row = bounds(table.ref)
    first, last = get_column_letter(min_col), get_column_letter(max_col + len(names))
    table.ref = f"{first}{min_row}:{last}{max_row}"
    if table.autoFilter is not None and table.autoFilter.ref:
        table.autoFilter.ref = f"{first}{min_row}:{last}{max_row - (table.totalsRowCount or 0)}"
    next_id = max((c.id for c in table.tableColumns), default=0) + 1
    for offset, name in enumerate(names):
        table.tableColumns.append(TableColumn(id=next_id + offset, name=name))


def _grow_autofilter(ws: Any, spec: TableSpec, last_new: int) -> None:
    ref = ws.auto_filter.ref
    if not ref:
        return
    min_col, min_row, max_col, max_row = range_boundaries(ref)
    if min_row == spec.header_row and max_col is not None and max_col + 1 == spec.insert_column:
        ws.auto_filter.ref = (
            f"{get_column_letter(min_col or 1)}{min_row}:{get_column_letter(last_new)}{max_row}"
        )


def write_xlsx(
    src: Path,
    tmp: Path,
    spec: TableSpec,
    results: Mapping[int, tuple[str | None, str | None]],
    names: Sequence[str],
) -> None:
    """Save ``src`` to ``tmp`` with the output (and error) columns filled in."""
    # Not data_only: formulas must survive; keep_links keeps external workbook references.
    # A file object: stored uploads have no extension, which openpyxl refuses for paths.
    check_archive(src)
    wb = load_workbook(io.BytesIO(src.read_bytes()), keep_links=True)
    ws = wb[spec.sheet] if spec.sheet else wb.worksheets[0]
    col = spec.insert_column
    header_cell = ws.cell(spec.header_row, spec.first_column + len(spec.headers) - 1)
    for offset, name in enumerate(names):
        cell = ws.cell(spec.header_row, col + offset)
        _set_text(cell, name)
        _copy_style(header_cell, cell)
        if not _has_width(ws, col + offset):
            ws.column_dimensions[get_column_letter(col + offset)].width = _WIDTHS[offset]
    for index, (output, error) in results.items():
        if index <= spec.header_row or (spec.end_row and index > spec.end_row):
            raise ValueError(f"row {index} is not a data row of this table")
        if output is not None:
            _set_text(ws.cell(index, col), output)
        if error is not None and len(names) > 1:
            _set_text(ws.cell(index, col + 1), error)
    table = _find_table(ws, spec.table) if spec.table else None
    if table is not None and spec.extend_table:
        _grow_table(table, names)
    elif spec.table is None:
        _grow_autofilter(ws, spec, col + len(names) - 1)
    wb.save(tmp)
    wb.close()

"""Sheet size limits and formula neutralisation of the cells the system writes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from shared.spreadsheets import SpreadsheetError, inspect_table, iter_rows, write_output
from shared.spreadsheets.model import list_columns
from tests.fixtures.hostile import FORMULA_ANSWERS, long_csv, wide_csv


def refusal(path: Path, name: str, column: str, **limits: int) -> SpreadsheetError:
    with pytest.raises(SpreadsheetError) as err:
        inspect_table(path, name, column, **limits)  # type: ignore[arg-type]
    return err.value


def test_wide_csv_with_a_missing_column_is_422(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes(wide_csv(20_000))
    err = refusal(path, "wide.csv", "missing")
    assert err.status == 422
    assert "20,000" in err.message
    assert "LLMJOBS_SHEET_MAX_COLUMNS" in err.message


def test_column_list_of_a_very_wide_header_does_not_fail() -> None:
    # More columns than three letters can name: only the listed ones get a letter.
    text = list_columns([f"c{i}" for i in range(20_000)], 1)
    assert text.startswith('A "c0"')
    assert text.endswith('AN "c39" and 19960 more')


def test_column_limit_is_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_bytes(wide_csv(30))
    assert inspect_table(path, "w.csv", "c3", max_columns=30).column == "c3"
    assert "LLMJOBS_SHEET_MAX_COLUMNS" in refusal(path, "w.csv", "c3", max_columns=29).message


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "jsonl"])
def test_too_many_rows_is_422(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"long.{fmt}"
    if fmt == "csv":
        path.write_bytes(long_csv(1500))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": f"r{i}"}) + "\n" for i in range(1500)))
    else:
        wb = Workbook()
        ws = wb.active
        assert ws is not None
        ws.append(["text", "other"])
        for i in range(1500):
            ws.append([f"row {i}" if i % 100 == 0 else None, i])
        wb.save(path)
    assert inspect_table(path, path.name, "text", max_sheet_rows=2000).format == fmt
    err = refusal(path, path.name, "text", max_sheet_rows=1000)
    assert err.status == 422
    assert "LLMJOBS_SHEET_MAX_ROWS" in err.message


def test_csv_output_cells_are_neutralised_and_inputs_kept(tmp_path: Path) -> None:
    inputs = ["=SUM(1;2)", "+plain", "-x", "@me", "ok", "fine"]
    src = tmp_path / "in.csv"
    body = "".join(f'{v},"{i}"\r\n' for i, v in enumerate(inputs))
    src.write_bytes(("text,n\r\n" + body).encode())
    spec = inspect_table(src, "in.csv", "text")
    rows = list(iter_rows(src, spec))
    answers = {row.index: (FORMULA_ANSWERS[i], None) for i, row in enumerate(rows)}
    # The last row fails with an error message that itself looks like a formula.
    last = rows[-1].index
    answers[last] = (None, "=ERROR")
    dst = tmp_path / "out.csv"
    write_output(src, dst, spec, answers, output_column="=summary", error_column="error")
    table = list(csv.reader(io.StringIO(dst.read_text(), newline="")))
    assert table[0] == ["text", "n", "'=summary", "error"]
    for i, row in enumerate(table[1:]):
        assert row[:2] == [inputs[i], str(i)]  # the user's own cells, as given
    for i, row in enumerate(table[1:-1]):
        assert row[2] == "'" + FORMULA_ANSWERS[i]  # nothing stripped after the quote
    assert table[-1][2:] == ["", "'=ERROR"]


def test_xlsx_output_cells_are_text_never_formulas(tmp_path: Path) -> None:
    src = tmp_path / "in.xlsx"
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["text"])
    for i in range(len(FORMULA_ANSWERS)):
        ws.append([f"row {i}"])
    wb.save(src)
    spec = inspect_table(src, "in.xlsx", "text")
    answers = {row.index: (FORMULA_ANSWERS[i], "=ERR()") for i, row in
               enumerate(iter_rows(src, spec))}
    dst = tmp_path / "out.xlsx"
    write_output(src, dst, spec, answers)
    out = load_workbook(dst).active
    assert out is not None
    for i in range(len(FORMULA_ANSWERS)):
        cell, error = out.cell(i + 2, 2), out.cell(i + 2, 3)
        assert (cell.data_type, error.data_type) == ("s", "s")
        assert cell.value == FORMULA_ANSWERS[i]
        assert error.value == "=ERR()"


def test_overlong_input_cell_is_422(tmp_path: Path) -> None:
    path = tmp_path / "long-cell.csv"
    path.write_text("text\nshort\n" + "y" * 501 + "\n")
    assert inspect_table(path, path.name, "text", max_cell_chars=501).total_rows == 2
    err = refusal(path, path.name, "text", max_cell_chars=500)
    assert err.status == 422
    assert "line 3" in err.message
    assert "LLMJOBS_SHEET_MAX_CELL_CHARS" in err.message


@pytest.mark.parametrize("fmt", ["xlsx", "jsonl"])
def test_column_limit_holds_for_workbooks_and_jsonl(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"wide.{fmt}"
    names = [f"c{i}" for i in range(12)]
    if fmt == "jsonl":
        path.write_text(json.dumps(dict.fromkeys(names, "x")) + "\n")
    else:
        wb = Workbook()
        ws = wb.active
        assert ws is not None
        ws.append(names)
        ws.append(["x"] * len(names))
        wb.save(path)
    assert inspect_table(path, path.name, "c0", max_columns=12).total_rows == 1
    err = refusal(path, path.name, "c0", max_columns=11)
    assert err.status == 422
    assert "LLMJOBS_SHEET_MAX_COLUMNS" in err.message

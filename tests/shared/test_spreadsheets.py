"""Spreadsheet I/O for batch-summarize: real workbooks, CSV and JSONL files built per test."""

import dataclasses
import datetime as dt
import json
import threading
import zipfile
from copy import copy
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.table import Table, TableStyleInfo

from shared.spreadsheets import (
    Row,
    SpreadsheetError,
    TableSpec,
    inspect_table,
    iter_rows,
    media_type,
    read_rows,
    render_prompt,
    write_output,
)

N_ROWS = 2_100
HEADERS = ["ID", "Customer", "Comment", "Score", "Date", "Double"]
UNICODE = "Très bien — 漢字 ✓ 😀"


def _comment(i: int) -> str | None:
    if i % 10 == 0:
        return None  # blank input cell
    if i % 10 == 5:
        return "   "  # whitespace only counts as blank too
    return f"{UNICODE} comment {i} {{not a placeholder}}"


def build_workbook(path: Path, *, table: bool = False) -> dict[str, int]:
    """Write a realistic export: 3 sheets, styles, formulas, validation, blank rows."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Feedback"
    if table:
        first_col, header_row = 2, 2  # table at B2 so columns do not start at A
    else:
        first_col, header_row = 1, 3
        ws["A1"] = "Q3 customer feedback export"
        ws["A1"].font = Font(size=16, bold=True)
    bold = Font(bold=True, color="FFFFFF")
    fill = PatternFill("solid", fgColor="1F4E78")
    for offset, name in enumerate(HEADERS):
        cell = ws.cell(header_row, first_col + offset, name)
        cell.font = bold
        cell.fill = fill
        cell.alignment = Alignment(horizontal="center")
    blank_row = header_row + 40  # one entirely empty row inside the data
    row = header_row + 1
    for i in range(1, N_ROWS + 1):
        if row == blank_row:
            row += 1
        ws.cell(row, first_col, i)
        ws.cell(row, first_col + 1, f"Customer {i}")
        ws.cell(row, first_col + 2, _comment(i))
        score = ws.cell(row, first_col + 3, i % 7 + 0.5)
        score.number_format = "0.00"
        ws.cell(row, first_col + 4, dt.date(2024, 1, 1) + dt.timedelta(days=i % 300))
        score_ref = f"{ws.cell(row, first_col + 3).coordinate}"
        ws.cell(row, first_col + 5, f"={score_ref}*2")
        row += 1
    last_row = row - 1
    ws.column_dimensions["C"].width = 50
    ws.column_dimensions["A"].width = 9
    ws.freeze_panes = ws.cell(header_row + 1, 1).coordinate
    dv = DataValidation(type="decimal", operator="between", formula1="0", formula2="10")
    dv.add(f"D{header_row + 1}:D{last_row}")
    ws.add_data_validation(dv)
    if table:
        ref = f"B{header_row}:G{last_row}"
        tab = Table(displayName="Feedback", ref=ref)
        tab.tableStyleInfo = TableStyleInfo(name="TableStyleMedium9", showRowStripes=True)
        ws.add_table(tab)
    lookup = wb.create_sheet("Lookup")
    lookup.append(["Key", "Label"])
    for k in range(1, 21):
        lookup.append([k, f"label {k}"])
    lookup["D1"] = "=SUM(A2:A21)"
    notes = wb.create_sheet("Notes")
    notes["A1"] = "Prepared by analytics — ünïcödé"
    wb.defined_names["LookupKeys"] = DefinedName("LookupKeys", attr_text="Lookup!$A$2:$A$21")
    wb.save(path)
    return {"header_row": header_row, "first_col": first_col, "last_row": last_row}


def _expected_inputs() -> int:
    return sum(1 for i in range(1, N_ROWS + 1) if (_comment(i) or "").strip())


@pytest.fixture
def plain_xlsx(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "feedback.xlsx"
    return path, build_workbook(path)


@pytest.fixture
def table_xlsx(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "feedback-table.xlsx"
    return path, build_workbook(path, table=True)


def _results(spec: TableSpec, path: Path) -> dict[int, tuple[str | None, str | None]]:
    results: dict[int, tuple[str | None, str | None]] = {}
    for n, row in enumerate(iter_rows(path, spec)):
        if n % 50 == 7:
            results[row.index] = (None, "model timed out")
        elif n == 3:
            results[row.index] = ('=HYPERLINK("http://x")', None)  # must stay text
        else:
            results[row.index] = (f"summary of {row.fields['Customer']} ✓", None)
    return results


def _style(cell: Any) -> tuple[object, ...]:
    """The cell's formatting as plain comparable objects (openpyxl hands out proxies)."""
    return (
        copy(cell.font),
        copy(cell.fill),
        copy(cell.border),
        copy(cell.alignment),
        copy(cell.protection),
        cell.number_format,
    )


def _assert_cells_unchanged(before: Any, after: Any, max_col: int) -> None:
    for row in before.iter_rows(max_col=max_col):
        for cell in row:
            other = after.cell(cell.row, cell.column)
            assert other.value == cell.value, cell.coordinate
            assert _style(other) == _style(cell), cell.coordinate


# --- inspection --------------------------------------------------------------------------


def test_inspect_plain_range_skips_title_and_counts_rows(plain_xlsx: tuple[Path, dict[str, int]]):
    path, layout = plain_xlsx
    spec = inspect_table(path, "feedback.xlsx", "Comment")
    assert spec.format == "xlsx"
    assert spec.sheet == "Feedback"
    assert spec.header_row == layout["header_row"]
    assert spec.headers == HEADERS
    assert (spec.column, spec.column_index) == ("Comment", 3)
    assert spec.total_rows == _expected_inputs()
    # blank and whitespace inputs plus the one fully empty row inside the data
    assert spec.empty_rows == N_ROWS - _expected_inputs() + 1
    assert spec.insert_column == 7
    assert TableSpec(**json.loads(json.dumps(dataclasses.asdict(spec)))) == spec


@pytest.mark.parametrize("column", ["C", "c", " comment ", "COMMENT"])
def test_column_by_letter_or_loose_name(plain_xlsx: tuple[Path, dict[str, int]], column: str):
    spec = inspect_table(plain_xlsx[0], "feedback.xlsx", column)
    assert (spec.column, spec.column_index) == ("Comment", 3)


def test_missing_column_lists_existing_columns(plain_xlsx: tuple[Path, dict[str, int]]):
    with pytest.raises(SpreadsheetError) as err:
        inspect_table(plain_xlsx[0], "feedback.xlsx", "Feedback text")
    assert err.value.status == 422
    assert err.value.param == "column"
    for name in HEADERS:
        assert f'"{name}"' in err.value.message
    assert 'C "Comment"' in err.value.message


def test_sheet_selection_and_missing_sheet(plain_xlsx: tuple[Path, dict[str, int]]):
    spec = inspect_table(plain_xlsx[0], "feedback.xlsx", "Label", sheet="lookup")
    assert (spec.sheet, spec.header_row, spec.total_rows) == ("Lookup", 1, 20)
    with pytest.raises(SpreadsheetError) as err:
        inspect_table(plain_xlsx[0], "feedback.xlsx", "Comment", sheet="Summary")
    assert (err.value.status, err.value.param) == (422, "sheet")
    assert '"Feedback", "Lookup", "Notes"' in err.value.message


def test_iter_rows_gives_text_views(plain_xlsx: tuple[Path, dict[str, int]]):
    path, layout = plain_xlsx
    spec = inspect_table(path, "feedback.xlsx", "Comment")
    rows = list(iter_rows(path, spec))
    assert len(rows) == spec.total_rows
    first = rows[0]
    assert first.index == layout["header_row"] + 1
    assert first.value == f"{UNICODE} comment 1 {{not a placeholder}}"
    assert first.fields["ID"] == "1"  # an integer, not "1.0"
    assert first.fields["Score"] == "1.5"
    assert first.fields["Date"] == "2024-01-02"
    # a formula never calculated by Excel has no cached value
    assert first.fields["Double"] == ""
    indexes = [r.index for r in rows]
    assert indexes == sorted(indexes)
    assert layout["header_row"] + 40 not in indexes  # the empty row


def test_read_rows_matches_iter_rows_and_sees_file_changes(tmp_path: Path):
    path = tmp_path / "notes.csv"
    path.write_text("id,text\n1,alpha\n2,beta\n3,gamma\n", encoding="utf-8")
    spec = inspect_table(path, "notes.csv", "text")
    assert [r.value for r in read_rows(path, spec, [4, 2, 99])] == ["alpha", "gamma"]
    assert read_rows(path, spec, {3}) == [Row(3, "beta", {"id": "2", "text": "beta"})]
    path.write_text("id,text\n1,ALPHA-CHANGED\n2,beta\n3,gamma\n", encoding="utf-8")
    assert read_rows(path, spec, [2])[0].value == "ALPHA-CHANGED"


def test_excel_table_is_used_for_layout(table_xlsx: tuple[Path, dict[str, int]]):
    path, layout = table_xlsx
    spec = inspect_table(path, "t.xlsx", "Comment")
    assert spec.table == "Feedback"
    assert spec.extend_table
    assert (spec.header_row, spec.first_column) == (2, 2)
    assert spec.headers == HEADERS
    assert (spec.column_index, spec.insert_column) == (4, 8)
    assert spec.end_row == layout["last_row"]
    assert spec.total_rows == _expected_inputs()
    assert inspect_table(path, "t.xlsx", "D").column == "Comment"


# --- xlsx output -------------------------------------------------------------------------


def test_write_output_keeps_workbook_intact(plain_xlsx: tuple[Path, dict[str, int]]):
    path, layout = plain_xlsx
    spec = inspect_table(path, "feedback.xlsx", "Comment")
    results = _results(spec, path)
    out = path.with_name("out.xlsx")
    write_output(path, out, spec, results)

    before, after = load_workbook(path), load_workbook(out)
    assert after.sheetnames == before.sheetnames
    ws, new = before["Feedback"], after["Feedback"]
    _assert_cells_unchanged(ws, new, max_col=6)
    for name in ("Lookup", "Notes"):
        _assert_cells_unchanged(before[name], after[name], max_col=10)
        assert after[name].max_column == before[name].max_column
    assert new.cell(layout["last_row"], 6).value == f"=D{layout['last_row']}*2"
    assert after["Lookup"]["D1"].value == "=SUM(A2:A21)"
    assert new.column_dimensions["C"].width == 50
    assert new.column_dimensions["A"].width == 9
    assert new.freeze_panes == "A4"
    assert [str(dv.sqref) for dv in new.data_validations.dataValidation] == [
        f"D4:D{layout['last_row']}"
    ]
    assert after.defined_names["LookupKeys"].attr_text == "Lookup!$A$2:$A$21"

    header = layout["header_row"]
    assert new.cell(header, 7).value == "summary"
    assert new.cell(header, 8).value == "error"
    assert _style(new.cell(header, 7)) == _style(ws.cell(header, 6))
    assert _style(new.cell(header, 7)) != _style(ws.cell(header + 1, 6))  # really styled
    for index, (output, error) in results.items():
        assert new.cell(index, 7).value == output
        assert new.cell(index, 8).value == error
    injected = next(i for i, (o, _) in results.items() if o and o.startswith("="))
    assert new.cell(injected, 7).data_type == "s"
    blank_input = header + 10  # ID 10 has no comment, so no result
    assert new.cell(blank_input, 7).value is None
    assert new.max_column == 8


def test_write_output_without_errors_adds_one_column(tmp_path: Path):
    path = tmp_path / "small.xlsx"
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["text", "summary"])  # the default output name is taken
    ws.append(["first", None])
    ws.append(["second", None])
    wb.save(path)
    spec = inspect_table(path, "small.xlsx", "A")
    out = tmp_path / "out.xlsx"
    write_output(path, out, spec, {2: ("one", None), 3: ("two", None)})
    sheet = load_workbook(out).active
    assert sheet is not None
    assert [c.value for c in sheet[1]] == ["text", "summary", "summary (2)"]
    assert [c.value for c in sheet["C"]] == ["summary (2)", "one", "two"]


def test_write_output_extends_excel_table(table_xlsx: tuple[Path, dict[str, int]]):
    path, layout = table_xlsx
    spec = inspect_table(path, "t.xlsx", "Comment")
    results = _results(spec, path)
    out = path.with_name("out.xlsx")
    write_output(path, out, spec, results)
    before, after = load_workbook(path), load_workbook(out)
    _assert_cells_unchanged(before["Feedback"], after["Feedback"], max_col=7)
    table = after["Feedback"].tables["Feedback"]
    assert table.ref == f"B2:I{layout['last_row']}"
    assert [c.name for c in table.tableColumns] == [*HEADERS, "summary", "error"]
    assert len({c.id for c in table.tableColumns}) == 8
    assert table.tableStyleInfo.name == "TableStyleMedium9"
    ws = after["Feedback"]
    assert [ws.cell(2, c).value for c in (8, 9)] == ["summary", "error"]
    some_index, (output, _) = next((i, r) for i, r in results.items() if r[0])
    assert ws.cell(some_index, 8).value == output
    # a second pass over the result reads the grown table
    again = inspect_table(out, "out.xlsx", "summary")
    assert again.headers == [*HEADERS, "summary", "error"]


def test_write_output_memory_for_20k_rows(tmp_path: Path):
    """20,000 rows x 10 columns: inspect, read and write stay well under 1 GB."""
    import subprocess
    import sys

    script = f"""
import resource, sys
from pathlib import Path
from openpyxl import Workbook
from shared.spreadsheets import inspect_table, iter_rows, write_output
src = Path({str(tmp_path / "big.xlsx")!r})
wb = Workbook(write_only=True)
ws = wb.create_sheet("Data")
ws.append([f"col{{c}}" for c in range(10)])
for r in range(20_000):
    ws.append([f"row {{r}} text for column {{c}} with some words" for c in range(10)])
wb.save(src)
spec = inspect_table(src, "big.xlsx", "col3")
results = {{row.index: ("a summary of the row " * 5, None) for row in iter_rows(src, spec)}}
write_output(src, src.with_name("out.xlsx"), spec, results)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    assert peak_kib < 600 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"


# --- CSV ---------------------------------------------------------------------------------


def test_csv_semicolon_bom_crlf_round_trip(tmp_path: Path):
    lines = [
        "Nummer;Kommentar;Bewertung",
        '1;"Sehr gut; schnell";5',
        '2;"Mehrzeilig\r\nzweite Zeile mit ""Zitat""";4',
        "3;;2",
        "4;Ünïcödé ✓;3",
    ]
    original = b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    path = tmp_path / "export.csv"
    path.write_bytes(original)
    spec = inspect_table(path, "export.csv", "kommentar")
    assert (spec.encoding, spec.delimiter, spec.line_terminator) == ("utf-8-sig", ";", "\r\n")
    assert (spec.total_rows, spec.empty_rows, spec.column_index) == (3, 1, 2)
    rows = list(iter_rows(path, spec))
    assert [r.index for r in rows] == [2, 3, 5]
    assert rows[1].value == 'Mehrzeilig\r\nzweite Zeile mit "Zitat"'
    out = tmp_path / "out.csv"
    write_output(path, out, spec, {2: ("fast; good", None), 3: (None, "boom"), 5: ("ok", None)})
    expected = [
        lines[0] + ";summary;error",
        lines[1] + ';"fast; good";',
        lines[2] + ";;boom",
        lines[3] + ";;",
        lines[4] + ";ok;",
    ]
    assert out.read_bytes() == b"\xef\xbb\xbf" + "\r\n".join(expected).encode() + b"\r\n"


def test_csv_comma_cp1252_round_trip(tmp_path: Path):
    lines = ["id,note,price", "1,café crème,3€", '2,"naïve, but €5",5', "3,plain,1", ""]
    original = "\n".join(lines).encode("cp1252")
    path = tmp_path / "prices.csv"
    path.write_bytes(original)
    spec = inspect_table(path, "prices.csv", "note")
    assert (spec.encoding, spec.delimiter) == ("cp1252", ",")
    assert [r.value for r in iter_rows(path, spec)] == ["café crème", "naïve, but €5", "plain"]
    out = tmp_path / "out.csv"
    write_output(path, out, spec, {2: ("résumé €", None), 3: ('a "quoted" → arrow', None)})
    expected = [
        "id,note,price,summary",
        "1,café crème,3€,résumé €",
        '2,"naïve, but €5",5,"a ""quoted"" ? arrow"',  # → is not in cp1252
        "3,plain,1,",
        "",
    ]
    assert out.read_bytes() == "\n".join(expected).encode("cp1252")


def test_csv_ragged_rows_are_padded(tmp_path: Path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\nx\ny,2,extra\n", encoding="utf-8")
    spec = inspect_table(path, "ragged.csv", "a")
    assert spec.insert_column == 4
    out = tmp_path / "out.csv"
    write_output(path, out, spec, {2: ("X", None), 3: ("Y", None)})
    assert out.read_text(encoding="utf-8") == "a,b,,summary\nx,,,X\ny,2,extra,Y\n"


# --- JSONL -------------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path: Path):
    lines = [
        '{"id": 1, "text": "first {value}", "meta": {"k": [1, 2]}}',
        "",
        '{"text":"","id":2}',
        '  {"id": 3, "text": "third ✓"}  ',
        '{"id": 4, "Text": "other key"}',
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = inspect_table(path, "items.jsonl", "text")
    assert (spec.format, spec.column, spec.total_rows, spec.empty_rows) == ("jsonl", "text", 2, 2)
    assert spec.headers == ["id", "text", "meta", "Text"]
    rows = list(iter_rows(path, spec))
    assert [(r.index, r.value) for r in rows] == [(1, "first {value}"), (4, "third ✓")]
    assert rows[0].fields["meta"] == '{"k": [1, 2]}'
    out = tmp_path / "out.jsonl"
    write_output(path, out, spec, {1: ("s1", None), 4: (None, "failed")})
    got = out.read_text(encoding="utf-8").split("\n")
    assert got[0] == lines[0][:-1] + ', "summary": "s1"}'
    assert got[1:3] == lines[1:3]
    assert got[3] == '  {"id": 3, "text": "third ✓", "summary": null, "error": "failed"}  '
    assert got[4] == lines[4]
    assert list(json.loads(got[0])) == ["id", "text", "meta", "summary"]


def test_jsonl_bad_line_reports_line_number(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(SpreadsheetError) as err:
        inspect_table(path, "bad.jsonl", "text")
    assert err.value.status == 422
    assert "line 3" in err.value.message


# --- refusals ----------------------------------------------------------------------------


def test_password_protected_or_xls_is_refused(tmp_path: Path):
    path = tmp_path / "locked.xlsx"
    path.write_bytes(bytes.fromhex("D0CF11E0A1B11AE1") + b"\x00" * 2048)
    with pytest.raises(SpreadsheetError) as err:
        inspect_table(path, "locked.xlsx", "A")
    assert err.value.status == 400
    assert "password-protected" in err.value.message
    assert ".xls" in err.value.message


@pytest.mark.parametrize(
    "payload",
    [
        b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4,
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        bytes((i * 37 + 11) % 256 for i in range(4096)),
    ],
    ids=["png", "pdf", "random"],
)
def test_non_spreadsheets_are_refused(tmp_path: Path, payload: bytes):
    path = tmp_path / "upload.xlsx"
    path.write_bytes(payload)
    with pytest.raises(SpreadsheetError) as err:
        inspect_table(path, "upload.xlsx", "A")
    assert err.value.status == 400
    assert err.value.param == "file"
    assert "not a spreadsheet: expected .xlsx, .csv or .jsonl" in err.value.message


def test_macro_enabled_workbook_is_refused(tmp_path: Path, plain_xlsx: tuple[Path, dict[str, int]]):
    path = tmp_path / "macros.xlsm"
    with zipfile.ZipFile(plain_xlsx[0]) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 fake vba")
    with pytest.raises(SpreadsheetError) as err:
        inspect_table(path, "macros.xlsm", "Comment")
    assert err.value.status == 422
    assert "macro-enabled" in err.value.message
    assert ".xlsx" in err.value.message


def test_zero_data_rows(tmp_path: Path):
    path = tmp_path / "empty.xlsx"
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["Name", "Comment"])
    ws.append(["Ann", None])
    ws.append(["Bob", "  "])
    wb.save(path)
    with pytest.raises(SpreadsheetError) as err:
        inspect_table(path, "empty.xlsx", "Comment")
    assert (err.value.status, err.value.param) == (422, "column")
    assert "no data rows" in err.value.message


def test_over_max_rows(plain_xlsx: tuple[Path, dict[str, int]], tmp_path: Path):
    with pytest.raises(SpreadsheetError) as err:
        inspect_table(plain_xlsx[0], "feedback.xlsx", "Comment", max_rows=1_000)
    assert err.value.status == 413
    assert "1,000" in err.value.message
    csv_path = tmp_path / "big.csv"
    csv_path.write_text("t\n" + "x\n" * 11, encoding="utf-8")
    assert inspect_table(csv_path, "big.csv", "t", max_rows=11).total_rows == 11
    with pytest.raises(SpreadsheetError) as err:
        inspect_table(csv_path, "big.csv", "t", max_rows=10)
    assert err.value.status == 413


# --- prompts and media types -------------------------------------------------------------


def test_render_prompt_placeholders_and_braces():
    row = Row(
        7,
        "Great {row[Secret]} product {value} {}",
        {"Customer Name": "Zoë {x}", "Comment": "c", "Secret": "s3cr3t"},
    )
    template = (
        'Summarize for {row[Customer Name]} ({row["comment"]}): {value}\n'
        'Reply as JSON like {"summary": "..."} and keep {braces} and {row[}'
    )
    assert render_prompt(template, row) == (
        "Summarize for Zoë {x} (c): Great {row[Secret]} product {value} {}\n"
        'Reply as JSON like {"summary": "..."} and keep {braces} and {row[}'
    )


def test_render_prompt_unknown_header_lists_headers():
    row = Row(2, "v", {"Customer": "a", "Comment": "b"})
    with pytest.raises(SpreadsheetError) as err:
        render_prompt("Hi {row[Name]}: {value}", row)
    assert (err.value.param, err.value.status) == ("instructions", 422)
    assert '"Customer", "Comment"' in err.value.message


def test_media_types():
    assert media_type("xlsx") == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert media_type("csv") == "text/csv"
    assert media_type("jsonl") == "application/x-ndjson"
    with pytest.raises(ValueError, match="unknown"):
        media_type("ods")


def test_chunks_arriving_together_parse_the_file_once(tmp_path: Path):
    path = tmp_path / "many.csv"
    path.write_text("id,text\n" + "".join(f"{i},row {i}\n" for i in range(3000)), encoding="utf-8")
    spec = inspect_table(path, "many.csv", "text")
    start = threading.Barrier(4)
    got: list[list[Row]] = []

    def chunk(first: int) -> None:
        start.wait()
        got.append(read_rows(path, spec, range(first, first + 50)))

    threads = [threading.Thread(target=chunk, args=(2 + 50 * n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(rows[0].value for rows in got) == ["row 0", "row 100", "row 150", "row 50"]
    # One parse: every chunk's rows come from the same parsed file, not from a copy of it.
    again = read_rows(path, spec, [2 + 50 * n for n in range(4)])
    assert all(any(row is first for first in again) for rows in got for row in rows[:1])

"""Decide an upload's format from its bytes, with the file name as a tie-breaker."""

import zipfile
from pathlib import Path, PurePath

from shared.spreadsheets.model import SpreadsheetError, check_archive

_OLE2 = bytes.fromhex("D0CF11E0A1B11AE1")
_NOT_A_SPREADSHEET = "not a spreadsheet: expected .xlsx, .csv or .jsonl"
_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")
_JSONL_EXT = {".jsonl", ".ndjson", ".json"}
_CSV_EXT = {".csv", ".tsv", ".txt", ".tab"}
_WORKBOOK_TYPES = (b"spreadsheetml.sheet.main+xml", b"spreadsheetml.template.main+xml")


def detect_format(path: Path, filename: str) -> str:
    """Return "xlsx", "csv" or "jsonl", or raise SpreadsheetError for anything else."""
    with path.open("rb") as fh:
        head = fh.read(8192)
    if not head.strip():
        raise SpreadsheetError("the file is empty", param="file", status=400)
    if head.startswith(_OLE2):
        raise SpreadsheetError(
            "this workbook is password-protected or in the legacy .xls format; "
            "remove the password and save it as .xlsx",
            param="file",
            status=400,
        )
    if head.startswith(b"PK"):
        return _zip_format(path)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpreadsheetError(
            'UTF-16 text is not supported; save the file as "CSV UTF-8"',
            param="file",
            status=400,
        )
    if _looks_binary(head):
        raise SpreadsheetError(_NOT_A_SPREADSHEET, param="file", status=400)
    ext = PurePath(filename).suffix.lower()
    if ext in _JSONL_EXT:
        return "jsonl"
    if ext in _CSV_EXT:
        return "csv"
    first = next((line.strip() for line in head.splitlines() if line.strip()), b"")
    return "jsonl" if first.lstrip(b"\xef\xbb\xbf").startswith(b"{") else "csv"


def _looks_binary(head: bytes) -> bool:
    if head.startswith(_BINARY_MAGIC) or b"\x00" in head:
        return True
    control = sum(1 for b in head if (b < 0x20 and b not in b"\t\n\r\f") or b == 0x7F)
    return control * 100 > len(head)


def _zip_format(path: Path) -> str:
    check_archive(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            types = zf.read("[Content_Types].xml") if "[Content_Types].xml" in names else b""
    except (zipfile.BadZipFile, OSError) as exc:
        raise SpreadsheetError(
            f"{_NOT_A_SPREADSHEET} (the file is a damaged zip archive)", param="file", status=400
        ) from exc
    if "xl/vbaProject.bin" in names or b"macroEnabled" in types:
        raise SpreadsheetError(
            "macro-enabled workbooks (.xlsm) are not accepted; save the workbook as .xlsx",
            param="file",
            status=422,
        )
    if "xl/workbook.bin" in names:
        raise SpreadsheetError(
            "binary workbooks (.xlsb) are not supported; save the workbook as .xlsx",
            param="file",
            status=400,
        )
    if "xl/workbook.xml" in names or any(t in types for t in _WORKBOOK_TYPES):
        return "xlsx"
    raise SpreadsheetError(_NOT_A_SPREADSHEET, param="file", status=400)

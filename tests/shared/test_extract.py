"""Extraction from real generated documents: PDF, DOCX, XLSX, HTML, CSV and text."""

from __future__ import annotations

import random
import re
import struct
import zlib
from pathlib import Path

import docx
import openpyxl
import pytest
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from shared.documents import ExtractionError, extract_text, sniff_type

WORDS = (
    "market revenue quarter customer contract delivery supplier invoice forecast budget "
    "region product service margin growth risk audit policy review schedule"
).split()


def page_marker(n: int) -> str:
    return f"PAGEMARK{n:03d}"


def make_long_pdf(path: Path, pages: int = 60) -> Path:
    """Write a PDF whose every page has a heading, a few paragraphs and a page marker."""
    rng = random.Random(7)
    pdf = canvas.Canvas(str(path), pagesize=A4)
    for n in range(1, pages + 1):
        pdf.setFont("Helvetica-Bold", 16)
        pdf.drawString(72, 780, f"Section {n}: quarterly review")
        pdf.setFont("Helvetica", 11)
        text = pdf.beginText(72, 750)
        for _ in range(4):
            for _ in range(5):
                text.textLine(" ".join(rng.choice(WORDS) for _ in range(11)) + ".")
            text.textLine("")
        pdf.drawText(text)
        pdf.drawString(72, 40, f"{page_marker(n)} page {n} of {pages}")
        pdf.showPage()
    pdf.save()
    return path


def make_png(path: Path) -> Path:
    """Write a valid 1x1 RGB PNG by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def encrypt_pdf(source: Path, target: Path, user_password: str) -> Path:
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password, owner_password="owner-secret", algorithm="AES-256")
    with target.open("wb") as fh:
        writer.write(fh)
    return target


def reason_of(path: Path, filename: str) -> ExtractionError:
    with pytest.raises(ExtractionError) as info:
        extract_text(path, filename)
    return info.value


@pytest.fixture(scope="module")
def long_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_long_pdf(tmp_path_factory.mktemp("pdf") / "report.pdf")


def test_pdf_all_pages_extracted_in_order(long_pdf: Path) -> None:
    text = extract_text(long_pdf, "report.pdf")
    positions = [text.find(page_marker(n)) for n in range(1, 61)]
    assert all(p >= 0 for p in positions)
    assert positions == sorted(positions)
    assert "Section 60: quarterly review" in text
    # Vertical gaps between paragraphs survive as blank lines.
    assert text.count("\n\n") >= 60 * 4


def test_pdf_encrypted_with_user_password_is_refused(long_pdf: Path, tmp_path: Path) -> None:
    locked = encrypt_pdf(long_pdf, tmp_path / "locked.pdf", "s3cret")
    error = reason_of(locked, "locked.pdf")
    assert error.reason == "encrypted"
    assert "password" in str(error)


def test_pdf_encrypted_with_empty_user_password_is_readable(long_pdf: Path, tmp_path: Path) -> None:
    locked = encrypt_pdf(long_pdf, tmp_path / "perms.pdf", "")
    assert PdfReader(locked).is_encrypted
    text = extract_text(locked, "perms.pdf")
    assert page_marker(1) in text
    assert page_marker(60) in text


def test_pdf_without_text_is_reported_as_image_only(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    pdf = canvas.Canvas(str(path), pagesize=A4)
    pdf.rect(100, 100, 300, 400, fill=1)
    pdf.showPage()
    pdf.save()
    error = reason_of(path, "scan.pdf")
    assert error.reason == "no_text"
    assert "image-only" in str(error)
    assert "OCR is not supported" in str(error)


def test_truncated_pdf_is_corrupt(long_pdf: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.pdf"
    path.write_bytes(b"%PDF-1.4\n% nothing else survived the upload\n")
    assert reason_of(path, "cut.pdf").reason == "corrupt"


def test_png_renamed_to_pdf_is_unsupported(tmp_path: Path) -> None:
    path = make_png(tmp_path / "photo.pdf")
    assert sniff_type(path.read_bytes(), "photo.pdf") == "png"
    error = reason_of(path, "photo.pdf")
    assert error.reason == "unsupported_type"
    assert "png" in str(error).lower()
    assert "PDF" in str(error)


def test_docx_paragraphs_and_tables_in_order(tmp_path: Path) -> None:
    document = docx.Document()
    for n in range(1, 41):
        document.add_heading(f"Chapter {n}", level=1)
        document.add_paragraph(f"Opening paragraph DOCMARK{n:02d} of chapter {n}.")
        if n % 10 == 0:
            table = document.add_table(rows=3, cols=3)
            for r in range(3):
                for c in range(3):
                    table.cell(r, c).text = f"T{n}R{r}C{c}"
        document.add_paragraph(f"Closing paragraph of chapter {n}.")
        if n < 40:
            document.add_page_break()
    path = tmp_path / "book.docx"
    document.save(str(path))

    text = extract_text(path, "book.docx")
    expected: list[str] = []
    for n in range(1, 41):
        expected += [f"Chapter {n}", f"DOCMARK{n:02d}"]
        if n % 10 == 0:
            expected += [f"T{n}R{r}C0 | T{n}R{r}C1 | T{n}R{r}C2" for r in range(3)]
        expected.append(f"Closing paragraph of chapter {n}.")
    positions = [text.find(item) for item in expected]
    assert all(p >= 0 for p in positions), [
        e for e, p in zip(expected, positions, strict=True) if p < 0
    ]
    assert positions == sorted(positions)
    assert "T10R0C0 | T10R0C1 | T10R0C2\nT10R1C0" in text  # rows of one table stay together


def test_xlsx_every_sheet_and_cell(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sales = workbook.active
    assert sales is not None
    sales.title = "Sales"
    sales.append(["Region", "Q1", "Q2"])
    sales.append(["North", 120, 130.5])
    sales.append([])
    sales.append(["South", 90, 95])
    costs = workbook.create_sheet("Costs")
    costs.append(["Item", "Amount"])
    costs.append(["Rent", 1000])
    notes = workbook.create_sheet("Notes 2024")
    notes["A1"] = "Reviewed by finance"
    notes["C3"] = "late entry"
    path = tmp_path / "figures.xlsx"
    workbook.save(path)

    text = extract_text(path, "figures.xlsx")
    assert text.index("## Sheet: Sales") < text.index("## Sheet: Costs")
    assert text.index("## Sheet: Costs") < text.index("## Sheet: Notes 2024")
    for line in (
        "Region | Q1 | Q2",
        "North | 120 | 130.5",
        "South | 90 | 95",
        "Item | Amount",
        "Rent | 1000",
        "Reviewed by finance",
        " |  | late entry",
    ):
        assert line in text
    assert "North | 120 | 130.5\nSouth | 90 | 95" in text  # the empty row is skipped


def test_html_visible_text_only(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<!DOCTYPE html><html><head><title>Quarterly</title>"
        "<style>body { color: red; }</style><script>var secret = 1;</script></head>"
        "<body><h1>Results</h1><p>Revenue <b>grew</b> by 4%.</p><div>Costs fell.</div>"
        "<!-- hidden comment --><table><tr><th>Region</th><th>Total</th></tr>"
        "<tr><td>North</td><td>120</td></tr></table><p>Line one<br>line two</p></body></html>",
        encoding="utf-8",
    )
    text = extract_text(path, "page.html")
    assert "secret" not in text
    assert "color" not in text
    assert "hidden comment" not in text
    assert "Results\n\nRevenue grew by 4%.\n\nCosts fell." in text
    assert "Region | Total\nNorth | 120" in text
    assert "Line one\nline two" in text


def test_csv_rows_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('name,city,amount\n"Smith, J.",Paris,10\n\nDoe,"New\nYork",20\n')
    text = extract_text(path, "data.csv")
    assert text.splitlines() == [
        "name | city | amount",
        "Smith, J. | Paris | 10",
        "Doe | New York | 20",
    ]


def test_cp1252_and_bom_text(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.txt"
    legacy.write_bytes("Café – “quoted” 10€\r\nsecond line".encode("cp1252"))
    assert extract_text(legacy, "legacy.txt") == "Café – “quoted” 10€\nsecond line"
    bom = tmp_path / "bom.md"
    bom.write_bytes("\ufeff# Title\n\nBody".encode())
    assert extract_text(bom, "bom.md") == "# Title\n\nBody"


def test_empty_text_and_size_limit(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n ")
    assert reason_of(empty, "empty.txt").reason == "no_text"
    big = tmp_path / "big.txt"
    big.write_text("word " * 1000)
    with pytest.raises(ExtractionError) as info:
        extract_text(big, "big.txt", max_chars=1000)
    assert info.value.reason == "too_large"
    assert re.search(r"1,000", str(info.value))


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        (b"%PDF-1.7\n", "x.bin", "pdf"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "x.pdf", "png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "scan.docx", "jpeg"),
        (b"GIF89a\x01\x00", "a.txt", "gif"),
        (b"PK\x03\x04\x14\x00", "report.docx", "docx"),
        (b"PK\x03\x04\x14\x00", "book.xlsx", "xlsx"),
        (b"PK\x03\x04\x14\x00\x00\x00xl/workbook.xml", "upload", "xlsx"),
        (b"PK\x03\x04\x14\x00", "archive.zip", "zip"),
        (b"a,b\n1,2\n", "t.csv", "csv"),
        (b"# Title\n", "README.md", "md"),
        (b"<!doctype html><p>x", "page", "html"),
        (b"plain words", "notes", "txt"),
        (b"\x00\x01\x02\x03binary", "data.txt", "unknown"),
    ],
)
def test_sniff_type(head: bytes, filename: str, expected: str) -> None:
    assert sniff_type(head, filename) == expected


def test_zip_that_is_not_office_is_unsupported(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "fake.docx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    error = reason_of(path, "fake.docx")
    assert error.reason == "unsupported_type"
    assert "zip" in str(error).lower()

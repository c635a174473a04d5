"""Plain-text extraction from uploaded documents (PDF, DOCX, XLSX, HTML, CSV, Markdown, text)."""

from __future__ import annotations

import csv
import datetime
import io
import re
import textwrap
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from shared.archives import ArchiveError, ensure_bounded

SUPPORTED_TYPES = ("pdf", "docx", "xlsx", "html", "csv", "md", "txt")
_SUPPORTED_LABEL = "PDF, Word (.docx), Excel (.xlsx), HTML, CSV, Markdown and plain text"
_TYPE_LABELS = {
    "png": "a PNG image (png)",
    "jpeg": "a JPEG image (jpeg)",
    "gif": "a GIF image (gif)",
    "zip": "a ZIP archive (zip)",
    "unknown": "a binary file of unknown type (unknown)",
}
_KIND_NAMES = {
    "pdf": "PDF",
    "docx": "Word",
    "xlsx": "Excel",
    "html": "HTML",
    "csv": "CSV",
    "md": "Markdown",
    "txt": "text",
}
_HEAD_BYTES = 8192
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_TEXT_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}
_HTML_START = re.compile(
    rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b", re.I
)
_BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption dd details dialog div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section "
    "summary table tbody tfoot thead title tr ul".split()
)
_INVISIBLE_TAGS = frozenset({"script", "style", "noscript", "template"})


class ExtractionError(ValueError):
    """A document we cannot read; `reason` is a short machine code, str() a user-facing sentence."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sniff_type(data_head: bytes, filename: str) -> str:
    """Detect a document's type from its first bytes, using the file extension as tie-breaker."""
    ext = Path(filename).suffix.lower()
    if b"%PDF-" in data_head[:1024]:
        return "pdf"
    if data_head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data_head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data_head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data_head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        # The first local file headers usually name the package parts; the extension decides
        # when they do not.
        if ext in (".docx", ".xlsx"):
            return ext[1:]
        if b"word/" in data_head:
            return "docx"
        if b"xl/" in data_head:
            return "xlsx"
        return "zip"
    if not _looks_like_text(data_head):
        return "unknown"
    if ext in _TEXT_EXTENSIONS:
        return _TEXT_EXTENSIONS[ext]
    if _HTML_START.match(data_head):
        return "html"
    return "txt"


def extract_text(path: Path, filename: str, max_chars: int = 5_000_000) -> str:
    """Return the readable text of the document at `path` (uploaded as `filename`)."""
    with path.open("rb") as fh:
        head = fh.read(_HEAD_BYTES)
    kind = sniff_type(head, filename)
    if kind in ("docx", "xlsx", "zip"):
        check_document_archive(path)
        kind = _zip_kind(path)
    if kind == "unknown" and head.startswith(_OLE_MAGIC):
        if Path(filename).suffix.lower() in (".docx", ".xlsx"):
            # Office wraps password-protected .docx/.xlsx files in an OLE container.
            raise ExtractionError(
                "encrypted", "This document is password-protected; remove the password and retry."
            )
    if kind not in SUPPORTED_TYPES:
        label = _TYPE_LABELS.get(kind, kind)
        if head.startswith(_OLE_MAGIC):
            label = "a legacy Office file (.doc/.xls/.ppt)"
        raise ExtractionError(
            "unsupported_type",
            f"This file looks like {label}; only {_SUPPORTED_LABEL} documents are supported.",
        )
    out = _Collector(max_chars)
    if kind in ("txt", "md", "csv") and path.stat().st_size > 4 * max_chars:
        out.overflow()  # even at 4 bytes per character the text is too long
    try:
        if kind == "pdf":
            _extract_pdf(path, out)
        elif kind == "docx":
            _extract_docx(path, out)
        elif kind == "xlsx":
            _extract_xlsx(path, out)
        elif kind == "html":
            _extract_html(path.read_bytes(), out)
        elif kind == "csv":
            _extract_csv(_decode(path.read_bytes()), out)
        else:
            out.add(_decode(path.read_bytes()))
    except ExtractionError:
        raise
    except Exception as exc:  # parsers raise many unrelated types on malformed input
        raise ExtractionError(
            "corrupt", f"This {_KIND_NAMES[kind]} file is damaged or malformed and cannot be read."
        ) from exc
    text = out.text()
    if not text.strip():
        raise ExtractionError("no_text", f"This {_KIND_NAMES[kind]} file contains no text.")
    return text


def check_document_archive(path: Path) -> None:
    """Refuse a zip-based document over the archive limits before any parser opens it."""
    try:
        ensure_bounded(path)
    except ArchiveError as exc:
        reason = "too_large" if exc.status == 413 else "corrupt"
        raise ExtractionError(reason, exc.message) from exc


class _Collector:
    """Accumulates text blocks and stops early once the character limit is passed."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.blocks: list[str] = []
        self.size = 0

    def add(self, block: str) -> None:
        block = block.strip("\n")
        if not block.strip():
            return
        self.blocks.append(block)
        self.size += len(block) + 2
        if self.size > self.max_chars + 2:
            self.overflow()

    def overflow(self) -> None:
        raise ExtractionError(
            "too_large",
            f"This document is too large: its text is longer than the {self.max_chars:,}-character"
            " limit.",
        )

    def text(self) -> str:
        return "\n\n".join(self.blocks)


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in head:
        return False
    controls = sum(1 for b in head if b < 32 and b not in b"\t\n\r\f\b\x1b")
    return controls <= len(head) // 100


def _decode(data: bytes) -> str:
    """Decode bytes as UTF-16 (with BOM), UTF-8, or cp1252, and normalise line endings."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile as exc:
        raise ExtractionError(
            "corrupt", "This file looks like an Office document but is damaged and cannot be read."
        ) from exc
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    return "zip"


def _row_line(cells: Iterable[object]) -> str:
    """Format a table row as `a | b | c`, dropping trailing empty cells; "" for an empty row."""
    values = [_cell_text(c) for c in cells]
    while values and not values[-1]:
        values.pop()
    return " | ".join(values)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return " ".join(str(value).split())


def _extract_pdf(path: Path, out: _Collector) -> None:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    reader = PdfReader(path)
    if reader.is_encrypted:
        try:
            # Many PDFs are encrypted only to set permissions, with an empty user password.
            opened = reader.decrypt("")
        except DependencyError as exc:
            raise ExtractionError(
                "encrypted", "This PDF is encrypted with an algorithm the server cannot decrypt."
            ) from exc
        if opened == PasswordType.NOT_DECRYPTED:
            raise ExtractionError(
                "encrypted", "This PDF is password-protected; remove the password and retry."
            )
    if len(reader.pages) == 0:
        raise ExtractionError("corrupt", "This PDF has no readable pages; the file may be damaged.")
    found_text = False
    for page in reader.pages:
        page_text = _pdf_page_text(page)
        if page_text:
            found_text = True
            out.add(page_text)
    if not found_text:
        raise ExtractionError(
            "no_text",
            "This PDF has no extractable text: it looks image-only (scanned), and OCR is not "
            "supported.",
        )


def _pdf_page_text(page: Any) -> str:
    """Page text with paragraph breaks: layout mode keeps vertical gaps as blank lines."""
    try:
        raw = page.extract_text(extraction_mode="layout", layout_mode_space_vertically=True)
    except Exception:  # layout mode gives up on some font/encoding edge cases
        raw = ""
    if not raw.strip():
        raw = page.extract_text()
    text = textwrap.dedent("\n".join(line.rstrip() for line in raw.splitlines()))
    # Layout mode pads columns with long space runs; keep a visible gap, not the padding.
    text = re.sub(r"(?<=\S) {4,}(?=\S)", "   ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _extract_docx(path: Path, out: _Collector) -> None:
    import docx
    from docx.table import Table

    document = docx.Document(str(path))
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            out.add("\n".join(line for line in _docx_table_lines(item) if line))
        else:
            out.add(item.text)


def _docx_table_lines(table: Any) -> Iterator[str]:
    for row in table.rows:
        seen: set[int] = set()
        cells = []
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(cell.text)
        yield _row_line(cells)


def _extract_xlsx(path: Path, out: _Collector) -> None:
    import openpyxl

    # A file object, not the path: openpyxl refuses paths without an .xlsx suffix, and stored
    # uploads are named by id.
    with path.open("rb") as fh:
        workbook = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        try:
            for sheet in workbook.worksheets:
                out.add(f"## Sheet: {sheet.title}")
                rows: list[str] = []
                size = 0
                for row in sheet.iter_rows(values_only=True):
                    line = _row_line(row)
                    if line:
                        rows.append(line)
                        size += len(line) + 1
                        if size > out.max_chars:
                            out.overflow()
                out.add("\n".join(rows))
        finally:
            workbook.close()


def _extract_csv(text: str, out: _Collector) -> None:
    sample = text[:65536]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    lines: list[str] = []
    size = 0
    for row in csv.reader(io.StringIO(text), dialect):
        line = _row_line(row)
        if line:
            lines.append(line)
            size += len(line) + 1
            if size > out.max_chars:
                out.overflow()
    out.add("\n".join(lines))


def _extract_html(data: bytes, out: _Collector) -> None:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    parts: list[str] = []
    _walk_html(soup, parts, in_pre=False)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", "".join(parts))
    text = re.sub(r"\n{3,}", "\n\n", text)
    for block in text.split("\n\n"):
        out.add(block.strip())


def _walk_html(node: Any, parts: list[str], in_pre: bool) -> None:
    from bs4.element import NavigableString, PreformattedString, Tag

    for child in node.children:
        if isinstance(child, NavigableString):
            if isinstance(child, PreformattedString):
                continue  # comments, doctype, processing instructions
            parts.append(str(child) if in_pre else re.sub(r"\s+", " ", str(child)))
        elif isinstance(child, Tag):
            name = child.name.lower()
            if name in _INVISIBLE_TAGS:
                continue
            if name == "br":
                parts.append("\n")
            elif name == "table":
                rows = [
                    _row_line(
                        c.get_text(" ", strip=True)
                        for c in tr.find_all(["td", "th"], recursive=False)
                    )
                    for tr in child.find_all("tr")
                    if tr.find_parent("table") is child  # nested tables stay inside their cell
                ]
                parts.append("\n\n" + "\n".join(r for r in rows if r) + "\n\n")
            elif name in _BLOCK_TAGS:
                parts.append("\n\n")
                _walk_html(child, parts, in_pre or name == "pre")
                parts.append("\n\n")
            else:
                _walk_html(child, parts, in_pre)

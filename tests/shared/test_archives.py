"""The archive bounds every zip-based reader goes through."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pytest

from shared.archives import ArchiveError, ArchiveLimits, check_zip, ensure_bounded
from shared.documents import ExtractionError, extract_text
from shared.spreadsheets import SpreadsheetError, inspect_table
from tests.fixtures.hostile import (
    MIB,
    docx_bomb,
    overstate_compressed,
    plain_zip,
    understate_sizes,
    xlsx_bomb,
)
from tests.fixtures.workbooks import feedback_workbook

LIMITS = ArchiveLimits(
    max_uncompressed_bytes=64 * MIB, max_member_bytes=32 * MIB, max_ratio=100, max_entries=50
)


def refused(path: Path, limits: ArchiveLimits = LIMITS) -> ArchiveError:
    with pytest.raises(ArchiveError) as err:
        check_zip(path, limits)
    return err.value


def test_a_real_workbook_passes(tmp_path: Path) -> None:
    path = tmp_path / "ok.xlsx"
    path.write_bytes(feedback_workbook(2000, lambda i: f"comment {i}"))
    check_zip(path, LIMITS)


def test_an_honest_bomb_is_refused_from_its_directory(tmp_path: Path) -> None:
    err = refused(xlsx_bomb(tmp_path / "bomb.xlsx", 300 * MIB))
    assert err.status == 413
    assert "LLMJOBS_ARCHIVE_MAX_MEMBER_BYTES" in err.message


def test_ratio_is_enforced(tmp_path: Path) -> None:
    path = xlsx_bomb(tmp_path / "dense.xlsx", 20 * MIB)
    err = refused(path)
    assert err.status == 413
    assert "LLMJOBS_ARCHIVE_MAX_RATIO" in err.message
    check_zip(path, ArchiveLimits(64 * MIB, 32 * MIB, max_ratio=5000, max_entries=50))


def test_total_size_is_enforced_across_members(tmp_path: Path) -> None:
    # Incompressible parts (ratio about 1), each under the per-part limit, too many together.
    members = {f"part{i}.bin": random.Random(i).randbytes(20 * MIB) for i in range(4)}
    err = refused(plain_zip(tmp_path / "parts.zip", members))
    assert err.status == 413
    assert "LLMJOBS_ARCHIVE_MAX_UNCOMPRESSED_BYTES" in err.message


def test_entry_count_is_enforced(tmp_path: Path) -> None:
    err = refused(plain_zip(tmp_path / "many.zip", {f"f{i}.xml": b"<x/>" for i in range(51)}))
    assert err.status == 422
    assert "51" in err.message
    assert "LLMJOBS_ARCHIVE_MAX_ENTRIES" in err.message


def test_understated_sizes_cannot_smuggle_bytes_past_the_limits(tmp_path: Path) -> None:
    path = understate_sizes(xlsx_bomb(tmp_path / "liar.xlsx", 300 * MIB), 1000)
    with zipfile.ZipFile(path) as zf:
        assert max(i.file_size for i in zf.infolist()) == 1000  # the directory now looks small
    err = refused(path)
    assert err.status == 422
    assert "damaged or forged" in err.message


def test_overstated_compressed_size_does_not_dodge_the_ratio(tmp_path: Path) -> None:
    path = xlsx_bomb(tmp_path / "liar.xlsx", 30 * MIB)
    # The part's own ratio now looks harmless; the file as a whole is still far too dense.
    overstate_compressed(path, "xl/sharedStrings.xml", 400)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("xl/sharedStrings.xml")
        assert info.file_size <= 100 * info.compress_size
    err = refused(path)
    assert err.status == 413
    assert "LLMJOBS_ARCHIVE_MAX_RATIO" in err.message


def test_damaged_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.xlsx"
    path.write_bytes(feedback_workbook(50, str)[:-200])
    assert refused(path).status == 422


def test_spreadsheet_and_document_readers_refuse_before_parsing(tmp_path: Path) -> None:
    bomb = xlsx_bomb(tmp_path / "bomb.xlsx", 300 * MIB)
    with pytest.raises(SpreadsheetError) as sheet_err:
        inspect_table(bomb, "bomb.xlsx", "A")
    assert sheet_err.value.status == 413
    assert sheet_err.value.param == "file"
    with pytest.raises(ExtractionError) as doc_err:
        extract_text(bomb, "bomb.xlsx")
    assert doc_err.value.reason == "too_large"
    with pytest.raises(ExtractionError) as docx_err:
        extract_text(docx_bomb(tmp_path / "bomb.docx", 300 * MIB), "bomb.docx")
    assert "LLMJOBS_ARCHIVE_" in str(docx_err.value)


def test_ensure_bounded_remembers_a_checked_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.xlsx"
    path.write_bytes(feedback_workbook(10, str))
    ensure_bounded(path, LIMITS)
    ensure_bounded(path, LIMITS)
    # A changed file is checked again.
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        for i in range(51):
            zf.writestr(f"f{i}", b"x")
    path.write_bytes(data.getvalue())
    with pytest.raises(ArchiveError):
        ensure_bounded(path, LIMITS)

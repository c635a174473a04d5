"""Bounds on zip-based uploads (.xlsx, .docx), checked before any parser opens them.

The central directory is checked first (cheap, refuses an honest bomb at once); then every
member is decompressed into a counter, so a directory that understates sizes cannot smuggle
more bytes past the limits than it declared. Parsers (openpyxl, python-docx) read through
``zipfile``, which stops at the declared size, so what they see is what was checked here.
"""

from __future__ import annotations

import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings, get_settings

_CHUNK = 1024 * 1024
# Below this a part's ratio says nothing (a few KB of XML may compress 500:1 legitimately).
_RATIO_FLOOR = 1024 * 1024
_MIB = 1024 * 1024
_REMEMBERED = 16


class ArchiveError(ValueError):
    """A zip-based upload over a limit or inconsistent; ``status`` is 413 or 422."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ArchiveLimits:
    """What a zip-based upload may unpack to."""

    max_uncompressed_bytes: int
    max_member_bytes: int
    max_ratio: float
    max_entries: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        """The limits configured by LLMJOBS_ARCHIVE_*."""
        return cls(
            settings.archive_max_uncompressed_bytes,
            settings.archive_max_member_bytes,
            settings.archive_max_ratio,
            settings.archive_max_entries,
        )


def _mib(n: int) -> str:
    return f"{n / _MIB:,.0f} MiB" if n >= _MIB else f"{n:,} bytes"


def _too_big(what: str, limit: int, setting: str) -> ArchiveError:
    return ArchiveError(
        f"the file unpacks to more than {_mib(limit)} ({what}); the limit is set by "
        f"LLMJOBS_{setting}",
        413,
    )


def _too_dense(name: str, limits: ArchiveLimits) -> ArchiveError:
    return ArchiveError(
        f"part {name!r} of the file is compressed more than {limits.max_ratio:g}:1, which only "
        "a zip bomb does; the limit is set by LLMJOBS_ARCHIVE_MAX_RATIO",
        413,
    )


def _ratio_ok(unpacked: int, packed: int, limits: ArchiveLimits) -> bool:
    return unpacked <= _RATIO_FLOOR or unpacked <= limits.max_ratio * max(packed, 1)


def check_directory(zf: zipfile.ZipFile, limits: ArchiveLimits) -> None:
    """Refuse an archive whose central directory declares too much."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(
            f"the file holds {len(infos):,} parts; the limit is {limits.max_entries:,} "
            "(LLMJOBS_ARCHIVE_MAX_ENTRIES)",
            422,
        )
    total = 0
    for info in infos:
        if info.file_size > limits.max_member_bytes:
            raise _too_big(f"part {info.filename!r} alone", limits.max_member_bytes,
                           "ARCHIVE_MAX_MEMBER_BYTES")
        if not _ratio_ok(info.file_size, info.compress_size, limits):
            raise _too_dense(info.filename, limits)
        total += info.file_size
        if total > limits.max_uncompressed_bytes:
            raise _too_big("all parts together", limits.max_uncompressed_bytes,
                           "ARCHIVE_MAX_UNCOMPRESSED_BYTES")


def _stream(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits, total: int, packed: int
) -> int:
    produced = 0
    with zf.open(info) as member:
        while chunk := member.read(_CHUNK):
            produced += len(chunk)
            total += len(chunk)
            if produced > info.file_size:
                raise ArchiveError(
                    f"part {info.filename!r} unpacks to more than its declared size; the file "
                    "is damaged or forged",
                    422,
                )
            if produced > limits.max_member_bytes:
                raise _too_big(f"part {info.filename!r} alone", limits.max_member_bytes,
                               "ARCHIVE_MAX_MEMBER_BYTES")
            if total > limits.max_uncompressed_bytes:
                raise _too_big("all parts together", limits.max_uncompressed_bytes,
                               "ARCHIVE_MAX_UNCOMPRESSED_BYTES")
            if not _ratio_ok(produced, info.compress_size, limits):
                raise _too_dense(info.filename, limits)
            # The real packed bytes are at most the file itself, whatever the directory says.
            if not _ratio_ok(total, packed, limits):
                raise _too_dense("(all parts)", limits)
    return total


def check_zip(path: Path, limits: ArchiveLimits) -> None:
    """Check the directory, then unpack every member into a counter; raise ArchiveError."""
    packed = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            check_directory(zf, limits)
            if not _ratio_ok(sum(i.file_size for i in zf.infolist()), packed, limits):
                raise _too_dense("(all parts)", limits)
            total = 0
            for info in zf.infolist():
                if not info.is_dir():
                    total = _stream(zf, info, limits, total, packed)
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError,
            OSError, RuntimeError, ValueError) as exc:
        # zipfile stops at the declared size and then fails the CRC: a forged directory
        # ends here, as does plain damage.
        raise ArchiveError(
            f"the file is a damaged or forged zip archive ({type(exc).__name__}: "
            f"{str(exc)[:120]})",
            422,
        ) from exc


_checked: OrderedDict[tuple[str, int, int, ArchiveLimits], None] = OrderedDict()
_checked_lock = threading.Lock()


def ensure_bounded(path: Path, limits: ArchiveLimits | None = None) -> None:
    """``check_zip`` once per file version and process (sniffing and parsing both call it)."""
    limits = limits or ArchiveLimits.from_settings(get_settings())
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, limits)
    with _checked_lock:
        if key in _checked:
            _checked.move_to_end(key)
            return
    check_zip(path, limits)
    with _checked_lock:
        _checked[key] = None
        while len(_checked) > _REMEMBERED:
            _checked.popitem(last=False)

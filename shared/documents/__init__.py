"""Document text extraction and token-aware chunking for long-document jobs."""

from shared.documents.chunking import budget_for, chunk_text
from shared.documents.extract import ExtractionError, extract_text, sniff_type
from shared.tokens import count_tokens

__all__ = [
    "ExtractionError",
    "budget_for",
    "chunk_text",
    "count_tokens",
    "extract_text",
    "sniff_type",
]

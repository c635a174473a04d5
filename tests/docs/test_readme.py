"""The README documents what the code offers."""

from __future__ import annotations

from pathlib import Path

from shared.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [
        f"LLMJOBS_{name.upper()}"
        for name in Settings.model_fields
        if f"LLMJOBS_{name.upper()}" not in README
    ]
    assert missing == []


def test_the_two_commands_are_given() -> None:
    assert "make run" in README
    assert "make test" in README

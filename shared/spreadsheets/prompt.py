"""Fill a per-row prompt template without ever interpreting braces in user data."""

import re
from collections.abc import Sequence

from shared.spreadsheets.model import Row, SpreadsheetError, list_columns

# {value} or {row[Header Name]}, optionally {row["Header"]} / {row['Header']}.
_PLACEHOLDER = re.compile(r"\{value\}|\{row\[(.+?)\]\}")


def _name(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    return raw


def _lookup(name: str, headers: Sequence[str]) -> str | None:
    if name in headers:
        return name
    wanted = name.strip().casefold()
    return next((h for h in headers if h.strip().casefold() == wanted), None)


def check_template(template: str, headers: Sequence[str]) -> None:
    """Raise SpreadsheetError if the template names a column the table does not have."""
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) is not None and _lookup(_name(match.group(1)), headers) is None:
            raise SpreadsheetError(
                f"the instructions refer to column {match.group(0)!r}, which does not exist; "
                f"columns: {list_columns(headers, None)}",
                param="instructions",
            )


def render_prompt(template: str, row: Row) -> str:
    """Replace "{value}" and "{row[Header]}" in ``template``; other braces stay as written."""
    headers = list(row.fields)
    check_template(template, headers)

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return row.value
        header = _lookup(_name(match.group(1)), headers)
        assert header is not None  # check_template ran
        return row.fields[header]

    # One pass: text put in from the row is never scanned for placeholders again.
    return _PLACEHOLDER.sub(substitute, template)

"""What text may be: names, tags and the note end up in tables, logs, file listings and terminals,
which would act on control characters. One rule for the configuration schema (training), the
store and the API, so a tag refused in one place is refused in all; `db` holds it because every
package may import `db`.

A note is the one text with lines: line breaks and tabs are allowed there, Windows line ends
becoming plain ones. Every other tag value, like a name, is one line.
"""

from __future__ import annotations

import re

from db.errors import StoreError

# Unicode's Cc, Zl and Zp, as the body of a regular-expression class, so that the API's document
# can state the same rule as a pattern; lone surrogates (Cs) are no scalar values, so no pattern
# can name them, and only the checks below refuse them.
NOT_PRINTABLE = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029"
# The same with tabs and line breaks allowed (CR only as part of a line end).
NOT_NOTE_TEXT = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\u2028\\u2029"
_NOT_PRINTABLE = re.compile(f"[{NOT_PRINTABLE}\\ud800-\\udfff]")
_NOT_NOTE_TEXT = re.compile(f"[{NOT_NOTE_TEXT}\\ud800-\\udfff]")

# A key (of a tag, a parameter, a metric): as a string too, since the API's document states it.
KEY_PATTERN = r"^[A-Za-z0-9_.\-/]{1,250}$"
_KEY = re.compile(KEY_PATTERN)
NOTE_TAG = "note"  # the tag a run's note is (MLflow's is `mlflow.note.content`)
MAX_TAG_VALUE = 5000


def check_printable(value: str, lines: bool = False) -> str:
    """Refuse control characters (ValueError, for a schema's validators); with `lines`, line
    breaks and tabs are text."""
    found = (_NOT_NOTE_TEXT if lines else _NOT_PRINTABLE).search(value)
    if found:
        raise ValueError(
            f"character U+{ord(found.group()):04X} at position {found.start()} is not printable "
            f"text; remove it (received: {short(value)})"
        )
    return value


def check_key(key: str, what: str = "key") -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise StoreError(
            f"{what}: letters, digits, '_', '.', '-' or '/', 1 to 250 characters "
            f"(received: {short(key)})"
        )
    return key


def check_tag_value(key: str, value: str, what: str | None = None) -> str:
    """A tag's value as it is kept: printable text of at most MAX_TAG_VALUE characters, one line
    unless the tag is the note. `what` names it in the message (default: `tag 'key'` or `note`)."""
    what = what or ("note" if key == NOTE_TAG else f"tag {key!r}")
    if not isinstance(value, str):
        raise StoreError(f"{what}: a string, or null to remove it (received: {short(value)})")
    if key == NOTE_TAG:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if len(value) > MAX_TAG_VALUE:
        raise StoreError(
            f"{what}: at most {MAX_TAG_VALUE} characters; shorten it "
            f"(received: {len(value)} characters)"
        )
    try:
        return check_printable(value, lines=key == NOTE_TAG)
    except ValueError as exc:
        lines = key != NOTE_TAG and not _NOT_NOTE_TEXT.search(value)
        advice = f"; only the note (the tag {NOTE_TAG!r}) has lines" if lines else ""
        raise StoreError(f"{what}: {exc}{advice}") from None


def short(value: object) -> str:
    """A value as a message quotes it: its repr, at most 80 characters."""
    text = repr(value[:100] if isinstance(value, str) else value)
    return text if len(text) <= 80 else text[:77] + "..."

"""What every section of the schema shares: its limits, and a number is never a boolean."""

from __future__ import annotations

import json
import math
import typing
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator

from db.text import check_printable

# Upper bounds the code downstream can honour: NumPy and Keras take 32-bit seeds, and a step
# count fits the store's 64-bit columns with room to spare.
SEED_MAX = 2**32 - 1
STEPS_MAX = 10**9
EPOCHS_MAX = 10_000
# Limits on what any input may be before it is looked at: a configuration needs 4 levels and
# about 50 values, so these refuse only hostile or broken input (alias bombs, deep nesting).
MAX_DEPTH = 20
MAX_VALUES = 10_000
MAX_TEXT_BYTES = 1_000_000


def not_bool(value: Any) -> Any:
    """YAML reads `yes`, `on` and `true` as booleans; none of them is a count or a rate."""
    if isinstance(value, bool):
        raise ValueError(
            f"input should be a number, not true or false (received: {str(value).lower()})"
        )
    if isinstance(value, int) and value.bit_length() > 1000:
        raise ValueError(f"input should be a finite number (received: {short(value)})")
    return value


def finite(value: int | float) -> int | float:
    """A number of an open-ended field (an option, a script's argument): never a boolean, never
    infinite or NaN."""
    value = not_bool(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"a finite number (received: {value})")
    return value


def _is_number(annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation in (int, float) or (len(args) == 1 and args[0] in (int, float))


Text = Annotated[str, AfterValidator(check_printable)]


class Section(BaseModel):
    # Plain annotations (int, float | None...) on purpose: the UI builds its form from them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name and _is_number(cls.model_fields[info.field_name].annotation):
            return not_bool(value)
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _text_is_printable(cls, value: Any) -> Any:
        return check_printable(value) if isinstance(value, str) else value


def loc_part(part: Any) -> str:
    text = str(part)
    if text.isprintable() and len(text) <= 60:
        return text
    return short(text)


def short(value: Any) -> str:
    if isinstance(value, str):
        text = repr(value[:100])
    else:
        try:
            text = json.dumps(value, default=str)
        except (ValueError, RecursionError):
            text = f"a nested {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."

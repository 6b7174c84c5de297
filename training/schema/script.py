"""A job that runs the user's own entrypoint (`python train.py --lr {lr}`) in a snapshot of their
working directory, instead of `python -m training` on a configuration.

The command is an argument list, never a shell string. `{name}` in an argument is replaced by
`script.args.name`, so that a sweep varies a script's arguments as it varies any field
(`script.args.lr`). The directory it runs in is the configuration's `code`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from db.text import check_printable
from training.schema.fields import Section, finite

CODE_ID = re.compile(r"sha256:[0-9a-f]{64}")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_ARGS = 256
MAX_ARG_CHARS = 4096
# What `python` in a command means: the service's own interpreter, where TensorFlow, Horovod and
# this project import.
PYTHON_NAMES = frozenset({"python", "python3"})


def check_argument(value: Any, where: str | None = None) -> str:
    """One argument of a command: text that survives the trip to another process's argv."""
    lead = f"{where}: " if where else ""
    if not isinstance(value, str):
        raise ValueError(f"{lead}text (received: {type(value).__name__} {value!r:.60})")
    if len(value) > MAX_ARG_CHARS:
        raise ValueError(
            f"{lead}at most {MAX_ARG_CHARS} characters; pass long values in a file "
            f"(received: {len(value)} characters)"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{lead}not UTF-8 text (character {exc.start}: {value[exc.start]!r}); pass text only"
        ) from None
    check_printable(value)  # a NUL cannot reach a program; a newline or an escape is a mistake
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        return check_argument(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return finite(value)
    raise ValueError(
        "a number, text or true/false, as a command line argument takes (received: "
        f"{type(value).__name__} {value!r:.60})"
    )


Argument = Annotated[str, BeforeValidator(check_argument)]
Scalar = Annotated[Any, BeforeValidator(_scalar)]


def check_code(code: str | None) -> str | None:
    if code is not None and not CODE_ID.fullmatch(code):
        raise ValueError(
            "an uploaded working directory's id, sha256: and 64 hexadecimal digits, as PUT /code "
            f"answers (received: {code!r:.80})"
        )
    return code


def format_value(value: Any) -> str:
    """As a command line writes it: true/false as Python's argparse users expect them."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class ScriptConfig(Section):
    command: list[Argument] = Field(
        min_length=1,
        max_length=MAX_ARGS,
        description=(
            "What each rank runs, as a list of arguments (python is the service's interpreter); "
            "{name} is replaced by script.args.name."
        ),
    )
    args: dict[str, Scalar] = Field(
        default_factory=dict,
        max_length=100,
        description="Values for the command's {name} placeholders; a sweep varies them.",
    )

    @field_validator("args")
    @classmethod
    def _arg_names(cls, args: dict[str, Any]) -> dict[str, Any]:
        for key in args:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(
                    "a name is letters, digits and '_', as the command's {lr} (received: "
                    f"{key!r:.60})"
                )
        return args

    @model_validator(mode="after")
    def _placeholders_known(self) -> ScriptConfig:
        used = {m for arg in self.command for m in PLACEHOLDER.findall(arg)}
        missing = sorted(used - set(self.args))
        if missing:
            raise ValueError(
                f"command: {{{missing[0]}}} has no value; give it in script.args (for example "
                f"script.args.{missing[0]}=0.01) (received args: {sorted(self.args) or 'none'})"
            )
        if not self.command[0]:
            raise ValueError("command: the first argument is the program to run; it is empty")
        return self

    def argv(self, python: str) -> list[str]:
        """The command as each rank runs it."""
        first, *rest = self.command
        args = {k: format_value(v) for k, v in self.args.items()}
        filled = [PLACEHOLDER.sub(lambda m: args[m.group(1)], a) for a in rest]
        return [python if first in PYTHON_NAMES else first, *filled]

"""The Launch page's "Your code" mode, and the working directory any launch may upload: a
directory on this machine, packed by the rules `easgd submit --working-dir` follows and sent to
the service, which runs the job in a copy of it."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from service.workdir import WorkdirError, pack
from training.schema import STEPS_MAX, ConfigError, ExperimentConfig, parse_config
from ui import address, state
from ui.form import ADDRESS_TEXT_MAX

DIR_HELP = (
    "A directory on this machine: it is uploaded to the job service (without .git, virtual "
    "environments and caches), and the job runs in a copy of it, with it on the import path."
)


def working_dir_problem(text: str) -> str | None:
    if not text.strip():
        return None
    path = Path(text.strip()).expanduser()
    if not path.is_dir():
        return f"Working directory: not a directory on this machine (received: {text!r:.200})"
    return None


def upload(text: str) -> str:
    """The snapshot's id; WorkdirError or ApiError, in one line, when it cannot be."""
    return state.client().upload_code(pack(Path(text.strip()).expanduser()))["code"]


def script_config() -> tuple[dict[str, Any], ExperimentConfig | None, list[str]]:
    """The "Your code" fields: (the configuration, typed or None, the problems in it)."""
    st.text_input("Working directory", key="code.dir", help=DIR_HELP)
    st.text_input(
        "Command",
        key="code.command",
        help="What each rank runs, as you would type it (python is the service's interpreter, "
        "where TensorFlow, Horovod and this project import).",
    )
    columns = st.columns(3)
    columns[0].number_input("Workers", key="code.workers", min_value=1, max_value=1024, step=1)
    columns[1].number_input(
        "Checkpoint every (steps)",
        key="code.every",
        min_value=1,
        step=1,
        help="What training.tracking.KerasCallback checkpoints at; a relaunch resumes there.",
    )
    columns[2].text_input("Run name", key="code.name")
    problems = [p for p in [working_dir_problem(st.session_state["code.dir"])] if p]
    if not st.session_state["code.dir"].strip():
        problems.append("Working directory: give the directory your script is in")
    try:
        command = shlex.split(st.session_state["code.command"])
    except ValueError as exc:
        problems.append(f"Command: {exc} (received: {st.session_state['code.command']!r:.200})")
        return {}, None, problems
    if not command:
        return {}, None, [*problems, "Command: give what each rank runs, such as python train.py"]
    data: dict[str, Any] = {
        "script": {"command": command},
        "resources": {"workers": int(st.session_state["code.workers"])},
        "checkpoint": {"every": int(st.session_state["code.every"])},
    }
    if st.session_state["code.name"].strip():
        data["name"] = st.session_state["code.name"].strip()
    try:
        config = parse_config(data)
    except ConfigError as exc:
        config = None
        problems += exc.problems
    return data, config, problems


DEFAULTS: dict[str, Any] = {
    "code.dir": "",
    "code.command": "python train.py",
    "code.workers": 2,
    "code.every": 200,
    "code.name": "",
}
# The widgets' ranges, which a value from the address is brought into.
_RANGES = {"code.workers": (1, 1024), "code.every": (1, STEPS_MAX)}


def defaults() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


def _read(key: str) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        if len(text) > ADDRESS_TEXT_MAX:
            raise ValueError("too long")
        if key not in _RANGES:
            return text
        low, high = _RANGES[key]
        return min(max(int(text), low), high)

    return read


def _write(key: str) -> Callable[[Any], str | None]:
    return lambda value: None if value == DEFAULTS[key] or value is None else str(value)


def address_params() -> list[address.Param]:
    """The fields of this mode in the page's address (`code.dir=...`), where they differ from
    the defaults."""
    return [address.Param(key, key, _read(key), _write(key)) for key in DEFAULTS]


__all__ = [
    "WorkdirError",
    "address_params",
    "defaults",
    "script_config",
    "upload",
    "working_dir_problem",
]

"""A page's state in its address (query parameters), so that a link or a reload shows the same
view: the address fills the widgets when it changed from outside (a link opened, a reload, back
or forward), and the widgets write it back on every run.

Hand-edited addresses are hostile input like any other: a value that does not parse, or names
nothing on the page, is ignored and the widget keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st


@dataclass(frozen=True)
class Param:
    """One query parameter and the widget it mirrors. `read` turns the address's text into the
    widget's value and raises ValueError for text that is not one; `write` turns the value back
    into text, None to leave the parameter out."""

    name: str
    key: str
    read: Callable[[str], Any] = str
    write: Callable[[Any], str | None] = str


def _seen_key(params: Sequence[Param]) -> str:
    return "address." + ",".join(p.key for p in params)


def _current(params: Sequence[Param]) -> dict[str, str | None]:
    return {p.name: st.query_params.get(p.name) for p in params}


def restore(params: Sequence[Param], defaults: dict[str, Any] | None = None) -> None:
    """Before the widgets are drawn: the address's values into their session-state keys when the
    address is not the one this session last wrote; `defaults` for keys with no value at all."""
    current = _current(params)
    if st.session_state.get(_seen_key(params)) != current:
        for p in params:
            text = current[p.name]
            if text is None:
                continue
            try:
                st.session_state[p.key] = p.read(text)
            except ValueError:
                pass
    for key, value in (defaults or {}).items():
        if key not in st.session_state:
            st.session_state[key] = value


def publish(params: Sequence[Param]) -> None:
    """After the widgets are drawn: their values into the address."""
    for p in params:
        text = p.write(st.session_state[p.key]) if p.key in st.session_state else None
        if text is None:
            if p.name in st.query_params:
                del st.query_params[p.name]
        elif st.query_params.get(p.name) != text:
            st.query_params[p.name] = text
    st.session_state[_seen_key(params)] = _current(params)


def one_of(options: Sequence[str]) -> Callable[[str], str]:
    """A reader that takes only one of `options`."""

    def read(text: str) -> str:
        if text not in options:
            raise ValueError(text)
        return text

    return read


def subset_of(options: Sequence[str]) -> Callable[[str], list[str]]:
    """A reader of comma-separated choices among `options`, in the address's order, repeats
    and unknown ones dropped; one that names none of them is ignored, as any value that names
    nothing on the page."""

    def read(text: str) -> list[str]:
        chosen = list(dict.fromkeys(i for i in text.split(",") if i in options))
        if not chosen:
            raise ValueError(text)
        return chosen

    return read


def joined(values: Sequence[str]) -> str | None:
    return ",".join(values) or None


def flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def flag_text(value: bool) -> str:
    return "1" if value else "0"


def number_in(low: float, high: float) -> Callable[[str], float]:
    """A reader of a finite number from `low` to `high`."""

    def read(text: str) -> float:
        value = float(text)  # ValueError for what is not a number
        if not low <= value <= high:  # also refuses nan
            raise ValueError(text)
        return value

    return read

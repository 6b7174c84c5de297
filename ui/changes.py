"""Every change the UI makes goes through the job service's API, as the command line's do, so
that it meets the same checks, token and locking; reads stay on the store. A refusal, or a
service that does not answer, is one line on the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from db.text import short
from service.client import ApiError, Client, ServiceUnreachable
from ui import state

T = TypeVar("T")


def through_service(change: Callable[[Client], T]) -> T | None:
    """What `change`, made with the UI's client, answered; None, its line shown, when the
    service refused it or did not answer."""
    try:
        return change(state.client())
    except ApiError as exc:
        st.error(refusal(exc))
        return None


def refusal(exc: ApiError) -> str:
    """The service's own words, without the HTTP status a person has no use for."""
    if isinstance(exc, ServiceUnreachable):
        return (
            f"The job service does not answer at {exc.url}: start it with `easgd up` (or "
            "`easgd serve`), or point the UI at it with EASGD_API_URL."
        )
    if isinstance(exc.detail, list):
        return "; ".join(_problem(d) for d in exc.detail)
    if isinstance(exc.detail, str) and exc.status is not None and exc.status < 500:
        return exc.detail
    return str(exc)


def _problem(error: Any) -> str:
    """One of a 422's problems: the field it names (unless its message does), what is wrong,
    and the value received (unless its message quotes it)."""
    if not isinstance(error, dict):
        return str(error)
    text = str(error.get("msg", error))
    where = [str(p) for p in error.get("loc", [])[1:] if p != "[key]"]
    if where and not text.startswith(where[0]):
        text = f"{'.'.join(where)}: {text}"
    if "input" in error and "received" not in text:
        text += f" (received: {short(error['input'])})"
    return text

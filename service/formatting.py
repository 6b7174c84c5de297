"""Rendering store objects for people (tables) and programs (CSV, JSON)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from typing import Any

from db.entities import RunRecord
from training.run.metrics import KEY_METRICS


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 90:
        return f"{s:.1f}s"
    if s < 5400:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def number(v: float | None) -> str:
    if v is None:
        return "-"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.4g}"


def printable(text: str) -> str:
    """Escape what a terminal would act on (newlines, NUL, escape sequences, bidi overrides):
    stored names come from anyone who could submit, and must not redraw a user's screen."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[printable(str(h)) for h in headers]] + [
        ["-" if c is None else printable(str(c)) for c in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_json(run: RunRecord) -> dict[str, Any]:
    d = run.to_dict()
    d["metrics"] = {
        k: {"value": v.value, "step": v.step, "min": v.min, "max": v.max}
        for k, v in sorted(run.metrics.items())
    }
    return d


def runs_table(runs: Sequence[RunRecord], metrics: Sequence[str] = KEY_METRICS) -> str:
    headers = [
        "id",
        "name",
        "status",
        "source",
        "algorithm",
        "workers",
        "step",
        *metrics,
        "duration",
        "started",
    ]
    rows = []
    for r in runs:
        step = f"{r.last_step}/{r.total_steps}" if r.total_steps else str(r.last_step)
        rows.append(
            [
                r.id,
                r.name or "-",
                r.status if r.archived_at is None else f"{r.status} (archived)",
                r.source,
                r.params.get("optimizer.algorithm", "-"),
                r.workers,
                step,
                *[number(r.metrics[m].value) if m in r.metrics else "-" for m in metrics],
                seconds(r.duration),
                when(r.start_time),
            ]
        )
    return table(headers, rows)


def runs_csv(runs: Sequence[RunRecord]) -> str:
    params = sorted({k for r in runs for k in r.params})
    metrics = sorted({k for r in runs for k in r.metrics})
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            "id",
            "name",
            "status",
            "source",
            "workers",
            "hosts",
            "start_time",
            "end_time",
            "last_step",
            *[f"params.{p}" for p in params],
            *[f"metrics.{m}" for m in metrics],
        ]
    )
    for r in runs:
        w.writerow(
            [
                r.id,
                r.name,
                r.status,
                r.source,
                r.workers,
                r.hosts,
                r.start_time,
                r.end_time,
                r.last_step,
                *[r.params.get(p) for p in params],
                *[r.metrics[m].value if m in r.metrics else None for m in metrics],
            ]
        )
    return out.getvalue()


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)

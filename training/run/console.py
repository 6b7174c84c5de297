"""What the training program prints: rank 0's progress and outcome lines, one per event.

The job service reads these lines from a job's log (its failure reason is the line after
`easgd: `), so their prefix is an interface, not decoration.
"""

from __future__ import annotations

import sys

from training.run.metrics import BYTES_SENT, CENTER_ACCURACY, SPREAD, TRAIN_LOSS


def say(msg: str) -> None:
    print(msg, flush=True)


def complain(msg: str) -> None:
    print(f"easgd: {msg}", file=sys.stderr, flush=True)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} GB"


def progress_line(step: int, total_steps: int, epoch: float, row: dict[str, float]) -> str:
    parts = [f"step {step}/{total_steps}", f"epoch {epoch:.2f}"]
    if TRAIN_LOSS in row:
        parts.append(f"loss {row[TRAIN_LOSS]:.4f}")
    if CENTER_ACCURACY in row:
        parts.append(f"center acc {row[CENTER_ACCURACY]:.4f}")
    if SPREAD in row:
        parts.append(f"spread {row[SPREAD]:.3g}")
    if BYTES_SENT in row:
        parts.append(f"sent {format_bytes(row[BYTES_SENT])}")
    return "easgd: " + ", ".join(parts)


def finished_line(run_id: str, run_dir: str, center_accuracy: float | None) -> str:
    if center_accuracy is None:
        return f"easgd: finished run {run_id}, results in {run_dir}"
    return (
        f"easgd: finished run {run_id}: center accuracy {center_accuracy:.4f}, results in {run_dir}"
    )

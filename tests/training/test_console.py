"""Rank 0's lines: the job service and people read them."""

from __future__ import annotations

from training.run.console import finished_line, format_bytes, progress_line


def test_bytes_read_in_the_largest_unit_below_1024():
    assert [format_bytes(n) for n in (0, 1023, 1024, 1536 * 1024, 3 * 1024**3, 5000 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KB",
        "1.5 MB",
        "3.0 GB",
        "5000.0 GB",
    ]


def test_progress_names_only_what_the_row_has():
    assert progress_line(5, 100, 0.25, {}) == "easgd: step 5/100, epoch 0.25"
    row = {"train_loss": 0.123456, "center_accuracy": 0.9, "spread": 0.00123, "bytes_sent": 2048}
    assert progress_line(50, 100, 2.5, row) == (
        "easgd: step 50/100, epoch 2.50, loss 0.1235, center acc 0.9000, spread 0.00123, "
        "sent 2.0 KB"
    )


def test_finished_line_with_and_without_an_accuracy():
    assert finished_line("r1", "/x/r1", 0.98765) == (
        "easgd: finished run r1: center accuracy 0.9877, results in /x/r1"
    )
    assert finished_line("r1", "/x/r1", None) == "easgd: finished run r1, results in /x/r1"

"""A job's log tail: the last lines, whatever the file's size or encoding."""

from __future__ import annotations

from service.logs import tail


def test_tail_gives_the_last_lines_of_a_large_log(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail(log, 3).splitlines() == ["line 99997", "line 99998", "line 99999"]


def test_tail_of_a_missing_or_undecodable_log(tmp_path):
    assert tail(None) == "" and tail(tmp_path / "none.log") == ""
    log = tmp_path / "bytes.log"
    log.write_bytes(b"ok\n\xff\xfe broken\nlast\n")
    assert tail(log, 2).splitlines() == ["\ufffd\ufffd broken", "last"]

"""The run directory protocol: a new directory per run, never another run's, config.yaml whole."""

from __future__ import annotations

import re

import pytest
import yaml

from training.run.run_dir import new_run_id, prepare_run_dir, write_config
from training.schema import parse_config


def test_a_new_run_gets_a_fresh_directory_under_the_runs_dir(easgd_home):
    d, resuming = prepare_run_dir(None, None)
    assert not resuming and d.parent == easgd_home / "runs"
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", d.name)
    assert new_run_id() != new_run_id()


@pytest.mark.parametrize("marker", ["metrics.jsonl", "config.yaml"])
def test_another_runs_directory_is_refused_with_the_way_out(tmp_path, marker):
    (tmp_path / marker).write_text("")
    with pytest.raises(FileExistsError) as err:
        prepare_run_dir(str(tmp_path), None)
    assert f"--resume {tmp_path}" in str(err.value) and "new --out" in str(err.value)


def test_resume_needs_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        prepare_run_dir(None, str(tmp_path))
    cfg = parse_config({"training": {"max_steps": 7}})
    write_config(tmp_path / "run", cfg)
    assert prepare_run_dir(None, str(tmp_path / "run")) == (tmp_path / "run", True)


def test_config_is_replaced_whole_and_reads_back_the_same(tmp_path):
    first = parse_config({"training": {"max_steps": 7}})
    write_config(tmp_path, first)
    write_config(tmp_path, parse_config({"training": {"max_steps": 9}}))
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary left
    again = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert parse_config(again).training.max_steps == 9

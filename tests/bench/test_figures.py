"""The benchmark's arithmetic: what it reports is only as good as these functions."""

from __future__ import annotations

import json

import pytest

from bench.fidelity import next_rate, tables
from bench.harness import NAMES, WORKLOADS, communicated, label_for, outcome, tuned_settings
from bench.run import bracket, goals
from bench.seeds import time_ratios
from bench.tune import candidates, choose, widen
from training.schema.algorithms import REGISTRY


def _rows(step_times: dict[int, float], accuracy: dict[int, float], bytes_per_step: float):
    rows = [{"step": 0, "center_accuracy": accuracy.get(0, 0.1), "bytes_sent": 0.0}]
    for step, t in step_times.items():
        row = {
            "step": step,
            "step_time": t,
            "bytes_sent": bytes_per_step * step,
            "comm_seconds": 0.0,
        }
        if step in accuracy:
            row["center_accuracy"] = accuracy[step]
        rows.append(row)
    return rows


def _run(tmp_path, rows: list[dict]):
    """A run directory holding `rows` as its metrics.jsonl."""
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_first_step_counts_as_a_typical_communication_step(tmp_path):
    # eamsgd with tau = 10 communicates on steps 1, 11, 21: those take 0.05 s, the others 0.01 s.
    times = {s: (0.05 if (s - 1) % 10 == 0 else 0.01) for s in range(1, 31)}
    times[1] = 3.0  # tracing the training function
    f = outcome(_run(tmp_path, _rows(times, {20: 0.5, 30: 0.96}, 100.0)), "eamsgd", 0.95)
    assert f["first_step_seconds"] == 3.0
    assert f["median_comm_step_ms"] == pytest.approx(50.0)
    assert f["median_local_step_ms"] == pytest.approx(10.0)
    # 3 communication steps (the first one counted at the median) and 27 local ones.
    assert f["seconds_to_target"] == pytest.approx(3 * 0.05 + 27 * 0.01)
    assert f["steps_to_target"] == 30
    assert f["bytes_per_step"] == pytest.approx(100.0)
    assert f["final_accuracy"] == 0.96


# easgd with tau = 2 communicates on steps 1, 3, 5, 7; the evaluation at step 6 was not finite.
METRICS = """\
{"step": 0, "wall_time": 0.0, "bytes_sent": 0.0, "comm_seconds": 0.0, "center_accuracy": 0.1}
{"step": 1, "step_time": 2.0, "bytes_sent": 400.0, "comm_seconds": 0.01}
{"step": 2, "step_time": 0.1, "bytes_sent": 400.0, "comm_seconds": 0.01, "center_accuracy": 0.6}
{"step": 3, "step_time": 0.3, "bytes_sent": 800.0, "comm_seconds": 0.02}
{"step": 4, "step_time": 0.1, "bytes_sent": 800.0, "comm_seconds": 0.02, "center_accuracy": 0.93}
{"step": 5, "step_time": 0.5, "bytes_sent": 1200.0, "comm_seconds": 0.03}
{"step": 6, "step_time": 0.1, "bytes_sent": 1200.0, "comm_seconds": 0.03, "center_accuracy": null}
{"step": 7, "step_time": 0.3, "bytes_sent": 1600.0, "comm_seconds": 0.04}
{"step": 8, "step_time": 0.1, "bytes_sent": 1600.0, "comm_seconds": 0.04, "center_accuracy": 0.91}
"""


def test_outcome_of_a_hand_written_run(tmp_path):
    run_dir = tmp_path / "tune-lenet-easgd"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(METRICS)
    f = outcome(run_dir, "easgd", 0.9, tau=2)
    assert f["run_id"] == "tune-lenet-easgd"
    assert f["steps"] == 8
    assert f["bytes_per_step"] == 200.0
    assert f["comm_seconds"] == 0.04
    assert f["first_step_seconds"] == 2.0
    # Steps 3, 5, 7 communicate (0.3, 0.5, 0.3 s); 2, 4, 6, 8 do not (0.1 s each).
    assert f["median_comm_step_ms"] == pytest.approx(300.0)
    assert f["mean_comm_step_ms"] == pytest.approx(366.667)
    assert f["median_local_step_ms"] == pytest.approx(100.0)
    # The first step counted at the median communication step: 0.3 + 0.1 + 0.3 + 0.1 to step 4.
    assert f["steps_to_target"] == 4
    assert f["seconds_to_target"] == pytest.approx(0.8)
    assert f["train_seconds"] == pytest.approx(0.3 + 0.1 + 0.3 + 0.1 + 0.5 + 0.1 + 0.3 + 0.1)
    assert f["best_accuracy"] == 0.93
    assert f["final_accuracy"] == 0.91
    assert [p[0] for p in f["curve"]] == [0, 2, 4, 8]
    assert f["curve"][2] == [4, pytest.approx(0.8), 800.0, 0.93]


def test_a_run_that_wrote_no_metrics_has_no_figures(tmp_path):
    f = outcome(tmp_path / "failed-run", "sync", 0.95)
    assert f["run_id"] == "failed-run" and f["steps"] == 0
    assert f["steps_to_target"] is None and f["best_accuracy"] is None
    assert f["final_accuracy"] is None and f["bytes_per_step"] is None
    assert choose([{"optimizer": "x", **f}]) is None


def test_communicated_steps_follow_the_registry_schedule():
    """1-based steps, tau = 10; tests/training/test_schedule.py checks them against the
    optimizer's own round counter."""
    assert [s for s in range(1, 22) if communicated("eamsgd", s)] == [1, 11, 21]
    assert [s for s in range(1, 22) if communicated("localsgd", s)] == [10, 20]
    assert all(communicated("sync", s) for s in range(1, 22))
    assert set(NAMES) <= set(REGISTRY)


def test_target_not_reached_is_none(tmp_path):
    times = {s: 0.02 for s in range(1, 11)}
    f = outcome(_run(tmp_path, _rows(times, {10: 0.9}, 10.0)), "sync", 0.95)
    assert f["steps_to_target"] is None and f["seconds_to_target"] is None
    assert f["best_accuracy"] == 0.9


def test_bracket_averages_both_sides_and_survives_one_failure():
    before = {"plain_ms": 10.0, "wrapped_ms": 10.2}
    after = {"plain_ms": 12.0, "wrapped_ms": 12.0}
    b = bracket(before, after)
    assert b["plain_ms"] == 11.0 and b["wrapped_ms"] == 11.1
    assert b["ab_ratio"] == pytest.approx((1.02 + 1.0) / 2)
    assert bracket(None, after)["plain_ms"] == 12.0
    assert bracket(None, None) is None


def test_goals_compare_in_training_step_with_the_bracketed_reference():
    ref = {"plain_ms": 10.0, "wrapped_ms": 10.1, "ab_ratio": 1.01}
    results = {
        "loopback": {
            "plain": {"lenet": ref},
            "lenet": {
                "sync": {"bytes_per_step": 1000.0, "seconds_to_target": 10.0},
                "easgd": {"bytes_per_step": 100.0},
                "eamsgd": {"median_local_step_ms": 10.5, "seconds_to_target": 9.0},
            },
        }
    }
    by_goal = {g["goal"]: g for g in goals(results)}
    step = by_goal["eamsgd non-communication step <= 1.03x plain, in training (loopback, lenet)"]
    assert step["measured"] == 1.05 and not step["met"]
    ab = by_goal[
        "the wrapper's non-communication step <= 1.03x plain, alternating in one process "
        "(loopback, lenet)"
    ]
    assert ab["met"]
    assert by_goal["bytes/step easgd tau=10 = 1/10 of sync (loopback, lenet)"]["met"]
    assert by_goal["time to 0.95 eamsgd <= 1.0x sync (LeNet, loopback)"]["measured"] == 0.9
    slow = by_goal["time to 0.90 eamsgd <= 0.15x sync (MLP, 100 Mbit/s)"]
    assert slow["measured"] is None and not slow["met"]


def test_tuning_grids_are_shared_by_kind():
    sync, eamsgd = candidates("sync"), candidates("eamsgd")
    strip = [(c["learning_rate"], c["momentum"]) for c in sync]
    assert strip == [(c["learning_rate"], c["momentum"]) for c in eamsgd]
    assert all(c["inner"] == "nesterov" for c in sync)
    assert [c["learning_rate"] for c in candidates("easgd")] == [
        c["learning_rate"] for c in candidates("localsgd")
    ]


def test_choice_prefers_fewest_steps_then_accuracy_and_skips_failed_runs():
    tried = [
        {"optimizer": "a", "steps_to_target": None, "best_accuracy": 0.99},
        {"optimizer": "b", "steps_to_target": 200, "best_accuracy": 0.96},
        {"optimizer": "c", "steps_to_target": 200, "best_accuracy": 0.97},
        {"optimizer": "d", "steps_to_target": None, "best_accuracy": None},
    ]
    assert choose(tried)["optimizer"] == "c"
    assert choose(tried[:1])["optimizer"] == "a"
    assert choose(tried[3:]) is None


def test_a_choice_at_an_end_of_the_grid_widens_it():
    tried = [{"optimizer": {"learning_rate": lr, "momentum": 0.9}} for lr in (0.02, 0.05, 0.1)] + [
        {"optimizer": {"learning_rate": 0.002, "momentum": 0.99}}
    ]
    assert widen({"learning_rate": 0.1, "momentum": 0.9}, tried)["learning_rate"] == 0.2
    assert widen({"learning_rate": 0.02, "momentum": 0.9}, tried)["learning_rate"] == 0.01
    assert widen({"learning_rate": 0.05, "momentum": 0.9}, tried) is None
    # A single rate at that momentum brackets nothing either way.
    assert widen({"learning_rate": 0.002, "momentum": 0.99}, tried) is None


def test_fidelity_tuning_widens_until_the_best_rate_is_inside():
    def scored(errors: dict[float, float | None]) -> dict[float, dict]:
        return {lr: {"best_error": e} for lr, e in errors.items()}

    assert next_rate(scored({0.02: 0.3, 0.06: 0.1, 0.2: 0.05})) == 0.6
    assert next_rate(scored({0.001: 0.1, 0.003: 0.2, 0.01: 0.5})) == 0.00033
    assert next_rate(scored({0.02: 0.3, 0.06: 0.1, 0.2: 0.5})) is None
    # A diverged rate (no error) counts as learning nothing; equal scores point nowhere.
    assert next_rate(scored({0.02: None, 0.06: 0.4})) == 0.18
    assert next_rate(scored({0.02: 0.9, 0.06: 0.9, 0.2: 0.9})) is None


def test_fidelity_tables_star_a_rate_the_grid_did_not_bracket():
    s = {"runs": 1, "diverged": 0, "best_error_mean": 0.1, "best_error_std": 0.0}
    s |= {"final_error_mean": 0.2, "final_error_std": 0.0}
    section = {
        "tuned": {"a": {"lr": 1.8, "bracketed": False}, "b": {"lr": 0.2, "bracketed": True}},
        "results": {"a": s, "b": s},
    }
    text = tables({"tree": section})
    assert "| a | 0.1000 ± 0.0000 | 0.2000 ± 0.0000 | 1.8* |" in text
    assert "| b | 0.1000 ± 0.0000 | 0.2000 ± 0.0000 | 0.2 |" in text


def test_run_names_follow_the_whole_configuration():
    a = label_for("lenet", "eamsgd", {"algorithm": "eamsgd", "learning_rate": 0.05}, 1)
    assert a == label_for("lenet", "eamsgd", {"algorithm": "eamsgd", "learning_rate": 0.05}, 1)
    assert a != label_for("lenet", "eamsgd", {"algorithm": "eamsgd", "learning_rate": 0.1}, 1)
    assert a != label_for("lenet", "eamsgd", {"algorithm": "eamsgd", "learning_rate": 0.05}, 2)


def test_time_ratio_counts_eamsgd_communication_steps():
    costs = {
        "sync": {"median_comm_step_ms": 100.0},
        "eamsgd": {"median_comm_step_ms": 100.0, "median_local_step_ms": 10.0},
    }
    steps = {"sync": {1: 60, 2: 50, 3: None}, "eamsgd": {1: 60, 2: 70, 3: 100}}
    r = time_ratios(steps, costs, [1, 2, 3])
    # 60 steps: 6 exchanges (steps 1, 11, ..., 51) and 54 local steps.
    assert r[1] == round((6 * 100 + 54 * 10) / (60 * 100), 3)
    assert r[2] == round((7 * 100 + 63 * 10) / (50 * 100), 3)
    assert r[3] is None


def test_benchmark_settings_come_from_the_tuners_record(tmp_path):
    record = {"workloads": {"lenet": {"chosen": {"sync": {"learning_rate": 0.1}}, "tried": {}}}}
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(record))
    assert tuned_settings(path) == {"lenet": {"sync": {"learning_rate": 0.1}}}
    with pytest.raises(SystemExit, match="make bench-tune"):
        tuned_settings(tmp_path / "missing.json")
    # The committed record covers every algorithm the benchmark runs, on every workload.
    committed = tuned_settings()
    assert {wl: set(committed[wl]) for wl in WORKLOADS} == {wl: set(NAMES) for wl in WORKLOADS}


def test_compression_goals_take_the_faster_coded_form_and_its_accuracy_gap():
    from bench.compression import goals as compression_goals
    from bench.compression import markdown

    def row(t, final):
        return {"time_over_sync": t, "median_final": final}

    slow = {
        "sync": row(1.0, 0.93),
        "eamsgd-none": row(0.12, 0.951),
        "eamsgd-int8": row(0.05, 0.949),
        "eamsgd-int4": row(0.04, 0.94),
    }
    lenet = {
        "none": {"mean_final": 0.97},
        "int8": {"points_below_float32": 0.2},
        "int4": {"points_below_float32": -0.6},
    }
    found = compression_goals({"slow": slow, "lenet": lenet})
    assert [g["measured"] for g in found] == [0.04, 1.1, 0.2, -0.6]
    assert [g["met"] for g in found] == [False, False, True, False]
    assert "eamsgd-int4" in found[0]["goal"]
    text = markdown({"when": "now", "goals": found})
    assert (
        "| LeNet, loopback: int8 EAMSGD final accuracy within 0.5 points of float32 | 0.2 | yes |"
        in text
    )

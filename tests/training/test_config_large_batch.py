"""The large-batch fields of the schema (issue 11): defaults, bounds, one line per bad value,
where they are used (recorded, shown) and the advice before launch."""

from __future__ import annotations

import pytest

from training.schema import (
    ConfigError,
    InnerOptimizer,
    fields_for,
    parse_config,
    recorded_params,
    resolve,
    visible_fields,
    warnings_for,
)
from training.schema.algorithms import REGISTRY


def test_defaults_change_nothing():
    opt = parse_config({}).optimizer
    assert (opt.lr_scaling, opt.warmup_steps) == ("none", 0)
    assert (opt.lars_eta, opt.lars_weight_decay) == (0.001, 0.0)
    lars = parse_config({"optimizer": {"algorithm": "sync", "inner": "lars"}}).optimizer
    assert lars.resolved_inner is InnerOptimizer.LARS and lars.resolved_momentum == 0.9


def test_values_accepted_at_their_ends():
    opt = parse_config(
        {
            "optimizer": {
                "lr_scaling": "sqrt",
                "warmup_steps": 10**9,
                "lars_eta": 1,
                "lars_weight_decay": 1,
            }
        }
    ).optimizer
    assert opt.warmup_steps == 10**9 and opt.lars_eta == 1.0 and opt.lars_weight_decay == 1.0
    assert parse_config({"optimizer": {"lars_weight_decay": 0}}).optimizer.lars_weight_decay == 0


@pytest.mark.parametrize(
    "field, value, phrase, received",
    [
        ("lr_scaling", "quadratic", "input should be 'none', 'linear' or 'sqrt'", "'quadratic'"),
        ("lr_scaling", 2, "input should be 'none', 'linear' or 'sqrt'", "2"),
        ("lr_scaling", None, "input should be 'none', 'linear' or 'sqrt'", "null"),
        ("lr_scaling", ["linear"], "input should be 'none', 'linear' or 'sqrt'", '["linear"]'),
        ("warmup_steps", -1, "greater than or equal to 0", "-1"),
        ("warmup_steps", 10**9 + 1, "less than or equal to 1000000000", "1000000001"),
        ("warmup_steps", 2.5, "valid integer", "2.5"),
        ("warmup_steps", "five", "valid integer", "'five'"),
        ("warmup_steps", True, "not true or false", "true"),
        ("warmup_steps", 2**2000, "finite number", "..."),
        ("warmup_steps", float("inf"), "finite number", "Infinity"),
        ("lars_eta", 0, "greater than 0", "0"),
        ("lars_eta", 1.5, "less than or equal to 1", "1.5"),
        ("lars_eta", float("nan"), "finite number", "NaN"),
        ("lars_eta", 1e400, "finite number", "Infinity"),
        ("lars_eta", "0.001x", "valid number", "'0.001x'"),
        ("lars_weight_decay", -1e-4, "greater than or equal to 0", "-0.0001"),
        ("lars_weight_decay", 1e300, "less than or equal to 1", "1e+300"),
        ("lars_weight_decay", float("-inf"), "finite number", "-Infinity"),
        ("lars_weight_decay", False, "not true or false", "false"),
    ],
)
def test_each_bad_value_gives_one_line_naming_field_reason_and_value(
    field, value, phrase, received
):
    with pytest.raises(ConfigError) as exc:
        parse_config({"optimizer": {field: value}})
    assert len(exc.value.problems) == 1, exc.value.problems
    line = exc.value.problems[0]
    assert line.startswith(f"optimizer.{field}: "), line
    assert phrase in line and "received: " in line and received in line, line
    assert "\n" not in line


def test_overrides_from_the_command_line(tmp_path):
    cfg = resolve(
        None,
        [
            "optimizer.lr_scaling=linear",
            "optimizer.warmup_steps=5",
            "optimizer.inner=lars",
            "optimizer.lars_eta=0.02",
        ],
    )
    assert cfg.optimizer.lr_scaling == "linear" and cfg.optimizer.lars_eta == 0.02
    with pytest.raises(ConfigError, match=r"^optimizer.warmup_steps: .*received: -3\)$"):
        resolve(None, ["optimizer.warmup_steps=-3"])
    with pytest.raises(ConfigError, match=r"optimizer.inner: input should be .*'lars'"):
        resolve(None, ["optimizer.inner=larss"])


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_algorithm_uses_the_schedule_and_lars_only_with_lars(name):
    assert {"lr_scaling", "warmup_steps"} <= fields_for(name)
    assert "lars_eta" not in fields_for(name)
    assert {"lars_eta", "lars_weight_decay"} <= fields_for(name, "lars")
    shown = visible_fields({"optimizer": {"algorithm": name, "inner": "lars"}})
    assert {"optimizer.lars_eta", "optimizer.lars_weight_decay", "optimizer.warmup_steps"} <= shown
    shown = visible_fields({"optimizer": {"algorithm": name, "inner": "adam"}})
    assert "optimizer.lars_eta" not in shown and "optimizer.lr_scaling" in shown


def test_hostile_inner_values_do_not_break_the_form():
    for inner in (["lars"], {"a": 1}, 3, None):
        assert "optimizer.lars_eta" not in visible_fields({"optimizer": {"inner": inner}})


def test_recorded_params_follow_the_inner_optimizer():
    sync = {"algorithm": "sync", "lr_scaling": "linear", "warmup_steps": 5}
    lars = recorded_params(parse_config({"optimizer": {**sync, "inner": "lars"}}).to_dict())
    assert lars["optimizer.lr_scaling"] == "linear" and lars["optimizer.warmup_steps"] == 5
    assert lars["optimizer.lars_eta"] == 0.001 and lars["optimizer.lars_weight_decay"] == 0.0
    plain = recorded_params(parse_config({"optimizer": sync}).to_dict())
    assert plain["optimizer.warmup_steps"] == 5
    assert not any(k.startswith("optimizer.lars_") for k in plain)


def test_warnings_before_launch():
    def advice(optimizer, workers=2):
        return warnings_for(parse_config({"optimizer": optimizer}), workers)

    assert advice({"algorithm": "sync", "lr_scaling": "linear", "warmup_steps": 5}) == []
    (idle,) = advice({"algorithm": "sync", "warmup_steps": 5})
    assert idle.startswith("optimizer.warmup_steps: no effect with lr_scaling 'none'")
    (one,) = advice({"algorithm": "sync", "lr_scaling": "sqrt", "warmup_steps": 5}, workers=1)
    assert "on 1 worker(s)" in one
    (big,) = advice({"algorithm": "sync", "lr_scaling": "linear", "learning_rate": 2.0}, 8)
    assert big.startswith("optimizer.lr_scaling: the scaled learning rate 2 x 8 = 16")
    assert advice({"algorithm": "sync", "lr_scaling": "sqrt", "learning_rate": 2.0}, 16) == []

"""The UI's pure parts: the form generated from the schema, data shaping for the pages."""

from __future__ import annotations

import numpy as np
import pytest

from db.entities import LatestValue, MetricPoint
from tests.support import run_record
from training.run.metrics import KEY_METRICS
from training.schema import ConfigError, ExperimentConfig, visible_fields
from training.schema.algorithms import REGISTRY
from ui import form
from ui.shaping import (
    config_of,
    curves,
    differing_params,
    params_table,
    runs_frame,
    smooth,
    summary,
)


def test_specs_come_from_the_schema():
    specs = form.field_specs()
    tau = specs["optimizer.tau"]
    assert tau.kind == "int" and tau.minimum == 1 and tau.default == 10
    assert "Communication period" in tau.help and "range: >= 1" in tau.full_help
    beta = specs["optimizer.beta"]
    assert beta.optional and beta.minimum == -1 and not beta.exclusive_min
    assert specs["optimizer.order"].choices == ("simultaneous", "round_robin")
    assert specs["optimizer.algorithm"].choices == tuple(REGISTRY)
    assert specs["data.dataset"].choices[0] == "mnist5k"
    assert specs["model.hidden"].kind == "int_list"
    assert set(specs) >= {"name", "seed", "resources.workers", "training.epochs"}


def test_only_the_fields_an_algorithm_uses_are_shown():
    eam = visible_fields({"optimizer": {"algorithm": "eamsgd"}})
    sync = visible_fields({"optimizer": {"algorithm": "sync"}})
    assert {"optimizer.tau", "optimizer.beta", "optimizer.alpha"} <= eam
    assert "optimizer.tau" not in sync and "optimizer.momentum" in sync
    assert "model.hidden" in visible_fields({"model": {"name": "mlp"}})
    assert "model.hidden" not in visible_fields({"model": {"name": "lenet5"}})
    assert "data.path" in visible_fields({"data": {"dataset": "npz"}})


@pytest.mark.parametrize("name", list(REGISTRY))
def test_the_form_shows_the_optimizer_fields_the_registry_names(name):
    shown = visible_fields({"optimizer": {"algorithm": name}})
    optimizer = {p.removeprefix("optimizer.") for p in shown if p.startswith("optimizer.")}
    assert optimizer == set(REGISTRY[name].fields_with(None))  # and its inner optimizer's


def test_flat_and_nested_round_trip():
    config = ExperimentConfig().to_dict()
    flat = form.flat_values(config)
    assert flat["optimizer.algorithm"] == "eamsgd" and flat["optimizer.beta"] is None
    again = ExperimentConfig.model_validate(form.nested(flat)).to_dict()
    assert again == config
    assert form.errors_by_field(ConfigError(["optimizer.tau: too small (received: 0)"])) == {
        "optimizer.tau": ["too small (received: 0)"]
    }
    assert form.errors_by_field(None) == {}
    # A problem that names no field is kept whole, under no field.
    assert form.errors_by_field(ConfigError(["not a mapping"])) == {"": ["not a mapping"]}


def test_differing_params_and_table():
    a = run_record(
        "a",
        {"optimizer.algorithm": "eamsgd", "optimizer.tau": "10", "seed": "1"},
        {"center_accuracy": LatestValue(10, 0.9, 0.1, 0.95, 5.0)},
    )
    # Recorded as runs were before recording followed the registry: a tau that sync never uses.
    b = run_record("b", {"optimizer.algorithm": "sync", "optimizer.tau": "10", "seed": "1"})
    # Resolved: EAMSGD's blank inner optimizer, momentum and beta are Nesterov, 0.99 and 0.9;
    # sync's are plain SGD without momentum, and it has no beta. Its unused tau equals the
    # default, 10, as EAMSGD's: no difference.
    assert differing_params([a, b]) == [
        "optimizer.algorithm",
        "optimizer.beta",
        "optimizer.inner",
        "optimizer.momentum",
    ]
    frame = runs_frame([a, b])
    assert list(frame["optimizer.momentum"]) == [0.99, 0.0]
    assert list(params_table([a, b]).loc["optimizer.beta"]) == ["0.9", None]
    # An EASGD run that recorded asynchronous: false and tau 4, against the sync run that does
    # not use either: tau differs from sync's default, asynchronous does not.
    c = run_record(
        "c",
        {"optimizer.algorithm": "easgd", "optimizer.tau": "4", "optimizer.asynchronous": "false"},
    )
    assert "optimizer.asynchronous" not in differing_params([b, c])
    assert "optimizer.tau" in differing_params([b, c])
    assert list(params_table([b, c]).loc["optimizer.tau"]) == [None, "4"]
    assert list(frame.columns[:6]) == ["run", "name", "status", *KEY_METRICS]
    assert list(frame["run"]) == ["a", "b"] and frame["center_accuracy"][0] == 0.9
    assert np.isnan(frame["center_accuracy"][1]) and frame["duration (s)"][0] == 60.0


def _points(run_id, key, pairs):
    return [MetricPoint(run_id, key, s, float(s), v) for s, v in pairs]


def test_curves_against_bytes_sent_interpolate_sparse_metrics():
    run = run_record("a", {})
    hist = {
        ("a", "center_accuracy"): _points("a", "center_accuracy", [(0, 0.1), (10, 0.5)]),
        ("a", "bytes_sent"): _points("a", "bytes_sent", [(s, 100.0 * s) for s in range(11)]),
    }
    data = curves(hist, [run], "center_accuracy", "bytes_sent")
    assert list(data["x"]) == [0.0, 1000.0] and list(data["raw"]) == [0.1, 0.5]
    by_step = curves(hist, [run], "center_accuracy", "step")
    assert list(by_step["x"]) == [0.0, 10.0]
    assert curves(hist, [run], "train_loss").empty
    with pytest.raises(ValueError, match="x axis"):
        curves(hist, [run], "center_accuracy", "minutes")


def test_smoothing_is_debiased_and_bounded():
    v = np.array([1.0, 1.0, 1.0, 5.0])
    assert np.allclose(smooth(v, 0.0), v)
    s = smooth(v, 0.9)
    assert s[0] == pytest.approx(1.0) and 1.0 < s[-1] < 5.0


def test_summary_best_is_max_for_accuracy_min_for_loss():
    r = run_record(
        "a",
        {},
        {
            "center_accuracy": LatestValue(10, 0.9, 0.1, 0.95, 5.0),
            "train_loss": LatestValue(10, 0.3, 0.2, 2.0, 5.0),
        },
    )
    assert summary([r], "center_accuracy")["best"][0] == 0.95
    assert summary([r], "train_loss")["best"][0] == 0.2


def test_config_rebuilt_from_params():
    r = run_record(
        "a",
        {
            "optimizer.tau": "4",
            "model.hidden": "[32, 16]",
            "data.path": None,
            "optimizer.algorithm": "easgd",
            "workers": "2",
        },
    )
    cfg = config_of(r)
    assert cfg["optimizer"] == {"tau": 4, "algorithm": "easgd"}
    assert cfg["model"]["hidden"] == [32, 16] and "workers" not in cfg

"""The algorithm registry: complete, and what the schema, the recording and the factory read."""

from __future__ import annotations

import pytest

from training.run.metrics import RunInfo
from training.run.store_sink import StoreSink
from training.schema import (
    Algorithm,
    ConfigError,
    ExperimentConfig,
    InnerOptimizer,
    OptimizerConfig,
    fields_for,
    parse_config,
    recorded_params,
    warnings_for,
)
from training.schema.algorithms import EXCHANGES, INNER_FIELDS, REGISTRY


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_field_an_algorithm_uses_is_a_schema_field(name):
    spec = REGISTRY[name]
    assert spec.name == name
    assert set(spec.fields) <= set(OptimizerConfig.model_fields)
    assert set(spec.exchange.arguments.values()) <= set(spec.fields)
    assert set(spec.defaults) <= set(spec.fields)
    assert spec.exchange is EXCHANGES[spec.exchange.name]
    assert spec.description


def test_the_schema_accepts_exactly_the_registry_algorithms():
    assert [a.value for a in Algorithm] == list(REGISTRY)
    schema = ExperimentConfig.model_json_schema()
    assert schema["$defs"]["Algorithm"]["enum"] == list(REGISTRY)
    for name in REGISTRY:
        assert parse_config({"optimizer": {"algorithm": name}}).optimizer.spec is REGISTRY[name]
    with pytest.raises(ConfigError, match="optimizer.algorithm"):
        parse_config({"optimizer": {"algorithm": "adagrad"}})


def test_every_exchange_is_used():
    assert {s.exchange.name for s in REGISTRY.values()} == set(EXCHANGES)


@pytest.mark.parametrize(
    "name, inner, momentum",
    [
        ("sync", "sgd", 0.0),
        ("easgd", "sgd", 0.0),
        ("eamsgd", "nesterov", 0.99),
        ("downpour", "sgd", 0.0),
        ("mdownpour", "sgd", 0.99),  # the paper's delta for every momentum method
        ("mvadownpour", "sgd", 0.0),
        ("adownpour", "sgd", 0.0),
        ("localsgd", "sgd", 0.0),
        ("diloco", "adamw", 0.0),
        ("cdsgd", "sgd", 0.0),
        ("cdmsgd", "sgd", 0.95),
    ],
)
def test_the_algorithm_defaults_resolve_as_published(name, inner, momentum):
    opt = parse_config({"optimizer": {"algorithm": name}}).optimizer
    assert opt.resolved_inner is InnerOptimizer(inner)
    assert opt.resolved_momentum == momentum
    with_nesterov = parse_config({"optimizer": {"algorithm": name, "inner": "nesterov"}}).optimizer
    assert with_nesterov.resolved_momentum == (0.9 if momentum == 0.0 else momentum)


def test_fields_and_schedule_of_each_kind():
    compression = {"compression"}  # model-sized messages, and the center server's
    assert fields_for(Algorithm.SYNC) == set(INNER_FIELDS) | {"backup_workers"} | compression
    # The asynchronous forms' turn order is `order` too.
    timing = {"order", "asynchronous", "center_shards"} | compression
    overlap = {"overlap_steps"}  # synchronous rounds that run behind the steps
    assert fields_for("easgd") == set(INNER_FIELDS) | {"tau", "beta", "alpha"} | timing | overlap
    assert fields_for("adownpour") == set(INNER_FIELDS) | {"tau"} | timing
    assert fields_for("mvadownpour") == set(INNER_FIELDS) | {"tau", "average_rate"} | timing
    assert fields_for("mdownpour") == set(INNER_FIELDS) | {"tau"} | compression
    outer = {"outer_learning_rate", "outer_momentum"}
    adamw = {"adamw_weight_decay"}  # its default inner optimizer's
    assert fields_for("diloco") == (
        set(INNER_FIELDS) | {"tau"} | outer | compression | adamw | overlap
    )
    assert fields_for("localsgd") == set(INNER_FIELDS) | {"tau"} | compression | overlap
    assert [t for t in range(7) if REGISTRY["diloco"].communicates(t, 3)] == [2, 5]
    assert [t for t in range(7) if REGISTRY["easgd"].communicates(t, 3)] == [0, 3, 6]
    assert [t for t in range(7) if REGISTRY["downpour"].communicates(t, 3)] == [2, 5]
    assert all(REGISTRY["sync"].communicates(t, 3) for t in range(7))
    assert [s.name for s in REGISTRY.values() if not s.has_center] == ["sync", "cdsgd", "cdmsgd"]
    assert all(REGISTRY["cdsgd"].communicates(t, 3) for t in range(7))
    assert fields_for("cdmsgd") == set(INNER_FIELDS) | {"topology"} | compression
    assert REGISTRY["mvadownpour"].evaluated == "average"
    assert REGISTRY["sync"].evaluated == "weights"


def test_warnings_follow_the_fields_an_algorithm_uses():
    sync = parse_config({"optimizer": {"algorithm": "sync", "tau": 4}})
    assert any("ignored by algorithm 'sync'" in w for w in warnings_for(sync))
    far = {"algorithm": "downpour", "alpha": 5.0}
    assert warnings_for(parse_config({"optimizer": far})) == []
    assert warnings_for(parse_config({"optimizer": {**far, "algorithm": "easgd"}}))


def test_a_sync_run_records_no_tau():
    config = parse_config({"optimizer": {"algorithm": "sync"}}).to_dict()
    params = recorded_params(config)
    assert "optimizer.tau" not in params and "optimizer.beta" not in params
    assert "optimizer.average_rate" not in params
    assert params["optimizer.algorithm"] == "sync" and params["optimizer.learning_rate"] == 0.01
    assert params["data.batch_size"] == 32 and params["checkpoint.every"] == 200
    easgd = recorded_params(parse_config({"optimizer": {"algorithm": "easgd"}}).to_dict())
    assert easgd["optimizer.tau"] == 10 and "optimizer.beta" in easgd
    assert "optimizer.average_rate" not in easgd


def test_the_store_sink_records_only_the_fields_the_algorithm_uses(easgd_home, monkeypatch):
    from db.store import Store

    monkeypatch.delenv("EASGD_JOB_ID", raising=False)
    store = Store()
    store.init()
    sink = StoreSink(store, heartbeat_seconds=60)
    config = parse_config({"optimizer": {"algorithm": "sync", "tau": 3}}).to_dict()
    sink.start(RunInfo("r1", str(easgd_home), None, config, 2, 1, "shell"))
    sink.finish("finished")
    params = Store().get_run("r1").params
    assert "optimizer.tau" not in params
    assert params["optimizer.algorithm"] == "sync" and str(params["workers"]) == "2"

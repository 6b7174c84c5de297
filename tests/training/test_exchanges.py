"""The exchanges' declarations and argument checks, read without TensorFlow as the schema reads
them; their equations are held to the references under horovodrun (test_equations.py and
its siblings)."""

from __future__ import annotations

import pytest

from training.exchanges.consensus import Consensus, MConsensus
from training.exchanges.diloco import DiLoCo
from training.exchanges.downpour import MDownpour, MVADownpour
from training.exchanges.elastic import Elastic
from training.exchanges.sync import Sync
from training.exchanges.tree import Tree
from training.schema import OptimizerConfig, parse_config
from training.schema.algorithms import ASYNCHRONOUS_FORMS, EXCHANGES, REGISTRY


@pytest.mark.parametrize(
    "exchange, arguments, phrase",
    [
        (Elastic, {"beta": 0.5, "alpha": 0.1}, "Give beta or alpha, not both"),
        (Elastic, {"beta": 2.0}, "beta must be in [-1, 1] and not 0. Received: beta=2.0"),
        (Elastic, {"alpha": 0}, "alpha must not be 0"),
        (Elastic, {"order": "random"}, "order must be one of ('simultaneous', 'round_robin')"),
        (Elastic, {"exchange_precision": "int8"}, "exchange_precision (now compression) must"),
        (Elastic, {"compression": "int3"}, "compression must be one of ('none', 'float16', "),
        (Elastic, {"compression": "int8", "exchange_precision": "float16"}, "contradicts"),
        (Elastic, {"center_shards": 0}, "center_shards must be an integer from 1 to 1024"),
        (Elastic, {"overlap_steps": 3}, "overlap_steps must be an integer from 0 to tau - 1"),
        (DiLoCo, {"overlap_steps": -1}, "overlap_steps must be an integer from 0 to tau - 1"),
        (DiLoCo, {"overlap_steps": 1.5}, "Received: overlap_steps=1.5, tau=3"),
        (DiLoCo, {"outer_momentum": 1.0}, "outer_momentum must be in [0, 1). Received: 1.0"),
        (DiLoCo, {"outer_learning_rate": 0}, "outer_learning_rate must be in (0, 10]. Received"),
        (MDownpour, {"center_momentum": 1.0}, "center_momentum must be in [0, 1). Received: 1.0"),
        (MVADownpour, {"average_rate": 0.0}, "average_rate must be in (0, 1]. Received: 0.0"),
        (MConsensus, {"consensus_momentum": -0.1}, "consensus_momentum must be in [0, 1)"),
        (Consensus, {"topology": "star"}, "topology: should be 'ring', 'full' or a square"),
        (Tree, {"alpha": 0.1}, "The tree exchange takes beta (alpha = beta / group size)"),
        (Tree, {"group_size": 0}, "group_size must be an integer >= 1. Received: group_size=0"),
        (Tree, {"tau_root": 2.5}, "tau_root must be an integer >= 1. Received: tau_root=2.5"),
        (Tree, {"beta_root": 1.5}, "beta_root must be in (0, 1]. Received: beta_root=1.5"),
        (Sync, {"backup_workers": -1}, "backup_workers must be an integer >= 0. Received: -1"),
    ],
)
def test_an_exchange_refuses_bad_arguments_in_one_line(exchange, arguments, phrase):
    with pytest.raises(ValueError) as caught:
        exchange(tau=3, **arguments)
    assert phrase in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "optimizer, phrase",
    [
        ({"algorithm": "sync", "overlap_steps": 1}, "algorithm 'sync' cannot overlap its"),
        ({"algorithm": "downpour", "overlap_steps": 1}, "choose one of easgd, eamsgd, localsgd"),
        ({"asynchronous": True, "overlap_steps": 1}, "'eamsgd' with asynchronous: true cannot"),
        ({"order": "round_robin", "overlap_steps": 1}, "the round-robin order replays"),
        ({"tau": 4, "overlap_steps": 4}, "4 steps would reach the next round (tau is 4)"),
        ({"overlap_steps": -2}, "greater than or equal to 0"),
        ({"overlap_steps": 10**9}, "less than or equal to 100000"),
        ({"overlap_steps": "soon"}, "a valid integer"),
        ({"overlap_steps": float("inf")}, "a finite number"),
        ({"overlap_steps": [1]}, "a valid integer"),
        ({"overlap_steps": True}, "overlap_steps: "),
        ({"tau": 1, "overlap_steps": 1}, "choose overlap_steps from 0 to 0, or tau of at least 2"),
    ],
)
def test_overlap_steps_are_refused_where_no_round_can_run_behind(optimizer, phrase):
    from training.schema import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config({"optimizer": optimizer})
    assert len(caught.value.problems) == 1, caught.value.problems
    line = caught.value.problems[0]
    assert line.startswith("optimizer.overlap_steps: ") and phrase in line, line
    assert "\n" not in line


def test_overlap_steps_where_a_round_can_run_behind():
    for name in ("easgd", "eamsgd", "localsgd", "diloco"):
        opt = parse_config({"optimizer": {"algorithm": name, "tau": 5, "overlap_steps": 4}})
        assert opt.optimizer.exchange_arguments()["overlap_steps"] == 4
    # Local SGD and DiLoCo take no order: the round-robin refusal is elastic averaging's.
    for name in ("localsgd", "diloco"):
        opt = {"algorithm": name, "order": "round_robin", "overlap_steps": 1}
        assert parse_config({"optimizer": opt}).optimizer.overlap_steps == 1
    with pytest.raises(ValueError, match="Received: overlap_steps=True"):
        Elastic(tau=3, overlap_steps=True)
    assert Sync(tau=1, overlap_steps=1).overlap_steps == 1  # the optimizer refuses it by kind
    assert {n for n, s in REGISTRY.items() if s.exchange.overlaps} == {
        "easgd",
        "eamsgd",
        "localsgd",
        "diloco",
    }


def test_backup_workers_given_to_another_exchange_are_refused():
    Sync.refuse_elsewhere("elastic", {"backup_workers": 0})
    with pytest.raises(ValueError, match="backup_workers belong to synchronous SGD"):
        Sync.refuse_elsewhere("elastic", {"backup_workers": 1})


def test_a_mixing_matrix_of_another_size_is_refused_once_the_workers_are_known():
    consensus = Consensus(topology=[[0.5, 0.5], [0.5, 0.5]])
    consensus.resolve(2)
    with pytest.raises(ValueError, match=r"optimizer.topology: a 2 x 2 mixing matrix needs 2"):
        Consensus(topology=[[0.5, 0.5], [0.5, 0.5]]).resolve(3)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_algorithm_makes_its_exchange_from_its_configuration(name):
    """What the optimizer factory does, without Horovod: the configuration's arguments make the
    exchange, and what a saved model keeps of it makes the same exchange again."""
    spec = REGISTRY[name]
    arguments = parse_config({"optimizer": {"algorithm": name, "tau": 4}}).optimizer
    exchange = spec.exchange(**arguments.exchange_arguments())
    exchange.resolve(4)
    saved = exchange.get_config()
    assert set(saved) == set(spec.exchange.arguments) - {"tau"}
    if saved.get("alpha") is not None:
        saved.pop("beta", None)  # as `from_config` does: the alpha was resolved from it
    again = spec.exchange(tau=4, **saved)
    again.resolve(4)
    assert again.get_config() == exchange.get_config()
    if "alpha" in saved:
        assert exchange.alpha == pytest.approx(0.9 / 4)


def test_the_schema_takes_each_exchange_field_as_its_module_declares_it():
    fields = OptimizerConfig.model_fields
    for exchange in EXCHANGES.values():
        for name, (_, declared) in exchange.fields.items():
            assert fields[name].default == declared.default, (exchange.name, name)
            assert fields[name].description == declared.description, (exchange.name, name)
            assert name in exchange.arguments.values(), (exchange.name, name)


def test_the_center_server_forms():
    forms = {name: e.server for name, e in EXCHANGES.items() if e.server is not None}
    assert forms == {
        "sync": ("backup", None),  # with backup workers
        "elastic": ("elastic", None),
        "downpour": ("downpour", None),
        "mvadownpour": ("downpour", "moving"),
        "adownpour": ("downpour", "time"),
    }
    assert set(ASYNCHRONOUS_FORMS) == set(forms) - {"sync"}
    assert Sync.uses_server({"backup_workers": 1}) and not Sync.uses_server({})
    assert Elastic.uses_server({"asynchronous": True}) and not Elastic.uses_server({})
    served = parse_config({"optimizer": {"algorithm": "sync", "backup_workers": 1}}).optimizer
    assert served.served and not parse_config({"optimizer": {"algorithm": "sync"}}).optimizer.served
    # Only the elastic server measures the workers' spread.
    assert [n for n, e in EXCHANGES.items() if e.served_spread] == ["elastic"]


def test_every_exchange_has_a_reference():
    """A new exchange's equations are transcribed before it is trusted: in reference.py, where
    test_equations.py then checks every algorithm that uses it, as configured."""
    from tests.training import reference

    elsewhere = {"tree", "consensus", "mconsensus"}  # reference_tree.py, reference_consensus.py
    assert set(EXCHANGES) == set(reference.TRANSCRIBED) | elsewhere


def test_the_older_exchange_precision_folds_into_compression():
    """float16 is the compression float16; float32, the older default a saved configuration
    may hold, asks nothing; a contradiction is refused."""
    assert Elastic(exchange_precision="float16").compression == "float16"
    assert Elastic(compression="int8", exchange_precision="float32").compression == "int8"
    assert Elastic(exchange_precision="float32").compression == "none"
    with pytest.raises(ValueError, match="contradicts compression 'int4'"):
        Elastic(compression="int4", exchange_precision="float16")

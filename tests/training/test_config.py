"""The configuration schema: defaults, one clear message per wrong field, overrides, warnings."""

from __future__ import annotations

import sys

import pytest

from training.config import (
    Algorithm,
    ConfigError,
    apply_overrides,
    fields_for,
    flatten,
    parse_config,
    resolve,
    stability_bound,
    warnings_for,
)


def test_defaults_are_valid_and_complete():
    cfg = parse_config({})
    assert cfg.optimizer.algorithm is Algorithm.EAMSGD
    assert cfg.optimizer.resolved_momentum == 0.99
    assert cfg.optimizer.resolved_alpha(2) == pytest.approx(0.45)
    assert cfg.data.dataset == "mnist5k" and cfg.model.name == "lenet5"


@pytest.mark.parametrize(
    "data, field, phrase, received",
    [
        ({"optimizer": {"tau": 0}}, "optimizer.tau", "greater than or equal to 1", "0"),
        ({"optimizer": {"beta": 1.5}}, "optimizer.beta", "less than or equal to 1", "1.5"),
        ({"optimizer": {"beta": 0}}, "optimizer.beta", "greater than 0", "0"),
        (
            {"optimizer": {"learning_rate": -0.1}},
            "optimizer.learning_rate",
            "greater than 0",
            "-0.1",
        ),
        ({"optimizer": {"tau": "often"}}, "optimizer.tau", "valid integer", "'often'"),
        (
            {"optimizer": {"algorithm": "adagrad"}},
            "optimizer.algorithm",
            "input should be",
            "'adagrad'",
        ),
        ({"optimizer": {"taus": 3}}, "optimizer.taus", "unknown field; allowed:", "3"),
        ({"trainig": {}}, "trainig", "unknown field; allowed:", "{}"),
        ({"data": {"batch_size": 0}}, "data.batch_size", "greater than or equal to 1", "0"),
        (
            {"resources": {"hosts": "a b;rm -rf /"}},
            "resources.hosts",
            "should match pattern",
            "rm -rf",
        ),
    ],
)
def test_each_bad_value_names_field_reason_and_value(data, field, phrase, received):
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert len(exc.value.problems) == 1
    line = exc.value.problems[0]
    assert line.startswith(field + ":")
    assert phrase in line
    assert received in line


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        parse_config({"optimizer": {"tau": 0, "learning_rate": -1}, "bogus": 1})
    fields = sorted(p.split(":")[0] for p in exc.value.problems)
    assert fields == ["bogus", "optimizer.learning_rate", "optimizer.tau"]


def test_alpha_and_beta_together_refused():
    with pytest.raises(ConfigError, match="either alpha or beta"):
        parse_config({"optimizer": {"alpha": 0.1, "beta": 0.5}})


def test_missing_files(tmp_path):
    with pytest.raises(ConfigError, match=r"--config: no such file"):
        resolve(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"data.path: no such file"):
        parse_config({"data": {"dataset": "npz", "path": str(tmp_path / "x.npz")}})
    with pytest.raises(ConfigError, match=r"data.path: required"):
        parse_config({"data": {"dataset": "npz"}})


def test_bad_yaml_says_where(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("optimizer:\n  tau: [1, 2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line"):
        resolve(f)


def test_overrides_are_typed_and_checked(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optimizer:\n  tau: 4\n")
    cfg = resolve(f, ["optimizer.tau=16", "optimizer.algorithm=easgd", "model.hidden=[8, 4]"])
    assert cfg.optimizer.tau == 16 and cfg.model.hidden == [8, 4]
    with pytest.raises(ConfigError, match=r"expected key.path=value"):
        apply_overrides({}, ["optimizer.tau"])
    with pytest.raises(ConfigError, match=r"optimizer.tau: .*received: -2"):
        resolve(f, ["optimizer.tau=-2"])


def test_stability_warning_not_refusal():
    eta = 0.1
    bound = stability_bound(eta)
    assert bound == pytest.approx((4 - 2 * eta) / (4 - eta))
    inside = parse_config({"optimizer": {"algorithm": "easgd", "learning_rate": eta, "alpha": 0.5}})
    outside = parse_config(
        {"optimizer": {"algorithm": "easgd", "learning_rate": eta, "alpha": 1.5}}
    )
    assert not [w for w in warnings_for(inside) if "stability" in w]
    assert any("stability region" in w for w in warnings_for(outside))


def test_flatten_gives_dotted_parameter_names():
    flat = flatten(parse_config({}).to_dict())
    assert flat["optimizer.algorithm"] == "eamsgd"
    assert flat["resources.workers"] == 2


def test_fields_for_each_algorithm():
    assert "tau" not in fields_for(Algorithm.SYNC)
    assert {"tau", "beta", "alpha"} <= fields_for(Algorithm.EAMSGD)
    assert "average_rate" in fields_for(Algorithm.MVADOWNPOUR)
    assert "alpha" not in fields_for(Algorithm.DOWNPOUR)


def test_schema_imports_neither_tensorflow_nor_horovod():
    import subprocess

    code = (
        "import sys, training.config; "
        "print(any(m.startswith(('tensorflow', 'horovod', 'keras')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The sweep file (service/sweeps/spec.py): W&B's keys, checked whole by the training schema."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from service.sweeps.sampling import grid_params
from service.sweeps.spec import MAX_RUN_CAP, SweepError, validate_sweep
from tests.support import ROOT
from training.schema import parse_config

EXAMPLE = ROOT / "configs" / "sweep-digits-random.yaml"
BASE = yaml.safe_load((ROOT / "configs" / "mlp-digits-easgd.yaml").read_text())


def _sweep(**changes) -> dict:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.pop("base")
    for key, value in changes.items():
        data[key] = value
    return data


def _refused(data, base=BASE, **kw) -> str:
    with pytest.raises(SweepError) as err:
        validate_sweep(data, base, **kw)
    assert len(err.value.problems) == 1, err.value.problems
    line = err.value.problems[0]
    assert "\n" not in line
    return line


def test_the_example_sweep_is_valid_and_keeps_its_seed():
    valid = validate_sweep(_sweep(), BASE)
    assert [(d.path, d.kind) for d in valid.dimensions] == [
        ("optimizer.learning_rate", "log_uniform_values"),
        ("optimizer.tau", "categorical"),
    ]
    assert (valid.run_cap, valid.seed, valid.spec.concurrency) == (8, 7, 2)
    assert valid.spec.early_terminate.brackets()[:4] == [3, 9, 27, 81]
    stored = valid.stored_spec()
    assert "base" not in stored and stored["run_cap"] == 8
    assert validate_sweep(stored, BASE).dimensions == valid.dimensions  # parses again the same


def test_an_unknown_parameter_path_is_refused_naming_it_and_its_value():
    line = _refused(_sweep(parameters={"optimizer.learnign_rate": {"values": [0.1, 0.2]}}))
    assert line.startswith("parameters.optimizer.learnign_rate: the value 0.1 is refused")
    assert "unknown field" in line and "learning_rate" in line  # the allowed names follow


def test_a_value_the_schema_refuses_is_refused_with_the_schemas_reason():
    line = _refused(_sweep(parameters={"optimizer.tau": {"min": 1, "max": 10**9}}))
    assert line == (
        "parameters.optimizer.tau: the value 1000000000 is refused: optimizer.tau: input should "
        "be less than or equal to 100000 (received: 1000000000)"
    )
    fraction = _refused(_sweep(parameters={"optimizer.tau": {"min": 1.0, "max": 10.0}}))
    assert "optimizer.tau: input should be a valid integer" in fraction
    section = _refused(_sweep(parameters={"seed.x": {"values": [1]}}))
    assert section.endswith("seed is not a section of the configuration")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"run_cap": 10**12}, f"run_cap: input should be less than or equal to {MAX_RUN_CAP}"),
        ({"run_cap": True}, "run_cap: a number, not true or false"),
        ({"run_cap": math.inf}, "run_cap: input should be a finite number"),
        ({"run_cap": "eight"}, "run_cap: input should be a valid integer"),
        ({"concurrency": 0}, "concurrency: input should be greater than or equal to 1"),
        (
            {"method": "bayes"},
            "method: bayes (W&B's Gaussian process search) is not offered; use tpe",
        ),
        ({"method": "hill"}, "method: input should be 'grid', 'random' or 'tpe'"),
        ({"base": [1, 2]}, "base: the base configuration's file name, or the configuration itself"),
        (
            {"parameters": {"optimizer": {"parameters": {"tau": {"values": [1, 2]}}}}},
            "parameters.optimizer: W&B's nested parameters are written here as dotted paths, such "
            "as optimizer.tau",
        ),
        ({"metric": {"name": "center_acc", "goal": "maximize"}}, "metric.name: input should be"),
        ({"program": "train.py"}, "program: W&B's key is not used here"),
        ({"colour": "red"}, "colour: unknown key"),
        ({"parameters": {}}, "parameters: dictionary should have at least 1 item"),
        ({"parameters": {"a..b": {"value": 1}}}, "a dotted path of the configuration"),
        ({"parameters": {"x" * 300: {"value": 1}}}, "a dotted path of the configuration"),
        (
            {"parameters": {"optimizer.learning_rate": {"min": 0.1, "max": math.inf}}},
            "optimizer.learning_rate.max: a finite number (received: Infinity)",
        ),
        (
            {"parameters": {"optimizer.learning_rate": {"min": 0.1, "max": 10**400}}},
            "a finite number",
        ),
        (
            {"parameters": {"optimizer.learning_rate": {"min": 0.5, "max": 0.1}}},
            "min must be less than max",
        ),
        (
            {"parameters": {"optimizer.learning_rate": {"value": 1, "values": [1]}}},
            "give one of value, values, or min and max (received: value and values)",
        ),
        (
            {"parameters": {"optimizer.learning_rate": {"values": "0.1"}}},
            "values: a list of the values to try",
        ),
        (
            {"parameters": {"optimizer.learning_rate": {"values": [[[0.1]]]}}},
            "a number, text, true, false or null, or a list of them",
        ),
        (
            {"parameters": {"optimizer.learning_rate": {"values": ["a\x1b[2J"]}}},
            "is not printable text",
        ),
        (
            {"parameters": {"optimizer.learning_rate": {"distribution": "uniform", "min": 0.1}}},
            "max: required by distribution uniform",
        ),
        (
            {"parameters": {"optimizer.learning_rate": {"distribution": "normal", "min": 0.1}}},
            "distribution: input should be",
        ),
        (
            {
                "parameters": {
                    "optimizer.learning_rate": {
                        "min": 0,
                        "max": 0.1,
                        "distribution": "log_uniform_values",
                    }
                }
            },
            "log_uniform_values takes positive bounds",
        ),
        (
            {
                "parameters": {
                    "optimizer.learning_rate": {"min": 1, "max": 800, "distribution": "log_uniform"}
                }
            },
            "log_uniform takes natural logarithms",
        ),
        ({"early_terminate": {"type": "hyperband"}}, "hyperband needs min_iter, or max_iter and s"),
        ({"early_terminate": {"type": "median", "eta": 2}}, "eta: a key of type hyperband"),
        (
            {"early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 1}},
            "eta: input should be greater than 1",
        ),
        ({"seed": -1}, "seed: input should be greater than or equal to 0"),
    ],
)
def test_hostile_or_wrong_keys_get_one_clear_line(changes, expected):
    assert expected in _refused(_sweep(**changes))


def test_deep_nesting_anywhere_is_refused_without_a_recursion_error():
    deep: list = [1]
    for _ in range(100000):
        deep = [deep]
    line = _refused(_sweep(parameters={"optimizer.learning_rate": {"values": deep}}))
    assert "a number, text, true, false or null" in line
    nested_base: dict = {}
    node = nested_base
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    assert "nested deeper than" in _refused(_sweep(), base=nested_base)
    assert _refused([1, 2]).startswith("sweep: expected a mapping")


def test_grid_takes_listed_values_and_its_size_bounds_the_run_cap():
    grid = _sweep(method="grid", run_cap=None, parameters={"optimizer.tau": {"values": [1, 2, 4]}})
    assert validate_sweep(grid, BASE).run_cap == 3
    assert validate_sweep({**grid, "run_cap": 2}, BASE).run_cap == 2
    ranged = {**grid, "parameters": {"optimizer.learning_rate": {"min": 0.01, "max": 0.1}}}
    assert "grid tries listed values, or every value of an int_uniform" in _refused(ranged)
    paths = ("seed", "data.split_seed", "data.batch_size", "optimizer.tau")
    many = {path: {"values": list(range(1, 11))} for path in paths}
    assert "the grid has 10,000 points" in _refused({**grid, "parameters": many})
    assert "run_cap: required for method random" in _refused(_sweep(run_cap=None))


def test_grid_expands_int_uniform_and_q_uniform_ranges_into_their_values():
    grid = _sweep(
        method="grid",
        run_cap=None,
        parameters={
            "optimizer.tau": {"min": 1, "max": 3},
            "optimizer.beta": {"distribution": "q_uniform", "min": 0.25, "max": 0.8, "q": 0.2},
        },
    )
    valid = validate_sweep(grid, BASE)
    assert valid.run_cap == 9
    points = [grid_params(valid.dimensions, n) for n in range(9)]
    assert [(p["optimizer.beta"], p["optimizer.tau"]) for p in points] == [
        (b, t) for b in (0.4, 0.6, 0.8) for t in (1, 2, 3)
    ]
    wide = {**grid, "parameters": {"optimizer.tau": {"min": 1, "max": 5000}}}
    line = _refused(wide)
    assert line.startswith("parameters.optimizer.tau: the grid would try 5,000 values of it")
    assert "(received: int_uniform from 1 to 5000)" in line


def test_the_base_is_the_schemas_too_and_a_path_base_is_the_command_lines():
    line = _refused(_sweep(), base={"optimizer": {"tau": 0}})
    assert line.startswith("base: optimizer.tau: input should be greater than or equal to 1")
    with pytest.raises(SweepError, match="names a file, which only the command line reads"):
        validate_sweep({**_sweep(), "base": "mlp-digits-easgd.yaml"})
    inline = validate_sweep({**_sweep(), "base": BASE})
    complete = parse_config(BASE).to_dict()
    assert inline.base == complete and complete != BASE  # every default kept with the sweep
    assert validate_sweep(_sweep(), yaml.safe_dump(BASE)).base == complete  # YAML text


def test_the_goal_is_minimize_unless_given_as_in_wandb():
    valid = validate_sweep(_sweep(metric={"name": "center_loss"}), BASE)
    assert valid.spec.metric.goal == "minimize"


def test_what_the_service_could_never_place_is_refused_by_its_own_rule():
    def two_slots(cfg):
        if cfg.resources.workers > 2:
            return f"resources.workers: needs {cfg.resources.workers} slots; this service has 2"
        return None

    wide = _sweep(parameters={"resources.workers": {"values": [1, 4]}})
    assert "needs 4 slots; this service has 2" in _refused(wide, placement=two_slots)
    warned = validate_sweep(_sweep(), BASE, placement=two_slots, slots=2)
    assert warned.warnings == [
        "concurrency: 2 trials of 2 workers need 4 slots; the service has 2, so fewer trials run "
        "at once"
    ]


def test_log_uniform_follows_wb_and_says_what_it_samples():
    exponents = {"distribution": "log_uniform", "min": math.log(0.001), "max": math.log(0.1)}
    valid = validate_sweep(_sweep(parameters={"optimizer.learning_rate": exponents}), BASE)
    assert valid.warnings and "samples 0.001 to 0.1" in valid.warnings[0]


def test_a_sweep_file_that_is_not_utf8_is_refused_by_the_command_line(tmp_path: Path, capsys):
    from service.cli import main

    bad = tmp_path / "sweep.yaml"
    bad.write_bytes(b"method: random\nname: \xff\xfe\n")
    assert main(["sweep", "create", str(bad), "--api", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not UTF-8 text (byte 0xff" in err
    missing = main(["sweep", "create", str(tmp_path / "none.yaml"), "--api", "http://127.0.0.1:9"])
    assert missing == 2 and "no such file" in capsys.readouterr().err
    (tmp_path / "s.yaml").write_text("method: random\nbase: nothere.yaml\n")
    assert main(["sweep", "create", str(tmp_path / "s.yaml"), "--api", "http://127.0.0.1:9"]) == 2
    assert "base (relative to the sweep file): no such file" in capsys.readouterr().err
    (tmp_path / "t.yaml").write_text("method: [\n")
    assert main(["sweep", "create", str(tmp_path / "t.yaml"), "--api", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err.startswith("easgd: invalid sweep: ")


def test_a_fractional_q_for_an_integer_field_is_refused_up_front():
    halves = {"optimizer.tau": {"distribution": "q_uniform", "min": 1, "max": 9, "q": 0.5}}
    line = _refused(_sweep(parameters=halves))
    assert line.startswith("parameters.optimizer.tau: the value 1.5 is refused")


def test_a_sweep_name_too_long_for_its_trials_names_is_refused():
    line = _refused(_sweep(name="n" * 195))  # run_cap 8: "-trial-7" makes 203 characters
    assert line.startswith("name: its trials' jobs are named <name>-trial-<n>, at most 200")
    assert "give a name of at most 192 characters for 8 trials" in line
    assert validate_sweep(_sweep(name="n" * 192), BASE).spec.name == "n" * 192

"""Where trials' parameters come from (service/sweeps/sampling.py): grid, seeded random draws,
and Optuna's TPE in its own SQLite file."""

from __future__ import annotations

import math
import sqlite3
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest

from db.entities import TrialState
from service.sweeps.sampling import TpeSearch, grid_params, random_params
from service.sweeps.space import Dimension
from service.sweeps.spec import dimensions, parse_sweep_data

DIMS = [
    Dimension("data.batch_size", "int_uniform", 8, 64),
    Dimension("optimizer.learning_rate", "log_uniform_values", 1e-4, 1e-1),
    Dimension("optimizer.momentum", "q_uniform", 0.05, 0.95, 0.1),
    Dimension("optimizer.tau", "categorical", choices=(1, 2, 4)),
    Dimension("model.hidden", "constant", choices=([32, 16],)),
    Dimension("optimizer.beta", "uniform", 0.5, 0.9),
]


def test_random_draws_are_a_function_of_the_seed_and_the_trial_number():
    a = [random_params(DIMS, 7, n) for n in range(50)]
    assert a == [random_params(DIMS, 7, n) for n in range(50)]
    assert [random_params(DIMS, 7, n) for n in (3, 1)] == [a[3], a[1]]  # any order
    assert a != [random_params(DIMS, 8, n) for n in range(50)]
    assert len({p["optimizer.learning_rate"] for p in a}) == 50


def test_random_draws_stay_in_their_distribution():
    draws = [random_params(DIMS, 1, n) for n in range(400)]
    sizes = [d["data.batch_size"] for d in draws]
    assert all(isinstance(s, int) and 8 <= s <= 64 for s in sizes) and {8, 64} <= set(sizes)
    rates = [d["optimizer.learning_rate"] for d in draws]
    assert all(1e-4 <= r <= 1e-1 for r in rates)
    # Log-uniform: as many draws in each decade, the median near the geometric middle.
    decades = [sum(10**-k <= r < 10 ** (-k + 1) for r in rates) for k in (4, 3, 2)]
    assert min(decades) > 90, decades
    assert 10**-2.8 < statistics.median(rates) < 10**-2.2
    momenta = {d["optimizer.momentum"] for d in draws}
    assert momenta <= {round(0.1 * k, 1) for k in range(1, 10)} and len(momenta) == 9
    assert {d["optimizer.tau"] for d in draws} == {1, 2, 4}
    assert all(d["model.hidden"] == [32, 16] for d in draws)
    assert all(0.5 <= d["optimizer.beta"] <= 0.9 for d in draws)


def test_the_grid_is_every_combination_once_then_ends():
    spec = parse_sweep_data(
        {
            "method": "grid",
            "metric": {"name": "center_accuracy", "goal": "maximize"},
            "parameters": {
                "optimizer.tau": {"values": [1, 2, 4]},
                "optimizer.algorithm": {"values": ["easgd", "sync"]},
                "seed": {"value": 3},
            },
        }
    )
    dims = dimensions(spec)
    points = [grid_params(dims, n) for n in range(6)]
    assert {(p["optimizer.algorithm"], p["optimizer.tau"]) for p in points} == {
        (a, t) for a in ("easgd", "sync") for t in (1, 2, 4)
    }
    assert all(p["seed"] == 3 for p in points)
    assert grid_params(dims, 6) is None


def _objective(params: dict) -> float:
    """A smooth bowl with its best at learning rate 0.01 and tau 4: what TPE should find."""
    return -((math.log10(params["optimizer.learning_rate"]) + 2) ** 2) - (
        0 if params["optimizer.tau"] == 4 else 0.5
    )


def test_tpe_asks_and_is_told_through_its_own_file(tmp_path):
    dims = [DIMS[1], DIMS[3]]
    path = tmp_path / "sweeps" / "sweep-1" / "optuna.db"
    tpe = TpeSearch(path, "sweep-1", "maximize", seed=5, run_cap=30, dims=dims)
    found = []
    for n in range(30):
        number, params = tpe.ask(n)
        assert number == n and 1e-4 <= params["optimizer.learning_rate"] <= 1e-1
        assert params["optimizer.tau"] in (1, 2, 4)
        found.append((_objective(params), params))
        tpe.tell(n, number, params, "succeeded", _objective(params))
    late = sorted(v for v, _ in found[20:])
    early = sorted(v for v, _ in found[:10])
    assert statistics.median(late) > statistics.median(early)  # it learnt where to look
    # Optuna's tables live in that file alone, with its own Alembic version.
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"studies", "trials", "alembic_version"} <= tables


def test_tpe_is_reproducible_and_survives_a_restart(tmp_path):
    dims = [DIMS[1], DIMS[3]]

    def run(where, restart_at=None):
        tpe = TpeSearch(where, "s", "maximize", seed=11, run_cap=12, dims=dims)
        out = []
        for n in range(12):
            if n == restart_at:
                tpe = TpeSearch(where, "s", "maximize", seed=11, run_cap=12, dims=dims)
            number, params = tpe.ask(n)
            tpe.tell(n, number, params, "succeeded", _objective(params))
            out.append(params)
        return out

    once = run(tmp_path / "a.db")
    assert once == run(tmp_path / "b.db")
    assert once == run(tmp_path / "c.db", restart_at=6)


def _trial(number, optuna_number, params, state="running", value=None):
    return SimpleNamespace(
        number=number,
        optuna_number=optuna_number,
        params=params,
        state=TrialState(state),
        value=value,
    )


def _states(path: Path) -> list[tuple]:
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{path}")
    return [(t.user_attrs.get("easgd_trial"), t.state.name, t.value) for t in study.trials]


def test_tpe_fails_trials_it_asked_for_that_no_trial_holds(tmp_path):
    tpe = TpeSearch(tmp_path / "o.db", "s", "minimize", seed=1, run_cap=10, dims=DIMS[:2])
    kept, kept_params = tpe.ask(0)
    lost, _ = tpe.ask(1)
    tpe.reconcile([_trial(0, kept, kept_params)])
    assert _states(tmp_path / "o.db") == [(0, "RUNNING", None), (1, "FAIL", None)]
    tpe.tell(0, kept, kept_params, "stopped_early")
    tpe.tell(0, kept, kept_params, "succeeded", 0.5)  # a second tell, after a restart: harmless
    assert _states(tmp_path / "o.db") == [(0, "PRUNED", None), (1, "FAIL", None)]


def test_a_lost_study_is_rebuilt_from_our_trials_and_never_told_a_stranger(tmp_path):
    dims = [DIMS[1], DIMS[3]]
    path = tmp_path / "o.db"
    tpe = TpeSearch(path, "s", "maximize", seed=2, run_cap=10, dims=dims)
    ours = []
    for n in range(3):
        number, params = tpe.ask(n)
        ours.append(_trial(n, number, params))
    ended = _trial(0, ours[0].optuna_number, ours[0].params, "succeeded", 0.7)
    path.unlink()  # the study is lost while trial 0 has ended (told or not) and 1, 2 run
    tpe = TpeSearch(path, "s", "maximize", seed=2, run_cap=10, dims=dims)
    tpe.reconcile([ended, ours[1], ours[2]])
    assert _states(path) == [(0, "COMPLETE", 0.7)]
    number, params = tpe.ask(3)  # Optuna's number 1, which trial 1 of ours also holds
    assert number == ours[1].optuna_number
    t1 = ours[1]
    tpe.tell(1, t1.optuna_number, t1.params, "succeeded", 0.2)
    tpe.tell(3, number, params, "succeeded", 0.9)
    assert _states(path) == [(0, "COMPLETE", 0.7), (3, "COMPLETE", 0.9), (1, "COMPLETE", 0.2)]
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{path}")
    by_ours = {t.user_attrs["easgd_trial"]: t.params for t in study.trials}
    assert by_ours[1]["optimizer.learning_rate"] == t1.params["optimizer.learning_rate"]
    assert by_ours[3]["optimizer.learning_rate"] == params["optimizer.learning_rate"]


@pytest.mark.parametrize("outcome", ["failed", "cancelled", "succeeded"])
def test_tpe_tells_failures_and_missing_values_as_failed(tmp_path, outcome):
    import optuna

    tpe = TpeSearch(tmp_path / "o.db", "s", "minimize", seed=1, run_cap=10, dims=DIMS[:2])
    number, params = tpe.ask(0)
    tpe.tell(0, number, params, outcome, None)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert study.trials[0].state is optuna.trial.TrialState.FAIL


def test_tpe_rounds_q_uniform_as_random_draws_do(tmp_path):
    dims = [DIMS[2]]
    tpe = TpeSearch(tmp_path / "o.db", "s", "minimize", seed=1, run_cap=10, dims=dims)
    drawn = []
    for n in range(10):
        number, params = tpe.ask(n)
        drawn.append(params["optimizer.momentum"])
        tpe.tell(n, number, params, "succeeded", params["optimizer.momentum"])
    assert all(v == round(v, 1) and 0.1 <= v <= 0.9 for v in drawn), drawn

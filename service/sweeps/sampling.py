"""Where each trial's parameters come from: the grid's next point, a seeded random draw, or
Optuna's TPE through its ask/tell interface.

Random draws are a function of the sweep's seed and the trial's number alone, so a sweep
repeats exactly, and a service that restarts halfway draws what it would have drawn. TPE asks
with a sampler seeded the same way; what it proposes also depends on the results told before
the ask, which is what makes it TPE.

Optuna keeps its study in its own SQLite file under the data directory (one per sweep), never
in the run store: both use Alembic, and one `alembic_version` table cannot serve two schemas.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from service.sweeps.spec import Dimension, grid_points, q_bounds, q_round

_SEED_SPACE = 2**32


def trial_seed(seed: int, number: int) -> int:
    """One seed per trial of a sweep, independent of the order in which trials are made."""
    return random.Random(f"easgd-sweep:{seed}:{number}").randrange(_SEED_SPACE)


def random_params(dims: list[Dimension], seed: int, number: int) -> dict[str, Any]:
    rng = random.Random(trial_seed(seed, number))
    return {d.path: _draw(d, rng) for d in dims}


def _draw(d: Dimension, rng: random.Random) -> Any:
    if d.kind == "constant":
        return d.choices[0]
    if d.kind == "categorical":
        return d.choices[rng.randrange(len(d.choices))]
    if d.kind == "int_uniform":
        return rng.randint(d.low, d.high)
    if d.kind == "q_uniform":
        lo, hi = q_bounds(d.low, d.high, d.q)
        return q_round(rng.uniform(lo, hi), d.q)
    if d.kind == "log_uniform_values":
        return math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
    if d.kind == "log_uniform":
        return math.exp(rng.uniform(d.low, d.high))
    return rng.uniform(d.low, d.high)


def grid_params(dims: list[Dimension], number: int) -> dict[str, Any] | None:
    """The grid's point `number` (in the order of the paths, the last varying fastest), or
    None past its end."""
    for i, point in enumerate(grid_points(dims)):
        if i == number:
            return {d.path: v for d, v in zip(dims, point)}
    return None


class TpeSearch:
    """One sweep's Optuna study: ask for a trial's parameters, tell its outcome."""

    def __init__(self, path: Path, study_name: str, goal: str, seed: int, run_cap: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._optuna = optuna
        self.storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
        self.study_name = study_name
        self.direction = "maximize" if goal == "maximize" else "minimize"
        self.seed = seed
        # Optuna's default of 10 random trials first would leave a short sweep without TPE.
        self.startup = max(2, min(10, run_cap // 3))

    def _study(self, number: int):
        sampler = self._optuna.samplers.TPESampler(
            seed=trial_seed(self.seed, number), n_startup_trials=self.startup
        )
        return self._optuna.create_study(
            storage=self.storage,
            study_name=self.study_name,
            direction=self.direction,
            sampler=sampler,
            load_if_exists=True,
        )

    def ask(self, dims: list[Dimension], number: int) -> tuple[int, dict[str, Any]]:
        """(Optuna's trial number, the parameters) for our trial `number`."""
        study = self._study(number)
        searched = {d.path: self._distribution(d) for d in dims if d.kind != "constant"}
        trial = study.ask(searched)
        params = {}
        for d in dims:
            if d.kind == "constant":
                params[d.path] = d.choices[0]
            elif d.kind == "categorical":
                params[d.path] = d.choices[trial.params[d.path]]
            else:
                params[d.path] = trial.params[d.path]
        return trial.number, params

    def _distribution(self, d: Dimension):
        dist = self._optuna.distributions
        if d.kind == "categorical":  # by index: Optuna's choices are scalars, ours may be lists
            return dist.CategoricalDistribution(list(range(len(d.choices))))
        if d.kind == "int_uniform":
            return dist.IntDistribution(d.low, d.high)
        if d.kind == "q_uniform":
            lo, hi = q_bounds(d.low, d.high, d.q)
            return dist.FloatDistribution(lo, hi, step=d.q)
        if d.kind == "log_uniform_values":
            return dist.FloatDistribution(d.low, d.high, log=True)
        if d.kind == "log_uniform":
            return dist.FloatDistribution(math.exp(d.low), math.exp(d.high), log=True)
        return dist.FloatDistribution(d.low, d.high)

    def tell(self, optuna_number: int, outcome: str, value: float | None = None) -> None:
        """`outcome`: succeeded (with its value), stopped_early (pruned), or anything else
        (failed). Telling a trial twice, after a restart, is harmless."""
        state = self._optuna.trial.TrialState
        study = self._study(0)
        if outcome == "succeeded" and value is not None and math.isfinite(value):
            study.tell(optuna_number, value, skip_if_finished=True)
        elif outcome == "stopped_early":
            study.tell(optuna_number, state=state.PRUNED, skip_if_finished=True)
        else:
            study.tell(optuna_number, state=state.FAIL, skip_if_finished=True)

    def abandon(self, known: set[int]) -> list[int]:
        """Fail the study's trials still open that no trial of ours holds (asked just before the
        service stopped); their numbers."""
        study = self._study(0)
        running = self._optuna.trial.TrialState.RUNNING
        lost = [t.number for t in study.get_trials(deepcopy=False, states=(running,))]
        lost = [n for n in lost if n not in known]
        for n in lost:
            self.tell(n, "failed")
        return lost

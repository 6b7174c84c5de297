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

from service.sweeps.space import Dimension, grid_points, q_bounds, q_round

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
    """One sweep's Optuna study: ask for a trial's parameters, tell its outcome.

    The run store is the record; the study is a cache of it that may be lost or replaced (its
    file lies in this machine's data directory, the store may be shared). Each study trial is
    marked with our trial's number, and a study trial is told an outcome only when it is that
    trial with the same parameters; a trial of ours the study does not hold is added to it,
    finished, with its outcome."""

    def __init__(
        self,
        path: Path,
        study_name: str,
        goal: str,
        seed: int,
        run_cap: int,
        dims: list[Dimension],
    ):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._optuna = optuna
        self.storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
        self.study_name = study_name
        self.direction = "maximize" if goal == "maximize" else "minimize"
        self.seed = seed
        self.dims = dims
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

    def ask(self, number: int) -> tuple[int, dict[str, Any]]:
        """(Optuna's trial number, the parameters) for our trial `number`."""
        study = self._study(number)
        trial = study.ask(self._distributions())
        trial.set_user_attr(_OURS, number)
        params = {}
        for d in self.dims:
            if d.kind == "constant":
                params[d.path] = d.choices[0]
            elif d.kind == "categorical":
                params[d.path] = d.choices[trial.params[d.path]]
            elif d.kind == "q_uniform":
                params[d.path] = q_round(trial.params[d.path], d.q)
            else:
                params[d.path] = trial.params[d.path]
        return trial.number, params

    def _distributions(self) -> dict[str, Any]:
        return {d.path: self._distribution(d) for d in self.dims if d.kind != "constant"}

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

    def _as_optuna(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """Our parameters as the study holds them (choices by index); None when they are not
        of this search space."""
        out = {}
        for d in self.dims:
            if d.kind == "constant":
                continue
            value = params.get(d.path)
            if d.kind == "categorical":
                found = [
                    i for i, c in enumerate(d.choices) if c == value and type(c) is type(value)
                ]
                if not found:
                    return None
                value = found[0]
            out[d.path] = value
        return out

    def tell(
        self,
        number: int,
        optuna_number: int | None,
        params: dict[str, Any],
        outcome: str,
        value: float | None = None,
    ) -> None:
        """Our trial `number` ended with `outcome`: succeeded (with its value), stopped_early
        (pruned), or anything else (failed). Telling a trial twice is harmless."""
        study = self._study(0)
        self._tell(
            study, study.get_trials(deepcopy=False), number, optuna_number, params, outcome, value
        )

    def _tell(self, study, held, number, optuna_number, params, outcome, value) -> None:
        wanted = self._as_optuna(params)
        if wanted is None:
            return
        found = _held(held, number, optuna_number, wanted)
        state, value = self._state(outcome, value)
        if found is not None:
            if not found.state.is_finished():
                study.tell(found.number, value, state=state, skip_if_finished=True)
            return
        try:
            study.add_trial(
                self._optuna.trial.create_trial(
                    params=wanted,
                    distributions={k: v for k, v in self._distributions().items() if k in wanted},
                    value=value,
                    state=state,
                    user_attrs={_OURS: number},
                )
            )
        except ValueError:  # a value outside this search space: nothing TPE can learn from
            return

    def _state(self, outcome: str, value: float | None):
        state = self._optuna.trial.TrialState
        if outcome == "succeeded" and value is not None and math.isfinite(value):
            return state.COMPLETE, value
        if outcome == "stopped_early":
            return state.PRUNED, None
        return state.FAIL, None

    def fail_asked(self, optuna_number: int) -> None:
        """Fail a trial just asked for whose trial of ours was never made."""
        self._study(0).tell(
            optuna_number, state=self._optuna.trial.TrialState.FAIL, skip_if_finished=True
        )

    def reconcile(self, trials: list[Any]) -> None:
        """Bring the study in line with our trials (records with number, optuna_number,
        params, state and value): every ended one told or added, and every study trial still
        open that is no running trial of ours (asked just before a stop, or of a study that was
        replaced) failed."""
        study = self._study(0)
        held = study.get_trials(deepcopy=False)
        open_ours = set()
        for t in trials:
            if t.state.is_terminal():
                self._tell(study, held, t.number, t.optuna_number, t.params, t.state.value, t.value)
                held = study.get_trials(deepcopy=False)
                continue
            wanted = self._as_optuna(t.params)
            found = _held(held, t.number, t.optuna_number, wanted) if wanted else None
            if found is not None:
                open_ours.add(found.number)
        fail = self._optuna.trial.TrialState.FAIL
        for ft in held:
            if not ft.state.is_finished() and ft.number not in open_ours:
                study.tell(ft.number, state=fail, skip_if_finished=True)


_OURS = "easgd_trial"


def _held(held: list[Any], number: int, optuna_number: int | None, wanted: dict[str, Any]):
    """The study trial that is our trial `number`: marked so, else (a study from before the
    marks) numbered so; in both cases with the same parameters."""
    for ft in held:
        mark = ft.user_attrs.get(_OURS)
        if mark == number or (mark is None and ft.number == optuna_number):
            if _same(ft.params, wanted):
                return ft
    return None


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(
        x == y or (isinstance(x, float) and isinstance(y, float) and math.isclose(x, y))
        for x, y in ((a[k], b[k]) for k in a)
    )

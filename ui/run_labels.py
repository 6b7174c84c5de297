"""What to call compared runs, and whether they can be compared at all.

Two runs of one configuration file share its `name` ("mlp-digits-easgd") whatever was changed
with `--set`: labelled by name, a sync run and an EASGD run read alike. Compared runs are
labelled by what differs among them instead, the algorithm first; and runs that train another
model, on other data or with another loss are said to, since their curves measure different
things.
"""

from __future__ import annotations

from collections.abc import Sequence

from db.entities import RunRecord
from training.schema import resolved_params, schema_default
from ui.shaping import differing_params, params_of, run_label, shown_value

# How a label can be built, as Compare's "Label runs by" offers it.
LABELS = {"differs": "What differs", "name": "Name", "id": "Run id"}
# What a run's learning task is: runs that differ here do not measure the same thing.
TASK = (
    "data.dataset",
    "data.loader",
    "data.path",
    "data.options",
    "data.test_size",
    "data.split_seed",
    "model.name",
    "model.builder",
    "model.options",
    "model.loss",
    "model.metrics",
)
# Never part of a label: the configuration's name is what a label by what differs replaces.
_NOT_LABELS = frozenset({"name", "tags", "hosts"})
_FIRST = ("optimizer.algorithm", "optimizer.asynchronous", "optimizer.tau")
# At most this many parameters in a label; the run id always follows.
MAX_LABEL_PARAMS = 3


def _rank(key: str) -> tuple[int, str]:
    if key in _FIRST:
        return (_FIRST.index(key), key)
    if key.startswith("optimizer."):
        return (len(_FIRST), key)
    if key in TASK:
        return (len(_FIRST) + 1, key)
    return (len(_FIRST) + 2, key)


def _short(key: str, keys: Sequence[str]) -> str:
    """The key's last part, unless another key shown ends the same way (model.name beside
    data.name): then the whole key."""
    last = key.rsplit(".", 1)[-1]
    clash = sum(1 for k in keys if k.rsplit(".", 1)[-1] == last) > 1
    return key if clash else last


def _text(value) -> str:
    return shown_value(value) or "-"


def telling_params(runs: Sequence[RunRecord]) -> list[str]:
    """The parameters that differ among `runs` and that their algorithms do not already say:
    what a label names, and what runs are grouped by or drawn against (EAMSGD's momentum beside
    sync's would be one more axis saying "algorithm" again). A key is implied when every run
    has its own algorithm's default for it."""
    used = {r.id: params_of(r) for r in runs}  # resolved once: the page reruns this often
    defaults = {
        r.id: resolved_params(
            {"optimizer.algorithm": r.params.get("optimizer.algorithm"), "workers": r.workers}
        )
        for r in runs
    }

    def implied(key: str) -> bool:
        fallback = schema_default(key)
        return all(used[r.id].get(key, fallback) == defaults[r.id].get(key, fallback) for r in runs)

    return [k for k in differing_params(runs) if k == "optimizer.algorithm" or not implied(k)]


def compare_labels(
    runs: Sequence[RunRecord], by: str = "differs", telling: Sequence[str] | None = None
) -> dict[str, str]:
    """Each run's label among these runs; unique, since the run id ends every label but one by
    run id alone. `telling`: `telling_params(runs)`, when the caller has it already."""
    if by not in LABELS:
        raise ValueError(f"label by: one of {', '.join(LABELS)} (received: {by!r})")
    if by == "id":
        return {r.id: r.id for r in runs}
    if by == "name" or len(runs) < 2:
        return {r.id: run_label(r) for r in runs}
    telling = telling_params(runs) if telling is None else telling
    chosen = [k for k in telling if k not in _NOT_LABELS]
    shown = sorted(chosen, key=_rank)[:MAX_LABEL_PARAMS]
    labels = {}
    for r in runs:
        used = params_of(r)
        parts = []
        for key in shown:
            if used.get(key) is None:  # a parameter this run's algorithm does not use
                continue
            value = _text(used.get(key))
            if key == "optimizer.algorithm":
                parts.append(value)
            elif key == "optimizer.asynchronous":
                parts.append("async" if value == "true" else "blocking")
            else:
                parts.append(f"{_short(key, shown)}={value}")
        labels[r.id] = f"{' '.join(parts)} ({r.id})" if parts else r.id
    return labels


def _task_value(r: RunRecord, key: str):
    """A task parameter, the schema's default where the run did not record it (runs from
    before `model.options` existed have none, and learn what `{}` would)."""
    return params_of(r).get(key, schema_default(key))


def task_differences(runs: Sequence[RunRecord]) -> list[str]:
    """One phrase per part of the learning task the runs do not share, naming which runs have
    which value: "model.name: mlp (job-1, job-2), lenet5 (job-3)"."""
    if len(runs) < 2:
        return []
    out = []
    for key in TASK:
        groups: dict[str, list[str]] = {}
        for r in runs:
            groups.setdefault(_text(_task_value(r, key)), []).append(r.id)
        if len(groups) > 1:
            said = ", ".join(f"{value} ({', '.join(ids)})" for value, ids in groups.items())
            out.append(f"{key}: {said}")
    return out


def same_task(runs: Sequence[RunRecord], run_id: str | None) -> list[RunRecord]:
    """The runs that learn what run `run_id` learns (TASK's parameters all alike)."""

    def task(r: RunRecord) -> tuple[str, ...]:
        return tuple(_text(_task_value(r, key)) for key in TASK)

    mine = next((task(r) for r in runs if r.id == run_id), None)
    return [r for r in runs if task(r) == mine]

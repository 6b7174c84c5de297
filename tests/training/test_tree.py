"""Tree EASGD: its schema fields and refusals, its groups, and its equations under real
horovodrun with 4 ranks against the NumPy reference (tests/training/reference_tree.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support import QUIET_TF, ROOT, horovodrun
from tests.training import reference_tree as ref
from tests.training.tree_worker import ALL, CASES
from training.exchanges import groups
from training.exchanges.compression import wire_bytes
from training.run.metrics import read_jsonl
from training.schema import ConfigError, fields_for, parse_config, recorded_params
from training.schema.algorithms import INNER_FIELDS, REGISTRY

RTOL = 1e-5
WEIGHT_BYTES = (ref.DIM + 1) * 4  # float32 kernel and bias
TINY = str(Path(__file__).with_name("tiny.yaml"))


def _tree(**optimizer) -> dict:
    return {"optimizer": {"algorithm": "tree_easgd", **optimizer}, "resources": {"workers": 4}}


# The schema: fields, defaults, refusals (fast: no Horovod).


def test_tree_fields_schedule_and_recording():
    assert fields_for("tree_easgd") == set(INNER_FIELDS) | {
        "tau",
        "beta",
        "group_size",
        "tau_root",
        "beta_root",
        "compression",
    }
    opt = parse_config(_tree()).optimizer
    assert (opt.group_size, opt.tau_root, opt.beta_root, opt.resolved_inner.value) == (
        None,
        10,
        None,
        "sgd",
    )
    spec = REGISTRY["tree_easgd"]
    assert spec.has_center and spec.evaluated == "center"
    assert [t for t in range(13) if spec.communicates(t, 2, 3)] == [0, 2, 3, 4, 6, 8, 9, 10, 12]
    assert [t for t in range(13) if spec.communicates(t, 4)] == [0, 4, 8, 12]
    # Other algorithms ignore a root period, and record none of the tree's fields.
    assert [t for t in range(7) if REGISTRY["easgd"].communicates(t, 3, 2)] == [0, 3, 6]
    easgd = recorded_params(parse_config({"optimizer": {"algorithm": "easgd"}}).to_dict())
    assert not {"optimizer.group_size", "optimizer.tau_root", "optimizer.beta_root"} & set(easgd)
    tree = recorded_params(parse_config(_tree(group_size=2)).to_dict())
    assert tree["optimizer.group_size"] == 2 and tree["optimizer.tau_root"] == 10


@pytest.mark.parametrize(
    "optimizer, workers, phrase",
    [
        ({"group_size": 3}, 4, "optimizer.group_size: 3 does not divide resources.workers (4)"),
        ({"group_size": 8}, 4, "optimizer.group_size: 8 does not divide resources.workers (4)"),
        ({"group_size": 0}, 4, "optimizer.group_size: input should be greater than or equal to 1"),
        ({"group_size": 2048}, 4, "optimizer.group_size: input should be less than or equal"),
        ({"group_size": 10**30}, 4, "optimizer.group_size: input should be less than or equal"),
        ({"group_size": 2.5}, 4, "optimizer.group_size: input should be a valid integer"),
        ({"group_size": "two"}, 4, "optimizer.group_size: input should be a valid integer"),
        ({"group_size": True}, 4, "optimizer.group_size: input should be a number"),
        ({"tau_root": 0}, 4, "optimizer.tau_root: input should be greater than or equal to 1"),
        ({"tau_root": 10**6}, 4, "optimizer.tau_root: input should be less than or equal"),
        ({"tau_root": "often"}, 4, "optimizer.tau_root: input should be a valid integer"),
        ({"beta_root": 0}, 4, "optimizer.beta_root: input should be greater than 0"),
        ({"beta_root": 1.5}, 4, "optimizer.beta_root: input should be less than or equal to 1"),
        ({"beta_root": float("nan")}, 4, "optimizer.beta_root: input should be a finite number"),
    ],
)
def test_bad_tree_settings_are_refused_in_one_line(optimizer, workers, phrase):
    data = _tree(**optimizer)
    data["resources"]["workers"] = workers
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert len(caught.value.problems) == 1, caught.value.problems
    assert phrase in caught.value.problems[0]
    assert caught.value.by_field()[0][0].startswith("optimizer.")


def test_group_size_is_checked_only_where_it_is_used():
    assert parse_config(_tree(group_size=2)).optimizer.group_size == 2
    assert parse_config(_tree(group_size=4)).optimizer.group_size == 4
    assert parse_config(_tree(group_size=1)).optimizer.group_size == 1
    easgd = parse_config({"optimizer": {"group_size": 3}, "resources": {"workers": 4}})
    assert easgd.optimizer.group_size == 3  # unused by eamsgd: no refusal


# The groups (fast: pure Python).


def test_layouts():
    two = groups.layout(4, 2)
    assert two.groups == ((0, 1), (2, 3)) and two.leaders == (0, 2) and two.count == 2
    assert two.group_of(3) == (2, 3)
    assert two.process_sets() == ((0, 1), (2, 3), (0, 2))
    # Single ranks need no process set, and every rank is Horovod's global set.
    assert groups.layout(4, 1).process_sets() == ()
    assert groups.layout(4, 4).process_sets() == ()
    assert groups.layout(6, 2).process_sets() == ((0, 1), (2, 3), (4, 5), (0, 2, 4))
    with pytest.raises(groups.GroupError, match="optimizer.group_size: 3 does not divide the 4"):
        groups.layout(4, 3)


def test_the_default_group_is_the_ranks_of_one_host():
    env = {"HOROVOD_SIZE": "8", "HOROVOD_LOCAL_SIZE": "4", "HOROVOD_CROSS_SIZE": "2"}
    launch = groups.launched(env)
    assert launch == groups.Launch(8, 4, 2)
    assert groups.resolve(None, launch).group_size == 4
    assert groups.resolve(2, launch).group_size == 2
    assert groups.launched({}) == groups.Launch(1, 1, 1)
    # Hosts with 3 and 1 ranks: the rank with local size 3 sees 3 x 2 hosts != 4.
    with pytest.raises(groups.GroupError, match="different numbers of ranks") as caught:
        groups.resolve(None, groups.Launch(4, 3, 2))
    assert not caught.value.every_rank
    with pytest.raises(groups.GroupError) as caught:
        groups.resolve(3, launch)
    assert caught.value.every_rank


def test_the_program_refuses_a_group_size_that_does_not_fit_the_ranks_started(tmp_path):
    """-np wins over resources.workers; the check runs before TensorFlow is imported."""
    out = tmp_path / "never"
    env = {**QUIET_TF, "HOROVOD_RANK": "0", "HOROVOD_SIZE": "6", "HOROVOD_LOCAL_SIZE": "6"}
    proc = subprocess.run(
        [sys.executable, "-m", "training", "--config", TINY, "--out", str(out)]
        + ["--set", "optimizer.algorithm=tree_easgd", "--set", "optimizer.group_size=4"]
        + ["--set", "resources.workers=4", "--no-store"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "easgd: invalid configuration: optimizer.group_size: 4 does not divide the 6 workers; "
        "choose a divisor of the number of ranks (received: 4)"
    ]
    assert not out.exists()


def test_compression_in_the_reference_changes_the_trajectory():
    exact = ref.run(4, 2, 12, 0.05, tau=2, tau_root=3)
    int4 = ref.run(4, 2, 12, 0.05, tau=2, tau_root=3, compression="int4")
    float16 = ref.run(4, 2, 12, 0.05, tau=2, tau_root=3, compression="float16")
    assert np.max(np.abs(exact["root"] - int4["root"])) > 1e-4
    assert 0 < np.max(np.abs(exact["root"] - float16["root"])) < 1e-3


def test_reference_distinguishes_settings():
    """Guard against a reference that would agree with anything, and check it against flat
    EASGD: one group and no root exchange after t = 0 (where every center is x0) is EASGD."""
    a = ref.run(4, 2, 12, 0.05, tau=2, tau_root=3)
    b = ref.run(4, 2, 12, 0.05, tau=2, tau_root=4)
    c = ref.run(4, 2, 12, 0.05, tau=2, tau_root=3, beta_root=0.5)
    assert np.max(np.abs(a["root"] - b["root"])) > 1e-3
    assert np.max(np.abs(a["root"] - c["root"])) > 1e-3
    one = ref.run(4, 4, 9, 0.05, tau=3, tau_root=100, beta=0.8)
    x = [ref.initial_weights() for _ in range(4)]
    center = ref.initial_weights()
    for t in range(9):
        g = [ref.grad(x[i], *ref.problem(i)) for i in range(4)]
        d = [0.2 * (xi - center) if t % 3 == 0 else 0 * xi for xi in x]  # alpha = 0.8 / 4
        x = [xi - di - 0.05 * gi for xi, di, gi in zip(x, d, g)]
        center = center + sum(d)
    np.testing.assert_allclose(one["workers"], np.stack(x), rtol=1e-12)
    np.testing.assert_allclose(one["group_centers"][0], center, rtol=1e-12)


# The equations under horovodrun: 4 ranks, 2 groups of 2, and the default (one host: one group).


@pytest.fixture(scope="module", params=["2", "host"], ids=["2groups-of-2", "one-host"])
def results(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("tree") / "results.npz"
    proc = horovodrun(4, ["tests/training/tree_worker.py", str(out), request.param], timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = np.load(out)
    return json.loads(str(data["meta"])), data


def _relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.horovod
@pytest.mark.parametrize("label", [c[0] for c in ALL])
def test_matches_reference(results, label):
    meta, data = results
    case, size, group_size = meta["cases"][label], meta["workers"], meta["group_size"]
    assert (size, group_size) in ((4, 2), (4, 4))
    assert case["iterations"] == case["steps"]
    assert case["steps"] >= 3 * max(case["tau"], case["tau_root"])
    expected = ref.run(
        size,
        group_size,
        case["steps"],
        meta["lr"],
        tau=case["tau"],
        tau_root=case["tau_root"],
        beta=case["beta"],
        beta_root=case["beta_root"],
        momentum=case["momentum"],
        compression=case["compression"],
    )
    # Keras keeps Nesterov's look-ahead y = x + delta v in the variable and v in its slot.
    lookahead = expected["workers"] + case["momentum"] * expected["velocities"]
    assert _relative(data[f"{label}/workers"], lookahead) < RTOL
    if case["momentum"]:
        assert _relative(data[f"{label}/momentums"], expected["velocities"]) < RTOL
    groups_of = [r // group_size for r in range(size)]
    assert _relative(data[f"{label}/group_centers"], expected["group_centers"][groups_of]) < RTOL
    for r in range(size):
        assert _relative(data[f"{label}/roots"][r], expected["root"]) < RTOL
    # The root center is what is evaluated and exported.
    assert np.array_equal(data[f"{label}/evaluated"], data[f"{label}/roots"])


@pytest.mark.horovod
@pytest.mark.parametrize("label", [c[0] for c in ALL])
def test_center_replicas_are_bit_identical(results, label):
    meta, data = results
    size, group_size = meta["workers"], meta["group_size"]
    roots, centers = data[f"{label}/roots"], data[f"{label}/group_centers"]
    for r in range(size):
        assert roots[r].tobytes() == roots[0].tobytes(), f"root center: rank {r} differs"
        leader = r - r % group_size
        assert centers[r].tobytes() == centers[leader].tobytes(), f"group center: rank {r}"


@pytest.mark.horovod
@pytest.mark.parametrize("label", [c[0] for c in ALL])
def test_bytes_per_level(results, label):
    """Level 1: every rank hands its pull to the group's all-reduce. Level 2: each leader hands
    its push to the leaders' all-reduce and the new root center to its group's broadcast.
    Compressed: each rank its pull's codes and scales, each leader its push's; no broadcast."""
    meta, _ = results
    case, group_size = meta["cases"][label], meta["group_size"]
    level1, level2 = ref.rounds(case["steps"], case["tau"], case["tau_root"])
    compression = case["compression"]
    for r, comm in enumerate(case["communication"]):
        leader = r % group_size == 0
        if compression == "none":
            assert comm["group_bytes"] == level1 * WEIGHT_BYTES
            assert comm["root_bytes"] == (level2 * 2 * WEIGHT_BYTES if leader else 0)
        else:
            message = wire_bytes(ref.DIM + 1, compression)  # one block of 256, padded
            assert comm["group_bytes"] == level1 * message
            assert comm["root_bytes"] == (level2 * message if leader else 0)
        assert comm["bytes_sent"] == comm["group_bytes"] + comm["root_bytes"]
        assert comm["rounds"] == level1 + level2


@pytest.mark.horovod
def test_a_saved_configuration_restores_the_tree(results):
    meta, _ = results
    for label, _inner, _momentum, tau, tau_root, beta, beta_root, _steps in CASES:
        restored = meta["cases"][label]["restored"]
        assert restored == {
            "exchange": "tree",
            "tau": tau,
            "beta": beta,
            "alpha": None,
            "group_size": None if meta["group"] == "host" else meta["group_size"],
            "tau_root": tau_root,
            "beta_root": beta_root,
            "compression": "none",
        }


@pytest.mark.horovod
def test_the_program_runs_tree_easgd_on_4_ranks(tmp_path, easgd_home):
    out = tmp_path / "run"
    proc = horovodrun(
        4,
        ["-m", "training", "--config", TINY, "--out", str(out), "--no-store"]
        + ["--set", "optimizer.algorithm=tree_easgd", "--set", "optimizer.group_size=2"]
        + ["--set", "optimizer.tau_root=8", "--set", "training.max_steps=24"]
        + ["--set", "training.epochs=10"],
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(25))
    # Rank 0 leads group 0: per group round (t mod 4 == 0) one model payload, per root round
    # (t mod 8 == 0) two more; step 1 (t = 0) has both.
    model_bytes = rows[1]["bytes_sent"] / 3
    assert rows[5]["bytes_sent"] == 4 * model_bytes  # t = 4: the group level alone
    assert rows[9]["bytes_sent"] == 7 * model_bytes  # t = 8: both levels
    assert "center_accuracy" in rows[-1] and np.isfinite(rows[-1]["spread"])
    import keras

    center = keras.models.load_model(out / "center.keras")
    assert len(center.get_weights()) == 4  # the MLP's kernels and biases

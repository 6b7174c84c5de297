"""The training program under real horovodrun: run directory, refusal of bad input, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.support import QUIET_TF, ROOT, horovodrun
from training.run.metrics import read_jsonl

pytestmark = pytest.mark.horovod
TINY = str(Path(__file__).with_name("tiny.yaml"))


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(w) for w in keras.models.load_model(path).get_weights()]


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One uninterrupted 40-step run, with the README's plain horovodrun: the run directory's
    test reads it, and the resume test compares a stopped and resumed run with it."""
    out = tmp_path_factory.mktemp("whole") / "run"
    proc = horovodrun(
        2,
        ["-m", "training", "--config", TINY, "--out", str(out), "--no-store"]
        + ["--set", "training.max_steps=40"],
        env={"EASGD_HOME": str(out.parent / "home")},
        plain=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_run_directory_holds_everything(whole):
    out, proc = whole
    assert {"config.yaml", "metrics.jsonl", "events.jsonl", "center.keras", "checkpoints"} <= {
        p.name for p in out.iterdir()
    }
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["optimizer"]["algorithm"] == "eamsgd" and cfg["resources"]["workers"] == 2
    rows = read_jsonl(out / "metrics.jsonl")
    steps = [r["step"] for r in rows]
    assert steps == list(range(0, steps[-1] + 1)) and steps[-1] > 20
    for key in ("train_loss", "learning_rate", "bytes_sent", "comm_seconds", "epoch", "wall_time"):
        assert key in rows[-1], key
    evals = [r for r in rows if "center_accuracy" in r]
    assert all(k in evals[-1] for k in ("center_loss", "center_accuracy", "spread"))
    assert [r["step"] for r in evals][:3] == [0, 10, 20]
    # Bytes grow by one model payload per round, every tau = 4 steps (t mod 4 == 0).
    model_bytes = rows[1]["bytes_sent"]
    assert rows[4]["bytes_sent"] == model_bytes and rows[5]["bytes_sent"] == 2 * model_bytes
    # Rank 0 alone reports progress; the other rank stays quiet.
    assert "[0]<stdout>:easgd: step" in proc.stdout
    assert "[1]<stdout>:easgd" not in proc.stdout
    # The exported model is the center: it scores what the last evaluation reported.
    import keras

    from training.schema import DataConfig
    from training.zoo.data import load

    ds = load(DataConfig(dataset="digits"))
    model = keras.models.load_model(out / "center.keras")
    acc = float(np.mean(np.argmax(model.predict(ds.x_test, verbose=0), 1) == ds.y_test))
    assert acc == pytest.approx(evals[-1]["center_accuracy"], abs=1e-9)


def test_bad_configuration_fails_before_anything_starts(tmp_path, easgd_home):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(TINY).read_text() + "extra_section: 1\n")
    out = tmp_path / "never"
    proc = horovodrun(
        2, ["-m", "training", "--config", TINY, "--set", "optimizer.tau=0", "--out", str(out)]
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "invalid configuration" in line]
    assert len(lines) == 1, proc.stderr
    assert "optimizer.tau" in lines[0] and "received: 0" in lines[0]
    assert not out.exists() and not easgd_home.exists()
    # Without horovodrun too, and with an unknown section.
    plain = subprocess.run(
        [sys.executable, "-m", "training", "--config", str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=QUIET_TF,
    )
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        "easgd: invalid configuration: extra_section: unknown field; allowed: checkpoint, code, "
        "data, model, name, optimizer, resources, script, seed, tags, training (received: 1)"
    ]
    assert not out.exists()


def test_refuses_to_overwrite_a_run(tmp_path, easgd_home):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("seed: 1\n")
    proc = horovodrun(2, ["-m", "training", "--config", TINY, "--out", str(out), "--no-store"])
    assert proc.returncode != 0  # horovodrun reports a failed rank as 1
    assert "already holds a run" in proc.stderr and "--resume" in proc.stderr
    assert (out / "config.yaml").read_text() == "seed: 1\n"


def test_resume_continues_exactly(whole, tmp_path, easgd_home):
    whole, split = whole[0], tmp_path / "split"
    common = ["-m", "training", "--config", TINY, "--no-store"]
    first = horovodrun(2, [*common, "--out", str(split), "--set", "training.max_steps=20"])
    assert first.returncode == 0, first.stderr[-2000:]
    # A torn row after the checkpoint, as a killed writer could leave, must not survive.
    with (split / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 21, "train_loss": 123.0}) + '\n{"step": 2')
    resumed = horovodrun(
        2,
        ["-m", "training", "--resume", str(split), "--no-store", "--set", "training.max_steps=40"],
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at step 20" in resumed.stdout
    a, b = read_jsonl(whole / "metrics.jsonl"), read_jsonl(split / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(41))
    for ra, rb in zip(a, b):
        for key in ("train_loss", "bytes_sent", "center_accuracy", "spread"):
            assert (key in ra) == (key in rb)
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-6, abs=1e-9), (ra["step"], key)
    for wa, wb in zip(_weights(whole / "center.keras"), _weights(split / "center.keras")):
        np.testing.assert_allclose(wb, wa, rtol=1e-6, atol=1e-7)

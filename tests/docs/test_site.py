"""The documentation site builds with `mkdocs build --strict` (a broken link, a missing page or
anchor, a docstring the API reference cannot read: any warning fails), without importing
TensorFlow or Horovod, and with the benchmarks' own reports in it; the README stays short."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.docs.shown import README, ROOT

README_MAX_LINES = 300
HEAVY = ("tensorflow", "horovod", "keras")


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert 0 < len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_site_builds_strictly_without_tensorflow(tmp_path):
    # Stand-ins that leave a mark if anything imports them: the API reference must be read from
    # the source, never by importing the code.
    fakes = tmp_path / "fakes"
    for name in HEAVY:
        (fakes / name).mkdir(parents=True)
        (fakes / name / "__init__.py").write_text(
            f"import pathlib\npathlib.Path({str(tmp_path / 'imported')!r}).write_text({name!r})\n"
            f"raise ImportError('the documentation build imported {name}')\n"
        )
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(fakes), "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml")]
        + ["-d", str(site)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    output = build.stdout + build.stderr
    assert build.returncode == 0, output
    assert "WARNING" not in output, output
    assert not (tmp_path / "imported").exists(), (tmp_path / "imported").read_text()

    api = (site / "reference" / "api" / "index.html").read_text()
    for name in (
        "training.exchanges.optimizer.ElasticAveragingOptimizer",
        "training.exchanges.optimizer.eamsgd",
        "training.exchanges.optimizer.CenterServerCallback",
        "training.schema.ExperimentConfig",
    ):
        assert f'id="{name}"' in api, name
    assert "communication period, in local steps" in api  # a docstring's own words

    for report in ("bench.json", "bench/index.html", "slow-mlp.png", "fidelity/index.html"):
        assert (site / "bench" / "results" / report).is_file(), report
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    assert 'src="../bench/results/slow-mlp.png"' in benchmarks

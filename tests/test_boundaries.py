"""The import boundaries the architecture relies on, held by tests rather than docstrings.

The job service and the UI import the schema, the metric names and the launcher's command line
about twenty times; each must start in a blink, so none of them may pull in TensorFlow or
Horovod. The training ranks need both, and get the public API from `training` itself.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "horovod", "keras")


def _heavy_modules_after(imports: str) -> list[str]:
    code = (
        f"import sys; import {imports}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules if m.startswith({HEAVY!r})}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "imports",
    [
        "service.api, training.schema",
        "service.cli, service.supervisor, service.sweeps.driver",
        "training, training.schema, training.run.metrics, training.launch.argv",
        "training.tracking",
        "ui.shaping, ui.form",
    ],
)
def test_service_ui_and_schema_import_neither_tensorflow_nor_horovod(imports):
    assert _heavy_modules_after(imports) == []


def test_public_api_is_importable_from_training():
    code = (
        "from training import ElasticAveragingOptimizer, CenterServerCallback, easgd, eamsgd; "
        "import keras; print(issubclass(ElasticAveragingOptimizer, keras.optimizers.Optimizer), "
        "issubclass(CenterServerCallback, keras.callbacks.Callback), callable(easgd), "
        "callable(eamsgd))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-4:] == ["True", "True", "True", "True"]


def test_an_unknown_name_of_training_is_an_attribute_error():
    import training

    with pytest.raises(AttributeError, match="no attribute 'Optimiser'"):
        training.Optimiser  # noqa: B018


def _horovod_init_calls() -> list[str]:
    found = []
    for path in (ROOT / "training").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "init"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "hvd"
            ):
                found.append(str(path.relative_to(ROOT)))
    return found


def test_horovod_is_initialised_in_one_place():
    assert _horovod_init_calls() == ["training/exchanges/collectives.py"]


def _exchange_name_comparisons(root: pathlib.Path = ROOT) -> list[str]:
    """Comparisons of a string with an exchange's name in the product's code, outside the
    registry: each one is a branch that a new exchange would have to find and extend. (bench/
    names algorithms and report sections, some of which share a name with an exchange.)"""
    from training.schema.algorithms import EXCHANGES

    names = set(EXCHANGES)

    def named(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(named(e) for e in node.elts)
        return False

    found = []
    for folder in ("training", "service", "ui", "db"):
        for path in sorted((root / folder).rglob("*.py")):
            if path == root / "training" / "schema" / "algorithms.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Compare) and any(
                    named(n) for n in [node.left, *node.comparators]
                ):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_exchange_name_is_compared_outside_the_registry():
    assert _exchange_name_comparisons() == []


def test_the_comparison_check_finds_one(tmp_path):
    """The check above can fail: comparisons with an exchange's name are found, the registry's
    own are not."""
    (tmp_path / "training" / "schema").mkdir(parents=True)
    (tmp_path / "service").mkdir()
    (tmp_path / "training" / "schema" / "algorithms.py").write_text('x = y == "elastic"\n')
    (tmp_path / "service" / "probe.py").write_text(
        'def f(opt):\n    if opt.exchange in ("tree", "other"):\n'
        '        return opt.exchange == "consensus"\n'
    )
    assert _exchange_name_comparisons(tmp_path) == ["service/probe.py:2", "service/probe.py:3"]


def test_no_module_of_the_product_is_over_600_lines():
    """A module past that size has usually grown a second concern; split it by what it does."""
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for folder in ("training", "service", "db", "ui")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > 600
    ]
    assert long == []

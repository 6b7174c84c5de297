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

"""The Launch form as a new user meets it: an empty field shows the default it stands for (which
depends on the algorithm), integer fields take integers, the form's edits live in the page's
address (so a reload or a shared link keeps them, and a hand-edited address cannot break the
page), and a disabled Launch button says why beside it."""

from __future__ import annotations

import math
import re
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st
from streamlit.proto.NumberInput_pb2 import NumberInput
from streamlit.testing.v1 import AppTest

from tests.ui.pages import open_app
from training.schema import ExperimentConfig, parse_config
from training.schema.algorithms import REGISTRY
from ui import form
from ui.navigation import PATHS

SPECS = form.field_specs()


def _placeholder(at: AppTest, path: str) -> str:
    return at.number_input(key=f"form.{path}").proto.placeholder


def _launch_button(at: AppTest):
    return next(b for b in at.button if b.label == "Launch")


def _why_disabled(at: AppTest) -> list[str]:
    """The line beside Launch, as it reads (its Markdown escapes undone)."""
    return [
        re.sub(r"\\(.)", r"\1", m.value) for m in at.markdown if "Launch is disabled" in m.value
    ]


@pytest.mark.parametrize(
    ("algorithm", "inner", "momentum"),
    [
        ("eamsgd", "nesterov", "0.99 (eamsgd's default)"),
        ("easgd", "sgd", "0 (with sgd)"),
        ("mdownpour", "sgd", "0.99 (mdownpour's default)"),
        ("cdmsgd", "sgd", "0.95 (cdmsgd's default)"),
    ],
)
def test_blank_optimizer_fields_show_the_algorithms_defaults(algorithm, inner, momentum):
    blank = form.blank_defaults({"optimizer": {"algorithm": algorithm}})
    assert blank["optimizer.inner"] == f"{inner} ({algorithm}'s default)"
    assert blank["optimizer.momentum"] == momentum
    # What the schema resolves an empty field to, which is what the text says.
    resolved = parse_config({"optimizer": {"algorithm": algorithm}}).optimizer
    assert resolved.resolved_inner.value == inner
    assert blank["optimizer.momentum"].startswith(f"{resolved.resolved_momentum:g} ")


def test_blank_fields_follow_the_other_choices():
    eamsgd = form.blank_defaults({})
    assert eamsgd["optimizer.beta"] == "0.9 (the default)"
    assert eamsgd["data.test_size"] == "1000 (the default)"
    assert eamsgd["resources.min_workers"] == "2 (all of them)"
    chosen = form.blank_defaults(
        {
            "optimizer": {"algorithm": "easgd", "inner": "momentum", "beta": 0.6},
            "data": {"dataset": "synthetic", "synthetic_samples": 1000},
            "resources": {"workers": 4},
        }
    )
    assert chosen["optimizer.momentum"] == "0.9 (with momentum)"
    assert chosen["optimizer.alpha"] == "0.15 = beta / workers"
    assert chosen["data.test_size"] == "200 (a fifth)"
    assert chosen["resources.min_workers"] == "4 (all of them)"
    alpha = form.blank_defaults({"optimizer": {"alpha": 0.1}})
    assert alpha["optimizer.beta"] == "unused: alpha is set"
    # Choices the schema refuses still give a text, never an exception.
    odd = form.blank_defaults({"optimizer": {"algorithm": "nope", "inner": 3}, "resources": []})
    assert odd["optimizer.inner"] == "nesterov (eamsgd's default)"


def test_every_optional_field_that_the_schema_leaves_empty_says_what_it_stands_for():
    blank = form.blank_defaults({})
    empty = [
        p for p, s in SPECS.items() if s.optional and form.default_widget_values()[p] in ("", None)
    ]
    assert empty and not [p for p in empty if p not in blank], [p for p in empty if p not in blank]


def test_test_size_texts_match_the_loaders(easgd_home):
    from training.schema import DataConfig
    from training.zoo.data import load_digits, load_mnist5k

    assert len(load_mnist5k(DataConfig()).y_test) == 1000
    digits = load_digits(DataConfig(dataset="digits"))
    assert len(digits.y_test) == (len(digits.y_test) + len(digits.y_train)) // 5


def _int_annotation(annotation) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation is int or args == [int]


def test_every_integer_field_is_an_integer_widget_and_epochs_steps_by_one(ui_store):
    ints = set()
    for section, model in ExperimentConfig.model_fields.items():
        sub = model.annotation
        fields = sub.model_fields if hasattr(sub, "model_fields") else {section: model}
        prefix = f"{section}." if hasattr(sub, "model_fields") else ""
        ints |= {prefix + n for n, f in fields.items() if _int_annotation(f.annotation)}
    assert {"seed", "optimizer.tau", "data.test_size", "resources.workers"} <= ints
    assert {p for p, s in SPECS.items() if s.kind == "int"} == ints
    assert all(SPECS[p].step == 1 for p in ints)
    assert (SPECS["training.epochs"].kind, SPECS["training.epochs"].step) == ("float", 1.0)

    at = open_app("launch")
    seen = set()
    for algorithm in REGISTRY:
        at.selectbox(key="form.optimizer.algorithm").set_value(algorithm).run()
        for widget in at.number_input:
            path = widget.key.removeprefix("form.")
            if path in ints:
                assert widget.proto.data_type == NumberInput.INT, path
                assert widget.proto.step == 1 and widget.proto.format == "%d", path
                assert widget.value is None or isinstance(widget.value, int), path
                seen.add(path)
    assert {"optimizer.tau", "optimizer.tau_root", "data.test_size", "seed"} <= seen
    epochs = at.number_input(key="form.training.epochs")
    assert (epochs.proto.data_type, epochs.proto.step) == (NumberInput.FLOAT, 1.0)
    assert epochs.value == 10.0 and epochs.proto.format == "%g"


def test_the_page_shows_each_blank_fields_default(ui_store):
    at = open_app("launch")
    assert at.number_input(key="form.optimizer.momentum").value is None
    assert _placeholder(at, "optimizer.momentum") == "0.99 (eamsgd's default)"
    assert _placeholder(at, "optimizer.beta") == "0.9 (the default)"
    assert _placeholder(at, "optimizer.alpha") == "0.45 = beta / workers"
    assert _placeholder(at, "data.test_size") == "1000 (the default)"
    assert _placeholder(at, "training.max_steps") == "none: the epochs decide"
    inner = at.selectbox(key="form.optimizer.inner")
    assert inner.value is None and "nesterov (eamsgd's default)" in inner.options
    assert at.text_input(key="form.name").proto.placeholder.startswith("none")
    at.selectbox(key="form.optimizer.algorithm").set_value("easgd").run()
    assert _placeholder(at, "optimizer.momentum") == "0 (with sgd)"
    assert "sgd (easgd's default)" in at.selectbox(key="form.optimizer.inner").options
    at.number_input(key="form.resources.workers").set_value(3).run()
    at.number_input(key="form.optimizer.beta").set_value(0.6).run()
    assert _placeholder(at, "optimizer.alpha") == "0.2 = beta / workers"


def _launch_at(query: dict[str, str]) -> AppTest:
    """The Launch page opened at an address, as a reload or a shared link opens it."""
    at = AppTest.from_file("ui/app.py", default_timeout=60)
    at.switch_page(PATHS["launch"])
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_edits_live_in_the_address_and_a_reload_keeps_them(ui_store):
    at = open_app("launch")
    assert dict(at.query_params) == {}  # the defaults stay out of it
    at.selectbox(key="form.optimizer.algorithm").set_value("easgd").run()
    at.number_input(key="form.optimizer.tau").set_value(4).run()
    at.number_input(key="form.optimizer.learning_rate").set_value(0.05).run()
    at.number_input(key="form.resources.workers").set_value(3).run()
    at.number_input(key="form.training.epochs").set_value(2.5).run()
    at.text_input(key="form.name").input("first hour").run()
    at.selectbox(key="form.model.name").set_value("mlp").run()
    at.text_input(key="form.model.hidden").input("64, 32").run()
    at.selectbox(key="form.model.name").set_value("lenet5").run()  # hides it; the form keeps it
    query = {k: v[-1] for k, v in at.query_params.items()}
    assert query == {
        "name": "first hour",
        "model.hidden": "64, 32",
        "optimizer.algorithm": "easgd",
        "optimizer.tau": "4",
        "optimizer.learning_rate": "0.05",
        "training.epochs": "2.5",
        "resources.workers": "3",
    }
    # Back to a default: out of the address again.
    at.number_input(key="form.training.epochs").set_value(10.0).run()
    assert "training.epochs" not in at.query_params

    query.pop("training.epochs")
    again = _launch_at(query)
    state = again.session_state
    assert state["form.optimizer.algorithm"] == "easgd" and state["form.optimizer.tau"] == 4
    assert state["form.optimizer.learning_rate"] == 0.05 and state["form.resources.workers"] == 3
    assert state["form.name"] == "first hour"
    assert again.number_input(key="form.optimizer.tau").value == 4
    again.selectbox(key="form.model.name").set_value("mlp").run()
    assert again.text_input(key="form.model.hidden").value == "64, 32"


def test_the_modes_and_your_codes_fields_live_in_the_address(ui_store, tmp_path):
    at = open_app("launch")
    at.segmented_control(key="form.mode").set_value("Your code").run()
    at.text_input(key="code.dir").input(str(tmp_path)).run()
    at.number_input(key="code.workers").set_value(3).run()
    assert at.query_params["mode"] == ["Your code"]
    assert at.query_params["code.dir"] == [str(tmp_path)]
    again = _launch_at({k: v[-1] for k, v in at.query_params.items()})
    assert again.text_input(key="code.dir").value == str(tmp_path)
    assert again.number_input(key="code.workers").value == 3

    at.segmented_control(key="form.mode").set_value("YAML").run()
    text = at.text_area(key="form.yaml").value.replace("tau: 10", "tau: 7")
    at.text_area(key="form.yaml").input(text).run()
    assert at.query_params["yaml"] == [text]
    again = _launch_at({"mode": "YAML", "yaml": text})
    assert again.text_area(key="form.yaml").value == text


HOSTILE = {
    "optimizer.tau": "0x10",
    "optimizer.learning_rate": "nan",
    "optimizer.momentum": "inf",
    "optimizer.beta": "1e999",
    "optimizer.algorithm": "<script>alert(1)</script>",
    "optimizer.inner": "None",
    "optimizer.asynchronous": "yes",
    "data.dataset": "../../etc/passwd",
    "seed": "9" * 5000,
    "resources.workers": "-3",
    "data.batch_size": "99999999999999999999999",
    "training.epochs": "-1",
    "training.max_steps": "",
    "mode": "Shell",
    "code.workers": "many",
    "name": "x" * 5000,
    "yaml": "y" * 20000,
    "unknown.field": "1",
}


def test_a_hostile_address_is_ignored_field_by_field(ui_store):
    at = _launch_at(HOSTILE)
    state = at.session_state
    assert state["form.optimizer.tau"] == 10 and state["form.optimizer.algorithm"] == "eamsgd"
    assert state["form.optimizer.learning_rate"] == 0.01 and state["form.seed"] == 0
    assert state["form.optimizer.momentum"] is None and state["form.optimizer.beta"] is None
    assert state["form.optimizer.asynchronous"] is False
    assert state["form.data.dataset"] == "mnist5k" and state["form.name"] == ""
    assert state["form.mode"] == "Form" and state["code.workers"] == 2
    # Numbers past the field's range are brought to its nearest end.
    assert state["form.resources.workers"] == 1 and state["form.data.batch_size"] == 65536
    assert state["form.training.max_steps"] is None
    # Past an open end there is none: the default stays.
    assert state["form.training.epochs"] == 10.0
    query = {k: v[-1] for k, v in at.query_params.items() if k != "unknown.field"}
    assert query == {"resources.workers": "1", "data.batch_size": "65536"}, query


@given(st.sampled_from(sorted(SPECS)), st.text(max_size=40))
def test_any_address_text_is_a_valid_widget_value_or_refused(path, text):
    spec = SPECS[path]
    try:
        value = form.address_value(spec, text)
    except ValueError:
        return
    if spec.kind == "choice":
        assert value in spec.choices
    elif spec.kind == "bool":
        assert isinstance(value, bool)
    elif spec.kind in ("int", "float") and value is not None:
        assert isinstance(value, int if spec.kind == "int" else float)
        assert math.isfinite(value)
        assert spec.minimum is None or value >= spec.minimum
        assert spec.maximum is None or value <= spec.maximum
    else:
        assert isinstance(value, str) or value is None


def test_each_fields_value_comes_back_from_its_address_text():
    edited = {
        "name": "a run",
        "seed": 7,
        "optimizer.algorithm": "cdsgd",
        "optimizer.inner": "adam",
        "optimizer.learning_rate": 1e-05,
        "optimizer.momentum": 0.0,
        "optimizer.asynchronous": True,
        "training.epochs": 0.5,
        "training.max_steps": 300,
        "model.hidden": "64, 32",
        "optimizer.topology": "[[0.5, 0.5], [0.5, 0.5]]",
        "checkpoint.every": None,
    }
    for path, value in edited.items():
        text = form.address_text(SPECS[path], value)
        assert text is not None, path
        assert form.address_value(SPECS[path], text) == value, (path, text)
    for path, value in form.default_widget_values().items():
        assert form.address_text(SPECS[path], value) is None, path


def test_a_disabled_launch_says_why_beside_it(ui_store, tmp_path):
    at = open_app("launch")
    assert not _launch_button(at).disabled and not _why_disabled(at)
    at.number_input(key="form.optimizer.tau").set_value(0).run()
    assert _launch_button(at).disabled
    (why,) = _why_disabled(at)
    assert "optimizer.tau: input should be greater than or equal to 1" in why, why
    at.number_input(key="form.optimizer.tau").set_value(4).run()
    at.text_input(key="form.workdir").input(str(tmp_path / "nowhere")).run()
    (why,) = _why_disabled(at)
    assert "Working directory: not a directory on this machine" in why, why

    at.segmented_control(key="form.mode").set_value("Your code").run()
    assert _launch_button(at).disabled
    (why,) = _why_disabled(at)
    assert "Working directory: give the directory your script is in" in why, why
    at.segmented_control(key="form.mode").set_value("YAML").run()
    at.text_area(key="form.yaml").input("optimizer: {tau: -1}\n").run()
    (why,) = _why_disabled(at)
    assert "optimizer.tau" in why, why


def test_an_empty_list_field_stays_out_of_the_address():
    """MLP's hidden sizes, first shown empty (the default, 128, applies), add nothing to it."""
    assert form.address_text(SPECS["model.hidden"], "") is None
    assert form.address_text(SPECS["model.hidden"], "64, 32") == "64, 32"

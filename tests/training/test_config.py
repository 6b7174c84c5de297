"""The configuration schema: defaults, one clear message per wrong field, overrides, warnings."""

from __future__ import annotations

import sys

import pytest

from db.errors import StoreError
from db.store import Store
from training.schema import (
    Algorithm,
    ConfigError,
    apply_overrides,
    fields_for,
    flatten,
    parse_config,
    resolve,
    stability_bound,
    warnings_for,
)


def test_defaults_are_valid_and_complete():
    cfg = parse_config({})
    assert cfg.optimizer.algorithm is Algorithm.EAMSGD
    assert cfg.optimizer.resolved_momentum == 0.99
    assert cfg.optimizer.resolved_alpha(2) == pytest.approx(0.45)
    assert cfg.data.dataset == "mnist5k" and cfg.model.name == "lenet5"


@pytest.mark.parametrize(
    "data, field, phrase, received",
    [
        ({"optimizer": {"tau": 0}}, "optimizer.tau", "greater than or equal to 1", "0"),
        ({"optimizer": {"beta": 1.5}}, "optimizer.beta", "less than or equal to 1", "1.5"),
        ({"optimizer": {"beta": 0}}, "optimizer.beta", "no elastic force", "0"),
        ({"optimizer": {"beta": -1.5}}, "optimizer.beta", "greater than or equal to -1", "-1.5"),
        ({"optimizer": {"alpha": 0.0}}, "optimizer.alpha", "no elastic force", "0"),
        ({"optimizer": {"order": "gauss"}}, "optimizer.order", "'round_robin'", "gauss"),
        (
            {"optimizer": {"learning_rate": -0.1}},
            "optimizer.learning_rate",
            "greater than 0",
            "-0.1",
        ),
        ({"optimizer": {"tau": "often"}}, "optimizer.tau", "valid integer", "'often'"),
        (
            {"optimizer": {"algorithm": "adagrad"}},
            "optimizer.algorithm",
            "input should be",
            "'adagrad'",
        ),
        ({"optimizer": {"taus": 3}}, "optimizer.taus", "unknown field; allowed:", "3"),
        ({"trainig": {}}, "trainig", "unknown field; allowed:", "{}"),
        ({"data": {"batch_size": 0}}, "data.batch_size", "greater than or equal to 1", "0"),
        (
            {"resources": {"hosts": "a b;rm -rf /"}},
            "resources.hosts",
            "host:slots[,host:slots...]",
            "rm -rf",
        ),
    ],
)
def test_each_bad_value_names_field_reason_and_value(data, field, phrase, received):
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert len(exc.value.problems) == 1
    line = exc.value.problems[0]
    assert line.startswith(field + ":")
    assert phrase in line
    assert received in line


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        parse_config({"optimizer": {"tau": 0, "learning_rate": -1}, "bogus": 1})
    fields = sorted(p.split(":")[0] for p in exc.value.problems)
    assert fields == ["bogus", "optimizer.learning_rate", "optimizer.tau"]


def test_alpha_and_beta_together_refused():
    with pytest.raises(ConfigError, match="either alpha or beta"):
        parse_config({"optimizer": {"alpha": 0.1, "beta": 0.5}})


def test_missing_files(tmp_path):
    with pytest.raises(ConfigError, match=r"--config: no such file"):
        resolve(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"data.path: no such file"):
        parse_config({"data": {"dataset": "npz", "path": str(tmp_path / "x.npz")}})
    with pytest.raises(ConfigError, match=r"data.path: required"):
        parse_config({"data": {"dataset": "npz"}})


def test_bad_yaml_says_where(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("optimizer:\n  tau: [1, 2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line"):
        resolve(f)


def test_overrides_are_typed_and_checked(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optimizer:\n  tau: 4\n")
    cfg = resolve(f, ["optimizer.tau=16", "optimizer.algorithm=easgd", "model.hidden=[8, 4]"])
    assert cfg.optimizer.tau == 16 and cfg.model.hidden == [8, 4]
    with pytest.raises(ConfigError, match=r"expected key.path=value"):
        apply_overrides({}, ["optimizer.tau"])
    with pytest.raises(ConfigError, match=r"optimizer.tau: .*received: -2"):
        resolve(f, ["optimizer.tau=-2"])


def test_stability_warning_not_refusal():
    eta = 0.1
    bound = stability_bound(eta)
    assert bound == pytest.approx((4 - 2 * eta) / (4 - eta))
    inside = parse_config({"optimizer": {"algorithm": "easgd", "learning_rate": eta, "alpha": 0.5}})
    outside = parse_config(
        {"optimizer": {"algorithm": "easgd", "learning_rate": eta, "alpha": 1.5}}
    )
    assert not [w for w in warnings_for(inside) if "stability" in w]
    assert any("stability region" in w for w in warnings_for(outside))


def test_a_negative_moving_rate_is_accepted_with_a_warning():
    cfg = parse_config({"optimizer": {"algorithm": "easgd", "beta": -0.4}})
    assert cfg.optimizer.resolved_alpha(2) == pytest.approx(-0.2)
    (warning,) = warnings_for(cfg, 2)
    assert warning.startswith("optimizer.alpha: -0.2 is a negative moving rate")
    assert "momentum SGD" in warning


def test_flatten_gives_dotted_parameter_names():
    flat = flatten(parse_config({}).to_dict())
    assert flat["optimizer.algorithm"] == "eamsgd"
    assert flat["resources.workers"] == 2


def test_fields_for_each_algorithm():
    assert "tau" not in fields_for(Algorithm.SYNC)
    assert {"tau", "beta", "alpha"} <= fields_for(Algorithm.EAMSGD)
    assert "average_rate" in fields_for(Algorithm.MVADOWNPOUR)
    assert "alpha" not in fields_for(Algorithm.DOWNPOUR)


def test_schema_imports_neither_tensorflow_nor_horovod():
    import subprocess

    code = (
        "import sys, training.schema; "
        "print(any(m.startswith(('tensorflow', 'horovod', 'keras')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- hostile inputs (issue 15)
def _bomb(levels: int = 9, width: int = 9) -> str:
    """The billion-laughs shape: each level lists the previous one `width` times (373 bytes)."""
    lines = ["l0: &l0 [" + ",".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _refused_once(call, *args) -> str:
    with pytest.raises(ConfigError) as exc:
        call(*args)
    assert len(exc.value.problems) == 1, exc.value.problems
    line = exc.value.problems[0]
    assert "\n" not in line and "Traceback" not in line
    return line


@pytest.mark.parametrize(
    "text",
    [
        _bomb(),
        _bomb().replace("l8: &l8", "tags: &l8"),
        "model:\n  hidden: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        + "".join(f"x{i}: &a{i} [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" for i in range(1))
        + "tags: {k: [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]}\n"
        + "data: {a: &r [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]}\n"
        + "".join(f"y{i}: [*r, *r, *r, *r, *r, *r, *r, *r, *r, *r]\n" for i in range(10)),
    ],
    ids=["top-level", "in-a-field", "wide"],
)
def test_alias_bomb_refused_before_expansion(tmp_path, text):
    import tracemalloc

    f = tmp_path / "bomb.yaml"
    f.write_text(text)
    tracemalloc.start()
    try:
        line = _refused_once(resolve, f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert line.startswith(f"{f}: ") and "aliases expand to more than" in line
    assert peak < 2_000_000, f"expanded before refusing: peak {peak} bytes"


def test_recursive_alias_refused(tmp_path):
    f = tmp_path / "loop.yaml"
    f.write_text("tags: &t {k: *t}\n")
    assert "refers to itself" in _refused_once(resolve, f)


def test_alias_bomb_in_set_value_refused():
    flow = (
        "["
        + ", ".join(
            [f"&l0 [{', '.join(['x'] * 9)}]"]
            + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
        )
        + "]"
    )
    line = _refused_once(apply_overrides, {}, [f"model.hidden={flow}"])
    assert line.startswith("--set model.hidden: ") and "aliases expand" in line


def test_a_few_aliases_are_fine(tmp_path):
    f = tmp_path / "ok.yaml"
    f.write_text("tags: &t {team: vision}\nmodel: {name: mlp, hidden: &h [64, 32]}\n")
    assert resolve(f).model.hidden == [64, 32]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000,
        "[" * 5000 + "]" * 5000,
        "{a: " * 5000 + "1" + "}" * 5000,
        "tags:\n" + "".join("  " * i + "a:\n" for i in range(1, 200)),
    ],
    ids=["open-brackets", "balanced-brackets", "flow-mappings", "block-mappings"],
)
def test_deep_yaml_refused_with_one_line(tmp_path, text):
    f = tmp_path / "deep.yaml"
    f.write_text(text)
    line = _refused_once(resolve, f)
    assert line.startswith(f"{f}: ") and "nested deeper than" in line
    if "\n" not in text:
        line = _refused_once(apply_overrides, {}, ["tags=" + text])
        assert line.startswith("--set tags: ") and "nested deeper than" in line


@pytest.mark.parametrize("kind", ["dict", "list"])
def test_deep_python_objects_refused_by_the_schema(kind):
    deep: object = 1
    for _ in range(5000):
        deep = {"a": deep} if kind == "dict" else [deep]
    line = _refused_once(parse_config, {"tags": deep})
    assert line.startswith("tags: ") and "nested deeper than" in line
    line = _refused_once(apply_overrides, {"tags": deep}, ["seed=1"])
    assert line.startswith("tags: ")


def test_file_not_utf8_names_file_and_offset(tmp_path):
    f = tmp_path / "latin1.yaml"
    f.write_bytes("name: café\n".encode("latin-1"))
    line = _refused_once(resolve, f)
    assert line == f"{f}: is not UTF-8 text (byte 0xe9 at offset 9); save it as UTF-8"


def test_set_value_not_utf8_refused():
    # A non-UTF-8 command-line argument reaches Python as a lone surrogate (surrogateescape).
    arg = b"name=caf\xe9".decode("utf-8", "surrogateescape")
    line = _refused_once(apply_overrides, {}, [arg])
    assert line == "--set name: is not UTF-8 text (byte 0xe9 at offset 3); give UTF-8 text"


@pytest.mark.parametrize(
    "data, field, phrase",
    [
        ({"seed": 2**70}, "seed", "less than or equal to 4294967295"),
        ({"seed": 2**32}, "seed", "less than or equal to 4294967295"),
        ({"seed": -1}, "seed", "greater than or equal to 0"),
        ({"seed": True}, "seed", "a number, not true or false"),
        ({"seed": "1e18"}, "seed", "valid integer"),
        ({"training": {"epochs": float("inf")}}, "training.epochs", "finite number"),
        ({"training": {"epochs": "inf"}}, "training.epochs", "finite number"),
        ({"training": {"epochs": "1e400"}}, "training.epochs", "finite number"),
        ({"training": {"epochs": 1e18}}, "training.epochs", "less than or equal to 10000"),
        ({"training": {"epochs": float("nan")}}, "training.epochs", "finite number"),
        ({"training": {"epochs": 10**400}}, "training.epochs", "finite number"),
        ({"training": {"epochs": False}}, "training.epochs", "a number, not true or false"),
        ({"training": {"max_steps": 2**70}}, "training.max_steps", "less than or equal to"),
        ({"training": {"eval_every": 10**18}}, "training.eval_every", "less than or equal to"),
        ({"optimizer": {"learning_rate": float("inf")}}, "optimizer.learning_rate", "finite"),
        ({"optimizer": {"momentum": float("nan")}}, "optimizer.momentum", "finite number"),
        ({"optimizer": {"alpha": 1e400}}, "optimizer.alpha", "finite number"),
        ({"data": {"synthetic_samples": 10**12}}, "data.synthetic_samples", "less than"),
        ({"data": {"split_seed": 2**64}}, "data.split_seed", "less than or equal to 4294967295"),
        ({"model": {"hidden": [2**70]}}, "model.hidden.0", "less than or equal to"),
        ({"checkpoint": {"keep": 10**9}}, "checkpoint.keep", "less than or equal to"),
        ({"resources": {"hosts": "a:99999999999999999999"}}, "resources.hosts", "slots"),
        ({"resources": {"workers": "yes"}}, "resources.workers", "valid integer"),
    ],
)
def test_out_of_range_numbers_refused_up_front(data, field, phrase):
    line = _refused_once(parse_config, data)
    assert line.startswith(field + ":") and phrase in line, line


def test_bounds_accept_their_ends():
    cfg = parse_config(
        {"seed": 2**32 - 1, "data": {"split_seed": 2**32 - 1}, "training": {"epochs": 10000}}
    )
    assert cfg.seed == 2**32 - 1 and cfg.training.epochs == 10000


def _leaf_types(ann) -> set:
    import typing

    args = typing.get_args(ann)
    if typing.get_origin(ann) is typing.Annotated:
        return _leaf_types(args[0])
    if args:
        return set().union(*(_leaf_types(a) for a in args))
    return {ann}


def _numeric_leaves(model, prefix=""):
    """(dotted path, is a list) of every int or float field, found by walking the model."""
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _numeric_leaves(ann, path + ".")
        elif _leaf_types(ann) & {int, float}:
            yield path, list in _leaf_types(ann) or "list[" in str(ann)


def test_every_numeric_field_has_finite_bounds():
    """A new numeric field without an upper bound or with infinity allowed fails here."""
    from training.schema import ExperimentConfig

    leaves = dict(_numeric_leaves(ExperimentConfig))
    assert leaves["model.hidden"] and not leaves["seed"] and len(leaves) == 38
    matrix = "optimizer.topology"  # a list of rows: its one line names the field
    for path, is_list in leaves.items():
        for bad in (2**70, float("inf"), float("nan"), True, -(2**70), 1e300, -1e300):
            data: dict = {}
            node = data
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = [[bad]] if path == matrix else [bad] if is_list else bad
            with pytest.raises(ConfigError) as exc:
                parse_config(data)
            element = ".0:" if is_list and path != matrix else ":"
            assert exc.value.problems[0].startswith(path + element), (path, bad)


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "two\nlines"}, "name"),
        ({"name": "nul\x00byte"}, "name"),
        ({"name": "esc\x1b[31m"}, "name"),
        ({"name": "para\u2029graph"}, "name"),
        ({"name": "lone\udcffsurrogate"}, "name"),
        ({"tags": {"team": "a\nb"}}, "tags.team"),
        ({"tags": {"te\nam": "a"}}, "tags"),
        ({"tags": {"": "a"}}, "tags"),
        ({"data": {"dataset": "npz", "path": "x\x00.npz"}}, "data.path"),
    ],
)
def test_control_characters_refused_in_text(data, field):
    line = _refused_once(parse_config, data)
    assert line.startswith(field), line


def test_the_note_tag_alone_has_lines():
    cfg = parse_config({"tags": {"note": "diverged\r\nretry\twith tau 4", "team": "vision"}})
    assert cfg.tags == {"note": "diverged\nretry\twith tau 4", "team": "vision"}
    line = _refused_once(parse_config, {"tags": {"team": "a\tb"}})
    assert line == (
        "tags.team: character U+0009 at position 1 is not printable text; remove it (received: "
        "'a\\tb'); only the note (the tag 'note') has lines"
    )


def test_plain_unicode_text_accepted():
    cfg = parse_config({"name": "résumé 学习 '; DROP TABLE runs;--", "tags": {"team": "équipe ü"}})
    assert cfg.name == "résumé 学习 '; DROP TABLE runs;--"
    assert cfg.tags == {"team": "équipe ü"}


@pytest.mark.parametrize("key", ["my team", "équipe", "a;b", "team\u200b"])
def test_a_tag_key_the_store_would_refuse_is_refused_by_the_schema(key, tmp_path):
    """The store keeps tag keys of letters, digits, '_', '.', '-' and '/': a key the schema let
    through failed the job only when rank 0 recorded its run."""
    line = _refused_once(parse_config, {"tags": {key: "vision"}})
    assert line.startswith("tags: a key: letters, digits, '_', '.', '-' or '/', 1 to 250"), line
    assert f"(received: {key[:20]!r}"[:-1] in line
    store = Store(f"sqlite:///{tmp_path / 'easgd.db'}")
    store.init()
    with pytest.raises(StoreError, match="tag key: letters, digits"):
        store.create_run("r", params={}, tags={key: "vision"})
    store.dispose()


@pytest.mark.parametrize("eta", [2.0, 4.0, 7.5])
def test_stability_warning_for_large_learning_rates(eta):
    """From eta = 2 on the region is empty; at eta = 4 the formula divided by zero."""
    cfg = parse_config({"optimizer": {"algorithm": "easgd", "learning_rate": eta}})
    assert stability_bound(eta) == 0.0
    assert any("stability region" in w for w in warnings_for(cfg))

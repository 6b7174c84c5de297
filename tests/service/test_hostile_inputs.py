"""Hostile configurations against every way in: `easgd validate`, `python -m training` and
`POST /jobs`.

The variants are generated from a valid configuration by walking the schema, so a field added
later is attacked too: wrong types, out-of-range numbers, injection strings, control
characters, structural changes, alias bombs and deep nesting. Each must be refused with one
line naming the field (or the file), exit code 2 or HTTP 422, no traceback, nothing stored and
nothing launched. Injection strings in free text are legal text: those are accepted, stored
verbatim (bound as parameters, never run) and checked as such.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import BaseModel

from db.store import Store
from service import cli
from service.api import create_app
from service.settings import ServiceSettings
from tests.support import BIN, ROOT
from training import __main__ as training_main
from training.schema import ExperimentConfig

BASE: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "lenet-mnist5k-eamsgd.yaml").read_text())
MARKER = "hostile-marker"  # `$(touch ...)` would create this file if anything ran a shell
# Text that is legal in free-text fields and must come back exactly as sent.
INJECTIONS = {
    "sql": "'; DROP TABLE runs;--",
    "shell-subst": f"$(touch {MARKER})",
    "shell-seq": "; rm -rf / #",
    "traversal": "../../etc/passwd",
    "template": "{{7*7}}",
}
# Of those, the ones that are also legal tag keys.
LEGAL_TAG_KEYS = {"traversal"}
# Text that no field takes.
BROKEN_TEXT = {
    "newline": "two\nlines",
    "nul": "nul\x00byte",
    "escape": "\x1b[31mred",
    "surrogate": "caf\udce9",
    "long": "x" * 10_000,
}
WRONG_TYPES = {"int": 123, "list": ["a"], "dict": {"a": "b"}}
NUMBERS = {
    "huge": 2**70,
    "negative": -(2**70),
    "inf": float("inf"),
    "nan": float("nan"),
    "1e400": "1e400",
    "bool": True,
}


def _bomb(levels: int = 9) -> str:
    lines = ["l0: &l0 [" + ",".join(["lol"] * 9) + "]"]
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@dataclass
class Variant:
    id: str
    field: str  # what the one line must name first ("" for the file itself)
    data: Any = None  # a configuration object, or None when `text` is the configuration
    text: str | None = None  # YAML text sent as it is (bombs, deep nesting)
    path: tuple[str, ...] = ()  # accepted variants: where the value must come back verbatim
    value: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def yaml_text(self) -> str:
        return self.text if self.text is not None else yaml.safe_dump(self.data, sort_keys=False)


def _set(data: dict, path: list[str], value: Any) -> dict:
    out = copy.deepcopy(data)
    node = out
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return out


def _kind(annotation: Any) -> str:
    """numeric, list, choice, text or mapping, seen through Optional and Annotated."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kind(args[0])
    if origin is typing.Literal or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return "choice"
    if origin is list:
        return "list"
    if origin is dict:
        key = typing.get_args(annotation)[0]
        return "rank_mapping" if _kind(key) == "numeric" else "mapping"
    if origin is not None:  # a union: Optional[X]
        return _kind(args[0])
    if annotation is bool:
        return "bool"
    if annotation in (int, float):
        return "numeric"
    if annotation is str:
        return "text"
    raise AssertionError(f"no hostile variants for {annotation}: add them here")


def _section(annotation: Any) -> type[BaseModel] | None:
    """The section a field holds, an optional one (`script`) included."""
    for ann in (annotation, *typing.get_args(annotation)):
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
    return None


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()):
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        if (section := _section(info.annotation)) is not None:
            yield from _leaves(section, path)
        elif path == ("script", "args"):
            yield path, "arguments"
        elif path[-1] == "options":  # keyword arguments of a builder or loader
            yield path, "options"
        else:
            yield path, _kind(info.annotation)


def _base_for(path: tuple[str, ...]) -> dict:
    """The valid configuration, adjusted so that only the field under attack can be wrong."""
    base = copy.deepcopy(BASE)
    if path == ("optimizer", "alpha"):
        base["optimizer"].pop("beta")
    if path == ("data", "path"):
        base["data"]["dataset"] = "npz"
    if path[0] == "script":
        base["script"] = {"command": ["python", "train.py"]}
    if path[-1] == "options":  # the env fixture's module, which takes any options
        base["model"] = {"builder": "hostile_code:build", "loss": "mean_squared_error"}
        base["data"] = {"loader": "hostile_code:load"}
    return base


def path_id(path: tuple[str, ...]) -> str:
    return ".".join(path)


def variants() -> tuple[list[Variant], list[Variant]]:
    refused: list[Variant] = []
    accepted: list[Variant] = []
    for path, kind in _leaves(ExperimentConfig):
        dotted, base = ".".join(path), _base_for(path)

        def bad(tag: str, value: Any, name: str = dotted, base=base, path=path) -> None:
            refused.append(Variant(f"{path_id(path)}:{tag}", name, _set(base, list(path), value)))

        if kind == "numeric":
            for tag, value in NUMBERS.items():
                bad(tag, value)
            bad("list", [1])
            bad("dict", {"a": 1})
        elif kind == "list":
            for tag, value in NUMBERS.items():
                if not (dotted == "script.command" and isinstance(value, str)):  # text is legal
                    bad(tag, [value], f"{dotted}.0")
            bad("scalar", 64)
            bad("nested", [[64]], f"{dotted}.0")
            bad("too-many", [8] * 1000)
            if dotted == "script.command":  # arguments: text, passed as they are, never parsed
                for tag, value in BROKEN_TEXT.items():
                    bad(tag, ["python", value], f"{dotted}.1")
                for tag, value in INJECTIONS.items():
                    data = _set(base, list(path), ["python", value])
                    accepted.append(
                        Variant(f"{dotted}:{tag}", "", data, None, path, data["script"]["command"])
                    )
        elif kind == "options":
            for tag, value in {**BROKEN_TEXT, "inf": float("inf"), "nan": float("nan")}.items():
                bad(f"value-{tag}", {"k": value}, f"{dotted}.k")
            for tag, value in {**INJECTIONS, "empty": "", "dash": "-k"}.items():
                bad(f"key-{tag}", {value: 1})
            bad("too-many", {f"k{i}": 1 for i in range(200)})
            bad("deep", {"k": [[[[[1]]]]]}, f"{dotted}.k")
            for tag, value in {"list": ["a"], "string": "a=b", "number": 1}.items():
                bad(tag, value)
            for tag, value in INJECTIONS.items():
                data = _set(base, list(path), {"k": value})
                accepted.append(
                    Variant(f"{dotted}:value-{tag}", "", data, None, (*path, "k"), value)
                )
        elif kind == "arguments":
            for tag, value in {**BROKEN_TEXT, "inf": float("inf"), "nan": float("nan")}.items():
                bad(f"value-{tag}", {"k": value}, f"{dotted}.k")
            for tag, value in {**INJECTIONS, "empty": "", "dash": "-k"}.items():
                bad(f"key-{tag}", {value: 1})
            bad("too-many", {f"k{i}": 1 for i in range(200)})
            for tag, value in {"list": ["a"], "string": "a=b", "number": 1}.items():
                bad(tag, value)
            bad("value-list", {"k": [1]}, f"{dotted}.k")
            for tag, value in INJECTIONS.items():
                data = _set(base, list(path), {"k": value})
                data["script"]["command"] = ["python", "train.py", "{k}"]
                accepted.append(
                    Variant(f"{dotted}:value-{tag}", "", data, None, (*path, "k"), value)
                )
        elif kind == "bool":
            for tag, value in {**BROKEN_TEXT, **WRONG_TYPES, "yes": "yes", "one": 1}.items():
                bad(tag, value)
        elif kind == "rank_mapping":
            for tag, value in NUMBERS.items():
                bad(f"value-{tag}", {1: value}, f"{dotted}.1")
                bad(f"key-{tag}", {value: 2.0} if tag not in ("inf", "nan") else {"x": 2.0})
            bad("key-text", {"k": 2.0})
            bad("key-not-a-rank", {9: 2.0})
            bad("too-many", {i: 2.0 for i in range(2000)})
            for tag, value in {"list": [1], "string": "1=3", "number": 1}.items():
                bad(tag, value)
        elif kind in ("choice", "text"):
            for tag, value in {**BROKEN_TEXT, **WRONG_TYPES}.items():
                bad(tag, value)
            for tag, value in INJECTIONS.items():
                if dotted == "name":
                    accepted.append(
                        Variant(
                            f"{dotted}:{tag}", "", _set(base, list(path), value), None, path, value
                        )
                    )
                else:
                    bad(tag, value)
        elif kind == "mapping":
            for tag, value in BROKEN_TEXT.items():
                bad(f"value-{tag}", {"k": value})
            for tag, value in BROKEN_TEXT.items():
                if tag != "long":
                    bad(f"key-{tag}", {value: "v"})
            bad("key-empty", {"": "v"})
            bad("key-long", {"k" * 300: "v"})
            bad("too-many", {f"k{i}": "v" for i in range(200)})
            for tag, value in {"list": ["a"], "string": "a=b", "number": 1}.items():
                bad(tag, value)
            bad("value-number", {"k": 1})
            for tag, value in INJECTIONS.items():
                accepted.append(
                    Variant(
                        f"{dotted}:value-{tag}",
                        "",
                        _set(base, list(path), {"k": value}),
                        None,
                        (*path, "k"),
                        value,
                    )
                )
                # A key is held to the store's rule (letters, digits, '_', '.', '-', '/'):
                # a path is a legal key, a quote, a space, a '$(' or a brace is not.
                if tag not in LEGAL_TAG_KEYS:
                    bad(f"key-{tag}", {value: "v"})
                    continue
                accepted.append(
                    Variant(
                        f"{dotted}:key-{tag}",
                        "",
                        _set(base, list(path), {value: "v"}),
                        None,
                        (*path, value),
                        "v",
                    )
                )
    deep: Any = 1
    for _ in range(25):
        deep = {"a": deep}
    for section in ExperimentConfig.model_fields:
        if isinstance(BASE.get(section), dict) or section == "tags":
            for tag, value in {"list": [1, 2], "string": "x", "deep": deep}.items():
                refused.append(Variant(f"{section}:{tag}", section, _set(BASE, [section], value)))
            if section != "tags":
                refused.append(
                    Variant(
                        f"{section}:unknown-key",
                        f"{section}.bogus",
                        _set(BASE, [section, "bogus"], 1),
                    )
                )
    refused += [
        Variant("top:unknown-key", "bogus", {**BASE, "bogus": 1}),
        Variant("top:list", "", text="- 1\n- 2\n"),
        Variant("top:string", "", text="just text\n"),
        Variant("top:alias-bomb", "", text=_bomb()),
        Variant("top:alias-bomb-in-field", "", text=_bomb().replace("l8: &l8", "tags: &l8")),
        Variant("top:recursive-alias", "", text="tags: &t {k: *t}\n"),
        Variant("top:brackets-5000", "", text="[" * 5000),
        Variant("top:flow-maps-5000", "", text="{a: " * 5000 + "1" + "}" * 5000),
        Variant("top:block-maps-200", "", text="".join("  " * i + "a:\n" for i in range(200))),
        Variant("top:not-yaml", "", text="optimizer: [1, 2\n"),
        Variant("top:nul-in-text", "", text="name: a\x00b\n"),
    ]
    return refused, accepted


REFUSED, ACCEPTED = variants()


def test_the_suite_attacks_every_field():
    attacked = {v.id.split(":")[0] for v in REFUSED}
    every = {".".join(p) for p, _ in _leaves(ExperimentConfig)}
    assert every <= attacked, every - attacked
    assert len(REFUSED) + len(ACCEPTED) >= 200


# A builder and a loader that take any options, for the legal option values POST /jobs tries.
HOSTILE_CODE = """
import keras
import numpy as np


def build(input_shape, **options):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(1)])


def load(**options):
    x = np.ones((8, 3), "float32")
    return (x, x.sum(axis=1)), (x, x.sum(axis=1))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One service app on a real SQLite store; a working directory deeper than `../..`."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "hostile_code.py").write_text(HOSTILE_CODE)
    home, data = root / "home", root / "data"
    data.mkdir()
    work = root.joinpath(*"abcdefgh")
    work.mkdir(parents=True)
    saved = {
        k: os.environ.get(k) for k in ("EASGD_HOME", "EASGD_DB_URL", "HOROVOD_RANK", "PYTHONPATH")
    }
    os.environ["EASGD_HOME"] = str(home)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), saved["PYTHONPATH"]) if p)
    for k in ("EASGD_DB_URL", "HOROVOD_RANK"):
        os.environ.pop(k, None)
    cwd = Path.cwd()
    os.chdir(work)
    settings = ServiceSettings(hosts={"localhost": 2}, data_dirs=[data.resolve()])
    store = Store(f"sqlite:///{home / 'easgd.db'}")
    try:
        with TestClient(create_app(settings, store, start_supervisor=False)) as client:
            yield client, store, home, work
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _in_process(main, argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str, name: str, file: Path) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    prefix = "easgd: invalid configuration: "
    assert lines[0].startswith(prefix), lines[0]
    rest = lines[0][len(prefix) :]
    names_field = bool(name) and rest.startswith(name) and rest[len(name)] in ":."
    assert names_field or rest.startswith(f"{file}: "), rest
    return rest


def _post(client: TestClient, config: Any) -> Any:
    body = json.dumps({"config": config}, allow_nan=True)
    return client.post("/jobs", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("variant", REFUSED, ids=[v.id for v in REFUSED])
def test_refused_everywhere_with_one_line(variant, env, capsys, tmp_path):
    client, store, home, work = env
    jobs_before = len(store.list_jobs())
    file = tmp_path / "hostile.yaml"
    file.write_text(variant.yaml_text, encoding="utf-8", errors="surrogateescape")

    code, out, err = _in_process(cli.main, ["validate", str(file)], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    file_level = _one_line(err, variant.field, file).startswith(f"{file}: ")

    run_dir = tmp_path / "run"
    argv = ["--config", str(file), "--out", str(run_dir), "--no-store"]
    code, out, err = _in_process(training_main.main, argv, capsys)
    assert code == 2 and "Traceback" not in out + err
    _one_line(err, variant.field, file)
    assert not run_dir.exists()

    # As YAML text the service reads it as the file was read; as JSON the schema sees it.
    sent = [(variant.yaml_text, "config" if file_level else variant.field)]
    if variant.text is None:
        sent.append((variant.data, variant.field))
    for config, name in sent:
        r = _post(client, config)
        assert r.status_code == 422, (r.status_code, r.text)
        assert "Traceback" not in r.text
        msgs = [d["msg"] for d in r.json()["detail"]]
        assert len(msgs) == 1, msgs
        assert msgs[0].startswith(name), msgs
    assert len(store.list_jobs()) == jobs_before
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())
    assert not (work / MARKER).exists()


@pytest.mark.parametrize("variant", ACCEPTED, ids=[v.id for v in ACCEPTED])
def test_legal_text_is_stored_verbatim_never_run(variant, env, capsys, tmp_path):
    client, store, home, work = env
    file = tmp_path / "legal.yaml"
    file.write_text(variant.yaml_text, encoding="utf-8")

    code, out, err = _in_process(cli.main, ["validate", str(file)], capsys)
    assert code == 0, err
    node = yaml.safe_load(out)
    for part in variant.path:
        node = node[part]
    assert node == variant.value

    r = _post(client, variant.data)
    assert r.status_code == 201, r.text
    job = r.json()
    node = client.get(f"/jobs/{job['id']}").json()["config"]
    for part in variant.path:
        node = node[part]
    assert node == variant.value
    assert store.get_job(job["id"]).status == "queued"
    assert client.post(f"/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    assert not (work / MARKER).exists()
    assert store.search_runs(None) == []  # the runs table is still there, and empty


def test_not_utf8_file_is_one_line_everywhere(env, capsys, tmp_path):
    file = tmp_path / "latin1.yaml"
    file.write_bytes("name: café\nseed: 1\n".encode("latin-1"))
    expected = f"{file}: is not UTF-8 text (byte 0xe9 at offset 9); save it as UTF-8"
    for main, argv in (
        (cli.main, ["validate", str(file)]),
        (training_main.main, ["--config", str(file), "--no-store"]),
    ):
        code, _, err = _in_process(main, argv, capsys)
        assert code == 2 and err == f"easgd: invalid configuration: {expected}\n"


def test_not_utf8_body_is_refused_by_the_api(env):
    client, store, _, _ = env
    before = len(store.list_jobs())
    r = client.post(
        "/jobs",
        content=b'{"config": "name: caf\xe9"}',
        headers={"content-type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.text
    assert len(store.list_jobs()) == before


@pytest.mark.parametrize(
    "set_value, field",
    [
        ("seed=" + str(2**70), "seed"),
        ("training.epochs=.inf", "training.epochs"),
        ("training.epochs=1e400", "training.epochs"),
        ("name=" + b"caf\xe9".decode("utf-8", "surrogateescape"), "--set name"),
        ("tags=" + "[" * 5000, "--set tags"),
        (
            "tags=[&a [x,x,x,x,x,x,x,x,x]"
            + "".join(
                f", &b{i} [{', '.join(['*a' if i == 0 else f'*b{i - 1}'] * 9)}]" for i in range(8)
            )
            + "]",
            "--set tags",
        ),
    ],
    ids=["huge-seed", "inf", "1e400", "not-utf8", "deep", "alias-bomb"],
)
def test_hostile_set_values(set_value, field, env, capsys, tmp_path):
    client, store, _, _ = env
    file = tmp_path / "base.yaml"
    file.write_text(yaml.safe_dump(BASE))
    for main, argv in (
        (cli.main, ["validate", str(file), "--set", set_value]),
        (training_main.main, ["--config", str(file), "--set", set_value, "--no-store"]),
    ):
        code, _, err = _in_process(main, argv, capsys)
        assert code == 2 and "Traceback" not in err
        assert err.count("\n") == 1 and err.startswith(f"easgd: invalid configuration: {field}:")
    before = len(store.list_jobs())
    body = json.dumps({"config": BASE, "set": [set_value]})  # a surrogate goes as \\udce9
    r = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text
    assert len(store.list_jobs()) == before


SAMPLE = [
    "top:alias-bomb",
    "top:brackets-5000",
    "seed:huge",
    "training.epochs:inf",
    "name:newline",
    "data.path:traversal",
    "resources.hosts:shell-subst",
    "tags:deep",
]


@pytest.mark.parametrize("variant_id", SAMPLE)
def test_real_processes_agree(variant_id, tmp_path):
    """The in-process calls above are the real entry points: the installed commands say the
    same line."""
    variant = next(v for v in REFUSED if v.id == variant_id)
    file = tmp_path / "hostile.yaml"
    file.write_text(variant.yaml_text, encoding="utf-8", errors="surrogateescape")
    env = {**os.environ, "EASGD_HOME": str(tmp_path / "home")}
    env.pop("HOROVOD_RANK", None)
    work = tmp_path.joinpath(*"abcdefgh")
    work.mkdir(parents=True)
    for cmd in (
        [str(BIN / "easgd"), "validate", str(file)],
        [sys.executable, "-m", "training", "--config", str(file), "--no-store"],
    ):
        p = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": str(ROOT)},
            cwd=work,
            timeout=120,
        )
        assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr
        _one_line(p.stderr, variant.field, file)
    assert not (tmp_path / "home" / "runs").exists()


@pytest.mark.parametrize(
    "body",
    [
        {"config": BASE, "set": ["name=caf\udce9"]},
        {"config": BASE, "name": "caf\udce9"},
        {"config": "name: caf\udce9\n"},
        {"config": {**BASE, "name": "caf\udce9"}},
    ],
    ids=["set", "name", "yaml-text", "config-object"],
)
def test_lone_surrogates_get_422_not_500(body, env):
    """JSON can carry a lone surrogate (\\udce9); no reply may fail to encode it."""
    client, store, _, _ = env
    before = len(store.list_jobs())
    r = client.post("/jobs", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert len(store.list_jobs()) == before


@pytest.mark.parametrize("depth", [25, 900, 5000])
@pytest.mark.parametrize("kind", ["dict", "list"])
def test_deep_json_bodies_are_4xx(depth, kind, env):
    client, store, _, _ = env
    before = len(store.list_jobs())
    inner = '{"a": ' * depth + "1" + "}" * depth if kind == "dict" else "[" * depth + "]" * depth
    body = '{"config": {"tags": ' + inner + "}}"
    r = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and "nested" in r.text, r.text
    assert len(store.list_jobs()) == before


# ---------------------------------------------------------------------- editing runs
@pytest.fixture
def edited(env):
    """A finished run of the shared store, removed again after the test."""
    client, store, _, work = env
    store.create_run("hostile-run", params={}, tags={"team": "vision"})
    store.finish_run("hostile-run", "finished")
    try:
        yield client, store, work
    finally:
        store.delete_run("hostile-run")


def _patch(client: TestClient, body: str | bytes) -> Any:
    return client.patch(
        "/runs/hostile-run", content=body, headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"note": "caf\xe9"}',
        b"not json",
        b'{"note": "' + b"x" * (2 << 20) + b'"}',
        '{"tags": {"k": "caf\\udce9"}}',
        '{"note": "caf\\udce9"}',
        '{"tags": {"caf\\udce9": "v"}}',
        '{"note": NaN}',
        '{"note": 1e400}',
        '{"tags": {"k": Infinity}}',
        '{"tags": {"k": true}}',
        '{"tags": "k=v"}',
        '{"tags": [["k", "v"]]}',
        '{"note": ["a"]}',
        '{"tags": {"' + "k" * 300 + '": "v"}}',
        '{"tags": {"k": "' + "x" * 10_000 + '"}}',
        '{"tags": {"k": "two\\u2028lines"}}',
        "[]",
        "null",
        '"note"',
    ]
    + [
        '{"tags": {"k": ' + (inner * depth) + "1" + closing * depth + "}}"
        for depth in (25, 900, 5000)
        for inner, closing in (('{"a": ', "}"), ("[", "]"))
    ],
    ids=lambda b: repr(b[:24]) + f"...{len(b)}",
)
def test_hostile_run_patches_are_4xx_and_change_nothing(edited, body):
    client, store, _ = edited
    r = _patch(client, body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    assert "Traceback" not in r.text
    assert store.get_run("hostile-run").tags == {"team": "vision"}


@pytest.mark.parametrize("text", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_injection_text_in_tags_and_notes_is_stored_verbatim(edited, text):
    client, store, work = edited
    r = client.patch("/runs/hostile-run", json={"tags": {"why": text}, "note": text})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == {"team": "vision", "why": text, "note": text}
    quoted = text.replace("'", "''")
    found = client.get("/runs", params={"filter": f"tags.note = '{quoted}'"}).json()
    assert [run["id"] for run in found] == ["hostile-run"]
    assert {t for t in store.table_names()} >= {"runs", "tags"}
    assert not (work / MARKER).exists()


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("PATCH", "/runs/..%2F..%2Fetc", 404),  # no route: the id cannot hold a '/'
        ("DELETE", "/runs/..%2F..%2Fetc?files=true", 404),
        ("POST", "/runs/%00/archive", 422),
        ("POST", "/runs/" + "r" * 65 + "/restore", 422),
        ("DELETE", "/runs/hostile-run?files=rm%20-rf", 422),
        ("DELETE", "/runs/hostile-run?files=" + "1" * 5000, 422),
    ],
)
def test_hostile_run_ids_and_flags_are_4xx(edited, method, path, status):
    client, store, _ = edited
    r = client.request(method, path, json={"note": "x"} if method == "PATCH" else None)
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert store.get_run("hostile-run").tags == {"team": "vision"}


@pytest.mark.parametrize(
    "argv, phrase",
    [
        ([b"note", b"r1", b"caf\xe9"], "note: character U+DCE9 at position 3"),
        ([b"tag", b"r1", b"k=\xff\xfe"], "tag 'k': character U+DCFF at position 0"),
        ([b"tag", b"r1", b"caf\xe9=v"], "tag key: letters, digits"),
        (["tag", "r1", "k=" + "x" * 100_000], "tag 'k': at most 5000 characters"),
        (["tag", "r1", *[f"k{i}=v" for i in range(101)]], "at most 100 changes at once"),
        (["note", "r1", "\x1b]0;pwned\x07"], "note: character U+001B at position 0"),
        (["delete", "../../etc", "--yes", "--files"], "run id: letters, digits"),
        (["archive", "r1; rm -rf /"], "run id: letters, digits"),
        (["restore", "r1\n"], "run id: letters, digits"),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, list) else None,
)
def test_hostile_run_edits_on_the_command_line_are_one_line(argv, phrase, tmp_path):
    home = tmp_path / "home"
    store = Store(f"sqlite:///{home / 'easgd.db'}")
    store.init()
    store.create_run("r1", params={}, tags={"team": "vision"})
    store.finish_run("r1", "finished")
    env = {**os.environ, "EASGD_HOME": str(home)}
    env.pop("EASGD_DB_URL", None)
    p = subprocess.run(
        [str(BIN / "easgd"), "runs", *argv], capture_output=True, env=env, cwd=tmp_path, timeout=60
    )
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 2 and p.stdout == b"" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("easgd: ") and phrase in err, err
    run = store.get_run("r1")
    assert run.tags == {"team": "vision"} and run.archived_at is None


def test_shell_text_in_a_note_is_stored_verbatim_never_run(tmp_path):
    home = tmp_path / "home"
    store = Store(f"sqlite:///{home / 'easgd.db'}")
    store.init()
    store.create_run("r1", params={})
    store.finish_run("r1", "finished")
    note = INJECTIONS["shell-subst"] + " " + INJECTIONS["sql"]
    p = subprocess.run(
        [str(BIN / "easgd"), "runs", "note", "r1", note],
        capture_output=True,
        text=True,
        env={**os.environ, "EASGD_HOME": str(home)},
        cwd=tmp_path,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert store.get_run("r1").tags == {"note": note}
    assert not (tmp_path / MARKER).exists() and "runs" in store.table_names()

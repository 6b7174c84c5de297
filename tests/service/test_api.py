"""The REST API's edges, on the real FastAPI app and a real SQLite store: hostile ids, filters
and bodies get a documented 4xx, never a 500; every 4xx has the shape the OpenAPI document
declares. The supervisor is not started, so a POSTed job is only queued, never launched."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import pytest
from fastapi.testclient import TestClient

from db.store import Store
from service.api import create_app
from service.settings import ServiceSettings

TINY = (Path(__file__).parent.parent / "training" / "tiny.yaml").read_text()
HUGE = "9223372036854775808"  # 2**63: past any SQL integer


def _client(home: Path, token: str | None = None) -> TestClient:
    settings = ServiceSettings(
        hosts={"localhost": 2},
        db_url=f"sqlite:///{home / 'easgd.db'}",
        data_dirs=[home / "data"],
        token=token,
    )
    return TestClient(create_app(settings, start_supervisor=False), raise_server_exceptions=False)


@pytest.fixture
def client(easgd_home) -> Iterator[TestClient]:
    with _client(easgd_home) as c:
        yield c


@pytest.fixture
def store(client, easgd_home) -> Store:
    return Store(f"sqlite:///{easgd_home / 'easgd.db'}")


def _validation_error(client: TestClient, body: dict) -> None:
    """The body matches the document's own 422 schema (FastAPI's HTTPValidationError)."""
    doc = client.get("/openapi.json").json()
    schema = {"$ref": "#/components/schemas/HTTPValidationError", "components": doc["components"]}
    jsonschema.validate(body, schema)
    assert body["detail"], body


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", f"/jobs/{HUGE}"),
        ("GET", f"/jobs/{HUGE}/logs"),
        ("POST", f"/jobs/{HUGE}/cancel"),
        ("GET", "/jobs/99999999999999999999999999"),
        ("GET", "/jobs/2"),
    ],
)
def test_a_job_id_past_any_row_is_404(client, method, path):
    client.post("/jobs", json={"config": TINY})
    r = client.request(method, path)
    assert r.status_code == 404, r.text
    assert r.json()["detail"].startswith("no job ")


@pytest.mark.parametrize(
    "path, loc",
    [
        ("/jobs/0", ["path", "job_id"]),
        ("/jobs/-1/logs", ["path", "job_id"]),
        (f"/jobs?limit={HUGE}", ["query", "limit"]),
        (f"/jobs/1/logs?tail={HUGE}", ["query", "tail"]),
        (f"/runs?limit={HUGE}", ["query", "limit"]),
        (f"/runs/r1/metrics?key=center_accuracy&max_points={HUGE}", ["query", "max_points"]),
    ],
)
def test_out_of_range_numbers_are_422_naming_the_parameter(client, path, loc):
    r = client.get(path)
    assert r.status_code == 422, r.text
    _validation_error(client, r.json())
    assert r.json()["detail"][0]["loc"] == loc


@pytest.mark.parametrize(
    "params, loc, phrase",
    [
        ({"filter": "(" * 2000 + "status = 'x'" + ")" * 2000}, "filter", "at most 3000"),
        ({"filter": "(" * 1000 + "status = 'x'" + ")" * 1000}, "filter", "nested deeper than"),
        ({"filter": "status = 'x' and " * 2000 + "workers = 1"}, "filter", "at most 3000"),
        ({"order_by": ["duration"] * 11}, "order_by", "at most 10 items"),
        ({"filter": "status = "}, "filter", "expected a value"),
        ({"filter": "metrics.loss = 'high'"}, "filter", "compares with numbers"),
        ({"order_by": "AAA"}, "order_by", "unknown field 'AAA'"),
    ],
)
def test_bad_filters_are_422_in_the_documented_shape(client, params, loc, phrase):
    r = client.get("/runs", params=params)
    assert r.status_code == 422, r.text
    _validation_error(client, r.json())
    (error,) = r.json()["detail"]
    assert error["loc"] == ["query", loc] and phrase in error["msg"]


def test_an_empty_ordering_is_no_ordering(client):
    assert client.get("/runs?order_by=").status_code == 200


def test_mlflow_quoted_keys_work_through_the_api(client, store):
    store.create_run("r1", params={"optimizer.algorithm": "eamsgd"}, name="r1")
    store.create_run("r2", params={"optimizer.algorithm": "sync"}, name="r2")
    r = client.get("/runs", params={"filter": 'params."optimizer.algorithm" != "sync"'})
    assert r.status_code == 200, r.text
    assert [run["id"] for run in r.json()] == ["r1"]


@pytest.mark.parametrize(
    "path, loc",
    [
        ("/runs/%7C", ["path", "run_id"]),
        ("/runs/a%20b/metrics?key=loss", ["path", "run_id"]),
        ("/runs/r1/metrics?key=bad%20key", ["query", "key", 0]),
    ],
)
def test_malformed_run_ids_and_keys_are_422_in_the_documented_shape(client, path, loc):
    r = client.get(path)
    assert r.status_code == 422, r.text
    _validation_error(client, r.json())
    assert r.json()["detail"][0]["loc"] == loc


def test_configuration_errors_are_422_in_the_documented_shape(client, store):
    r = client.post("/jobs", json={"config": {"optimizer": {"tau": 0}}})
    assert r.status_code == 422
    _validation_error(client, r.json())
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "config", "optimizer", "tau"]
    assert error["field"] == "optimizer.tau" and "received: 0" in error["msg"]
    r = client.post("/jobs", json={"config": "optimizer: [unclosed"})
    assert r.status_code == 422 and "not valid YAML" in r.json()["detail"][0]["msg"]
    _validation_error(client, r.json())
    assert store.list_jobs() == []


def test_a_time_limit_is_refused_by_a_service_that_cannot_enforce_it(client, store):
    """Only a Slurm service ends an attempt at its limit: horovodrun's would run on past it."""
    r = client.post("/jobs", json={"config": TINY, "set": ["resources.time_limit_minutes=5"]})
    assert r.status_code == 422, r.text
    _validation_error(client, r.json())
    (error,) = r.json()["detail"]
    assert error["field"] == "resources.time_limit_minutes"
    assert "only a Slurm service" in error["msg"] and "(received: 5)" in error["msg"]
    assert store.list_jobs() == []


@pytest.mark.parametrize("name", ["two\nlines", "nul\x00byte", "\x1b[31mred", "del\x7f"])
def test_job_names_with_control_characters_are_refused(client, store, name):
    r = client.post("/jobs", json={"config": TINY, "name": name})
    assert r.status_code == 422, r.text
    _validation_error(client, r.json())
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "name"] and "is not printable text" in error["msg"]
    assert store.list_jobs() == []
    ok = client.post("/jobs", json={"config": TINY, "name": "plain é name"})
    assert ok.status_code == 201 and ok.json()["name"] == "plain é name"


@pytest.mark.parametrize(
    "body, phrase",
    [
        (b"not json", "JSON"),
        (b'{"name": "\xff\xfe"}', "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"config": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (
            b'{"config": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}",
            "nested deeper than 20 levels",
        ),
        (b'{"config": "' + b"x" * (2 << 20) + b'"}', "Content Too Large"),
    ],
)
def test_bodies_that_are_not_json_get_one_clear_4xx(client, store, body, phrase):
    r = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert phrase in r.text
    assert store.list_jobs() == []


@pytest.mark.parametrize(
    "body, loc",
    [
        ('{"config": {}, "name": "caf\\udce9"}', ["body", "name"]),
        ('{"config": {}, "set": ["name=caf\\udce9"]}', ["body", "set", 0]),
        ('{"config": {}, "workers": Infinity}', ["body", "workers"]),
        ('{"config": {}, "workers": 1e400}', ["body", "workers"]),
        ('{"config": {}, "priority": NaN}', ["body", "priority"]),
    ],
)
def test_what_json_allows_and_utf8_does_not_is_422(client, store, body, loc):
    """A lone surrogate escape or a non-finite number is legal JSON input that cannot be
    echoed back as it came."""
    r = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    _validation_error(client, r.json())
    assert r.json()["detail"][0]["loc"] == loc
    assert store.list_jobs() == []


def test_options_and_405_list_every_method_of_the_path(client):
    for path, methods in (
        ("/jobs", {"GET", "POST", "OPTIONS"}),
        ("/jobs/1", {"GET", "OPTIONS"}),
        ("/jobs/1/cancel", {"POST", "OPTIONS"}),
        ("/runs/r1/metrics", {"GET", "OPTIONS"}),
        ("/runs/r1", {"GET", "PATCH", "DELETE", "OPTIONS"}),
        ("/runs/r1/archive", {"POST", "OPTIONS"}),
    ):
        r = client.options(path)
        assert r.status_code == 204, (path, r.status_code)
        assert {m.strip() for m in r.headers["allow"].split(",")} == methods, path
        for wrong in {"DELETE", "PATCH", "PUT"} - methods:
            r = client.request(wrong, path)
            assert r.status_code == 405, (wrong, path)
            assert {m.strip() for m in r.headers["allow"].split(",")} == methods, (wrong, path)
    assert client.options("/nowhere").status_code == 404


def test_every_error_a_route_answers_is_documented(client):
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        ("/jobs", "post"): {"400", "401", "422"},
        ("/jobs", "get"): {"401", "422"},
        ("/jobs/{job_id}", "get"): {"401", "404", "422"},
        ("/jobs/{job_id}/cancel", "post"): {"401", "404", "422"},
        ("/jobs/{job_id}/logs", "get"): {"401", "404", "422"},
        ("/runs", "get"): {"401", "422"},
        ("/runs/{run_id}", "get"): {"401", "404", "422"},
        ("/runs/{run_id}/metrics", "get"): {"401", "404", "422"},
        ("/runs/{run_id}", "patch"): {"400", "401", "404", "413", "422"},
        ("/runs/{run_id}", "delete"): {"401", "404", "409", "422"},
        ("/runs/{run_id}/deletion", "get"): {"401", "404", "409", "422"},
        ("/runs/{run_id}/archive", "post"): {"401", "404", "409", "422"},
        ("/runs/{run_id}/restore", "post"): {"401", "404", "422"},
        ("/health", "get"): {"401"},
    }
    for (path, method), codes in expected.items():
        responses = paths[path][method]["responses"]
        assert codes <= set(responses), (path, method, codes - set(responses))
        for code in codes - {"413"}:  # every error is JSON, even where the route's reply is not
            assert list(responses[code]["content"]) == ["application/json"], (path, code)


@pytest.mark.parametrize(
    "header, status",
    [
        ("Bearer s3cret", 200),
        ("bearer s3cret", 200),
        ("BEARER  s3cret", 200),
        ("Bearer wrong", 401),
        ("Basic s3cret", 401),
        ("bearers3cret", 401),
        ("s3cret", 401),
    ],
)
def test_the_bearer_scheme_is_case_insensitive(easgd_home, header, status):
    with _client(easgd_home, token="s3cret") as c:
        r = c.get("/jobs", headers={"Authorization": header})
        assert r.status_code == status, r.text
        assert c.get("/jobs").status_code == 401


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["resources.workers=3"], "resources.workers"),  # the service has 2 slots
        (["resources.hosts=elsewhere:2"], "resources.hosts"),
        (["resources.gpus_per_worker=1"], "resources.gpus_per_worker"),
    ],
)
def test_a_job_the_service_cannot_place_is_refused_before_it_is_queued(
    client, store, overrides, field
):
    r = client.post("/jobs", json={"config": TINY, "set": overrides})
    assert r.status_code == 422, r.text
    _validation_error(client, r.json())
    (error,) = r.json()["detail"]
    assert error["field"] == field and "this service has" in error["msg"]
    assert error["loc"] == ["body", "config", *field.split(".")]
    assert store.list_jobs() == []
    assert (
        client.post(
            "/jobs", json={"config": TINY, "set": ["resources.hosts=localhost:2"]}
        ).status_code
        == 201
    )


def test_a_mixing_matrix_entry_past_any_float_is_422(client, store):
    big = 10**400
    body = {"config": {"optimizer": {"algorithm": "cdsgd", "topology": [[big, 0], [0, 1]]}}}
    r = client.post("/jobs", json=body)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["field"] == "optimizer.topology" and "is not finite" in error["msg"]
    assert store.list_jobs() == []


@pytest.mark.parametrize(
    "body, loc",
    [
        ({"workers": 0}, ["body", "workers"]),
        ({"workers": 10**30}, ["body", "workers"]),
        ({"workers": "two"}, ["body", "workers"]),
        ({"workers": True}, ["body", "workers"]),
        ({"workers": 2, "now": True}, ["body", "now"]),
        ({}, ["body", "workers"]),
    ],
)
def test_a_bad_scale_is_422_naming_the_field(client, body, loc):
    client.post("/jobs", json={"config": TINY})
    r = client.post("/jobs/1/scale", json=body)
    assert r.status_code == 422, r.text
    _validation_error(client, r.json())
    assert r.json()["detail"][0]["loc"] == loc


@pytest.mark.parametrize("path", ["/jobs/1/checkpoint", "/jobs/1/scale"])
def test_checkpoint_and_scale_of_a_job_not_running_here_are_409(client, path):
    client.post("/jobs", json={"config": TINY})
    r = client.post(path, json={"workers": 1})
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == (
        f"job 1 is queued; only a running job of this service can {path.rsplit('/', 1)[1]}"
    )


# ---------------------------------------------------------------------- editing runs
def _ended_run(store: Store, run_id: str, run_dir: Path | None = None, **kw) -> None:
    store.create_run(run_id, params={}, run_dir=None if run_dir is None else str(run_dir), **kw)
    store.log_metrics(run_id, [("loss", s, float(s), 1.0) for s in range(3)])
    store.finish_run(run_id, "finished")


def _run_dir(home: Path, name: str) -> Path:
    d = home / "runs" / name
    (d / "checkpoints").mkdir(parents=True)
    (d / "metrics.jsonl").write_text("{}\n" * 100)
    (d / "checkpoints" / "meta.json").write_text("{}")
    return d


def test_tags_and_the_note_are_patched_and_found_by_the_filter(client, store):
    _ended_run(store, "r1", tags={"team": "vision", "old": "x"})
    _ended_run(store, "r2")
    body = {"tags": {"stage": "tuned", "old": None}, "note": "diverged at step 40\nlr too high"}
    r = client.patch("/runs/r1", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == {"team": "vision", "stage": "tuned", "note": body["note"]}
    found = client.get("/runs", params={"filter": "tags.note LIKE '%diverged%'"}).json()
    assert [run["id"] for run in found] == ["r1"]
    assert client.patch("/runs/r1", json={"note": None}).json()["tags"] == {
        "team": "vision",
        "stage": "tuned",
    }
    both = client.patch("/runs/r1", json={"note": "the note", "tags": {"note": "a tag"}})
    assert both.json()["tags"]["note"] == "the note"
    lines = client.patch("/runs/r1", json={"tags": {"note": "two\r\nlines", "k": "v"}})
    assert lines.status_code == 200, lines.text
    assert lines.json()["tags"]["note"] == "two\nlines" and lines.json()["tags"]["k"] == "v"
    assert client.patch("/runs/nope", json={"note": "x"}).status_code == 404


@pytest.mark.parametrize(
    "body, loc, phrase",
    [
        ({}, ["body"], "nothing to change"),
        ({"tags": {"bad key": "v"}}, ["body", "tags", "bad key", "[key]"], "pattern"),
        ({"tags": {"k": 3}}, ["body", "tags", "k"], "valid string"),
        ({"tags": {"k": {"a": {"b": 1}}}}, ["body", "tags", "k"], "valid string"),
        ({"tags": ["k"]}, ["body", "tags"], "valid dictionary"),
        ({"tags": {"k": "\x1b[31m"}}, ["body", "tags"], "U+001B at position 0"),
        ({"tags": {"k": "two\nlines"}}, ["body", "tags"], "only the note (the tag 'note') has"),
        ({"note": "x" * 5001}, ["body", "note"], "at most 5000 characters"),
        ({"note": "nul\x00"}, ["body", "note"], "U+0000 at position 3"),
        ({"note": 7}, ["body", "note"], "valid string"),
        ({"note": "a", "archived": True}, ["body", "archived"], "Extra inputs"),
        ({"tags": {f"k{i}": "v" for i in range(101)}}, ["body", "tags"], "at most 100 items"),
    ],
)
def test_a_bad_patch_is_422_naming_the_field_and_changes_nothing(client, store, body, loc, phrase):
    _ended_run(store, "r1", tags={"team": "vision"})
    r = client.patch("/runs/r1", json=body)
    assert r.status_code == 422, r.text
    _validation_error(client, r.json())
    error = r.json()["detail"][0]
    assert error["loc"] == loc and phrase in error["msg"], error
    assert store.get_run("r1").tags == {"team": "vision"}


def test_archived_runs_leave_the_list_until_restored(client, store):
    _ended_run(store, "a")
    _ended_run(store, "b")
    r = client.post("/runs/a/archive")
    assert r.status_code == 200 and r.json()["archived_at"] is not None
    assert [run["id"] for run in client.get("/runs").json()] == ["b"]
    assert [run["id"] for run in client.get("/runs?view=archived").json()] == ["a"]
    assert {run["id"] for run in client.get("/runs?view=all").json()} == {"a", "b"}
    assert client.get("/runs/a").json()["archived_at"] is not None
    bad = client.get("/runs?view=hidden")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "view"]
    assert client.post("/runs/a/restore").json()["archived_at"] is None
    assert {run["id"] for run in client.get("/runs").json()} == {"a", "b"}


@pytest.mark.parametrize("request_", [("POST", "/runs/r1/archive"), ("DELETE", "/runs/r1")])
def test_a_run_still_written_is_409_and_kept(client, store, request_):
    store.create_run("r1", params={})
    r = client.request(*request_)
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == (
        "run 'r1' is running; stop it first (cancel its job, or stop its horovodrun), then "
        f"{'archive' if request_[0] == 'POST' else 'delete'} it"
    )
    assert store.get_run("r1").archived_at is None


def test_delete_removes_the_run_and_with_files_its_directory(client, store, easgd_home):
    kept, gone = _run_dir(easgd_home, "kept"), _run_dir(easgd_home, "gone")
    _ended_run(store, "kept", kept)
    _ended_run(store, "gone", gone)
    r = client.delete("/runs/kept")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "run_id": "kept",
        "metric_points": 3,
        "events": 0,
        "run_dir": str(kept),
        "files_removed": False,
        "message": f"deleted run kept (3 metric points, 0 events); its directory {kept} is kept "
        "(delete with files to remove it)",
    }
    assert kept.is_dir() and client.get("/runs/kept").status_code == 404
    size = sum(f.stat().st_size for f in gone.rglob("*") if f.is_file())
    r = client.delete("/runs/gone", params={"files": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["files_removed"] is True and not gone.exists()
    assert r.json()["message"].endswith(f"and its directory {gone} ({size} B)")
    assert (easgd_home / "runs").is_dir()


@pytest.mark.parametrize("where", ["outside", "symlink", "runs-root", "relative", "shared"])
def test_delete_with_files_refuses_a_directory_not_the_runs_own(
    client, store, easgd_home, tmp_path, where
):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    _run_dir(easgd_home, "other")
    run_dir = {
        "outside": outside,
        "symlink": easgd_home / "runs" / "link",
        "runs-root": easgd_home / "runs",
        "relative": Path("runs/other"),
        "shared": easgd_home / "runs",
    }[where]
    if where == "symlink":
        run_dir.symlink_to(outside, target_is_directory=True)
    if where == "shared":  # runs/parent holds runs/parent/child, another run's
        run_dir = easgd_home / "runs" / "parent"
        (run_dir / "child").mkdir(parents=True)
        (run_dir / "child" / "precious").write_text("keep me")
        _ended_run(store, "neighbour", run_dir / "child")
    _ended_run(store, "r1", run_dir)
    r = client.delete("/runs/r1", params={"files": True})
    assert r.status_code == 409, r.text
    assert r.json()["detail"].startswith(f"run r1: its directory {run_dir} ")
    assert "nothing was deleted" in r.json()["detail"]
    assert store.get_run("r1").metrics["loss"].step == 2
    assert (outside / "precious").read_text() == "keep me"
    assert (easgd_home / "runs" / "other" / "metrics.jsonl").is_file()
    if where == "runs-root":
        assert r.json()["detail"].startswith(
            f"run r1: its directory {run_dir} is the data directory's runs/ folder itself, which "
            "is never removed; nothing was deleted."
        )
    if where == "shared":
        assert r.json()["detail"] == (
            f"run r1: its directory {run_dir} also holds run neighbour's directory; nothing was "
            "deleted. Delete the run without its files, and remove the directory yourself if you "
            "mean to"
        )
        assert (run_dir / "child" / "precious").read_text() == "keep me"
    assert client.delete("/runs/r1").status_code == 200  # without its files it may go
    assert not list((easgd_home / "runs").glob(".deleting-*"))


@contextmanager
def _undeletable(path: Path, moved_to: Callable[[], Path] | None = None) -> Iterator[None]:
    """A file that cannot be removed: immutable for root, in a read-only directory otherwise;
    removable again at the end, where `moved_to` says it went."""
    if os.geteuid() != 0:
        path.parent.chmod(0o500)
        try:
            yield
        finally:
            (moved_to() if moved_to else path).parent.chmod(0o700)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no file here resists removal")
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip(f"chattr +i is not supported on the file system of {path}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(moved_to() if moved_to else path)], check=True)


def test_a_directory_that_cannot_be_removed_is_reported_after_the_run_is_deleted(
    client, store, easgd_home
):
    d = _run_dir(easgd_home, "r1")
    _ended_run(store, "r1", d)

    def aside_file() -> Path:
        (aside,) = (easgd_home / "runs").glob(".deleting-r1-*")
        return aside / "checkpoints" / "meta.json"

    with _undeletable(d / "checkpoints" / "meta.json", aside_file):
        r = client.delete("/runs/r1?files=true")
    assert r.status_code == 200, r.text
    assert r.json()["files_removed"] is False
    reason = "Operation not permitted" if os.geteuid() == 0 else "Permission denied"
    aside = aside_file().parent.parent
    assert r.json()["message"] == (
        f"deleted run r1 (3 metric points, 0 events), but its directory {d} could not be "
        f"removed ({reason}); what is left of it is {aside}: remove that yourself (the service "
        "removes it when it next starts)"
    )
    assert client.get("/runs/r1").status_code == 404
    assert not d.exists() and (aside / "checkpoints" / "meta.json").is_file()

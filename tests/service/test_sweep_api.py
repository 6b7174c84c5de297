"""The REST API's sweeps on the real FastAPI app and a real SQLite store, without the service's
background threads: a sweep is recorded and validated, its trials never start here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml
from fastapi.testclient import TestClient

from service.api import create_app
from service.settings import ServiceSettings
from tests.support import ROOT

SWEEP = (ROOT / "configs" / "sweep-digits-random.yaml").read_text()
BASE = (ROOT / "configs" / "mlp-digits-easgd.yaml").read_text()


def _app(home: Path, token: str | None = None) -> TestClient:
    settings = ServiceSettings(
        hosts={"localhost": 2}, db_url=f"sqlite:///{home / 'easgd.db'}", token=token
    )
    return TestClient(create_app(settings, start_supervisor=False), raise_server_exceptions=False)


@pytest.fixture
def client(easgd_home) -> Iterator[TestClient]:
    with _app(easgd_home) as c:
        yield c


def _unprocessable(client: TestClient, body: dict) -> list[dict]:
    r = client.post("/sweeps", json=body)
    assert r.status_code == 422, r.text
    doc = client.get("/openapi.json").json()
    schema = {"$ref": "#/components/schemas/HTTPValidationError", "components": doc["components"]}
    jsonschema.validate(r.json(), schema)
    return r.json()["detail"]


def test_create_list_show_and_stop(client):
    r = client.post("/sweeps", json={"sweep": SWEEP, "base": BASE, "source": "cli"})
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert (sweep["method"], sweep["metric"], sweep["goal"]) == (
        "random",
        "center_accuracy",
        "maximize",
    )
    assert (sweep["run_cap"], sweep["concurrency"], sweep["seed"]) == (8, 2, 7)
    assert sweep["status"] == "running" and sweep["trials"] == [] and sweep["best_trial"] is None
    assert sweep["base_config"]["data"]["dataset"] == "digits" and "base" not in sweep["spec"]
    assert sweep["warnings"] == [
        "concurrency: 2 trials of 2 workers need 4 slots; the service has 2, so fewer trials run "
        "at once"
    ]
    assert [s["id"] for s in client.get("/sweeps").json()] == [sweep["id"]]
    assert client.get("/sweeps", params={"status": "finished"}).json() == []
    assert client.get(f"/sweeps/{sweep['id']}").json()["spec"] == sweep["spec"]
    stopped = client.post(f"/sweeps/{sweep['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["stop_requested"] is True


def test_a_refused_sweep_names_the_key_in_fastapis_shape(client):
    bad = SWEEP.replace("optimizer.tau:", "optimizer.tauu:")
    (problem,) = _unprocessable(client, {"sweep": bad, "base": BASE})
    assert problem["loc"] == ["body", "sweep", "parameters", "optimizer", "tauu"]
    assert problem["msg"].startswith("parameters.optimizer.tauu: the value 1 is refused")
    (base,) = _unprocessable(client, {"sweep": SWEEP, "base": {"optimizer": {"tau": 0}}})
    assert base["loc"] == ["body", "base"] and "optimizer.tau" in base["msg"]
    (path,) = _unprocessable(client, {"sweep": SWEEP})
    assert "names a file, which only the command line reads" in path["msg"]
    assert client.get("/sweeps").json() == []


VALID = {k: v for k, v in yaml.safe_load(SWEEP).items() if k != "base"}


def _changed(path: str, value) -> dict:
    sweep = json.loads(json.dumps(VALID))
    *parents, last = path.split("/")
    node = sweep
    for key in parents:
        node = node[key]
    node[last] = value
    return {"sweep": sweep, "base": BASE}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"sweep": "method: [\n", "base": BASE}, "sweep"),
        ({"sweep": "- a list", "base": BASE}, "sweep"),
        ({"sweep": 3, "base": BASE}, "sweep"),
        ({"sweep": VALID, "base": "optimizer: {tau: .inf}"}, "optimizer.tau"),
        ({"sweep": VALID, "base": BASE, "extra": 1}, "extra"),
        (_changed("run_cap", 1e308), "run_cap"),
        (_changed("concurrency", 10**9), "concurrency"),
        (_changed("name", "\ud800"), "name"),
        (_changed("metric/goal", "up"), "metric.goal"),
        (_changed("parameters/optimizer.tau/values", [float("nan")]), "optimizer.tau"),
        (_changed("early_terminate/eta", -1), "early_terminate.eta"),
    ],
)
def test_a_hostile_body_gets_a_4xx_naming_what_is_wrong(client, body, named):
    r = client.post(
        "/sweeps",
        content=json.dumps(body).encode("utf-8", "surrogatepass"),
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (400, 422), r.text
    detail = r.json()["detail"]
    said = " ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
    assert named in said, said
    assert client.post("/sweeps", json={"sweep": VALID, "base": BASE}).status_code == 201


def test_unknown_ids_and_missing_tokens(client, tmp_path):
    for method, path in (
        ("GET", "/sweeps/5"),
        ("POST", "/sweeps/5/stop"),
        ("GET", "/sweeps/9" * 3),
    ):
        r = client.request(method, path)
        assert r.status_code in (404, 422), r.text
    assert client.get("/sweeps/5").json() == {
        "detail": "no sweep 5; `easgd sweep list` shows the sweeps there are"
    }
    assert client.get("/sweeps/0").status_code == 422
    with _app(tmp_path / "locked", token="s3cret") as locked:
        assert locked.get("/sweeps").status_code == 401
        ok = locked.get("/sweeps", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_the_openapi_document_has_the_sweeps(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/sweeps"]) == {"get", "post"}
    assert "404" in paths["/sweeps/{sweep_id}"]["get"]["responses"]
    assert {"400", "413", "422"} <= set(paths["/sweeps"]["post"]["responses"])
    assert "post" in paths["/sweeps/{sweep_id}/stop"]

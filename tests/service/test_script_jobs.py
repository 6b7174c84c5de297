"""A user's own training script as a job: `easgd submit --working-dir DIR -- python train.py`,
through a real `easgd serve`, real horovodrun with 2 ranks, and the tracking API's checkpoints;
and the working directory's rules, at both ends, on hostile uploads."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from service import workdir
from service.api import create_app
from service.settings import ServiceSettings
from tests.support import ROOT, processes_of

EXAMPLE = ROOT / "examples" / "keras-mnist-convnet"


def _project(tmp_path: Path) -> Path:
    """A user's directory: the Keras example script, its data, and what an upload leaves out."""
    d = tmp_path / "project"
    d.mkdir()
    shutil.copy(EXAMPLE / "train.py", d / "train.py")
    subprocess.run(
        [sys.executable, str(EXAMPLE / "make_data.py"), str(d / "mnist.npz")], check=True
    )
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (d / "venv" / "lib").mkdir(parents=True)
    (d / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (d / "outputs").mkdir()
    (d / "outputs" / "big.bin").write_bytes(b"\0" * 1024)
    return d


def _rank(service, job_id: int, rank: int) -> psutil.Process:
    for p in processes_of(service.home, job_id):
        try:
            if p.environ().get("HOROVOD_RANK") == str(rank) and "train.py" in p.cmdline():
                return p
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no rank {rank} of job {job_id}")


def _run(service, run_id: str) -> dict:
    return httpx.get(f"{service.url}/runs/{run_id}", timeout=30).json()


@pytest.mark.service
@pytest.mark.horovod
def test_a_script_job_trains_from_a_snapshot_and_is_relaunched_from_its_checkpoint(
    service, tmp_path
):
    project = _project(tmp_path)
    submitted = service.easgd(
        "submit", "-q", "--working-dir", str(project), "--workers", "2", "--exclude", "outputs",
        "--name", "my-script", "--set", "checkpoint.every=10", "--",
        "python", "train.py", "--data", "mnist.npz", "--epochs", "8",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert "uploaded" in submitted.stderr and "2 files" in submitted.stderr, submitted.stderr
    job_id = int(submitted.stdout.strip())
    # Later edits to the directory change neither the queued job nor its relaunch.
    (project / "train.py").write_text("raise SystemExit('the edited script ran')\n")
    service.wait(job_id, {"running"})
    run_id = f"job-{job_id}"
    deadline = time.time() + 120
    while time.time() < deadline:
        run = _run(service, run_id)
        if run.get("last_step", 0) and run["last_step"] >= 25:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the script did not reach step 25: {service.job(job_id)}")
    _rank(service, job_id, 1).kill()  # SIGKILL, as a lost worker

    done = service.wait(job_id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done["status"] == "succeeded", done["message"]
    assert "restarted 1 time(s)" in done["message"], done["message"]
    copy = service.home / "jobs" / str(job_id) / "code"
    assert sorted(p.name for p in copy.iterdir()) == ["mnist.npz", "train.py"]
    run = _run(service, run_id)
    assert (run["status"], run["source"], run["job_id"], run["workers"]) == (
        "finished",
        "cli",
        job_id,
        2,
    )
    steps = 8 * 15  # 2,000 examples a rank, 1,800 after validation_split, batches of 128
    assert run["last_step"] == steps
    kinds = [(e["kind"], e["step"]) for e in run["events"]]
    restart = next(e for e in run["events"] if e["kind"] == "restarted")
    at = restart["step"]
    assert at >= 20 and f"relaunched from the checkpoint at step {at}" in restart["message"]
    assert ("resumed", at) in kinds and kinds[-1] == ("finished", steps), kinds
    for key in ("center_accuracy", "train_loss", "bytes_sent", "system/rank_1/cpu_percent"):
        assert run["metrics"][key]["step"] == steps, key
    assert run["metrics"]["center_accuracy"]["value"] > 0.5  # chance: 0.1
    history = httpx.get(
        f"{service.url}/runs/{run_id}/metrics", params={"key": "train_loss"}, timeout=30
    ).json()
    steps_seen = [step for step, _, _ in history["train_loss"]]
    assert steps_seen == list(range(1, steps + 1)), steps_seen[:40]
    assert (service.home / "runs" / run_id / "center.keras").is_file()


@pytest.mark.service
@pytest.mark.horovod
def test_cancelling_a_script_job_closes_its_run_as_cancelled(service, tmp_path):
    project = _project(tmp_path)
    submitted = service.easgd(
        "submit", "--quiet", "--working-dir", str(project), "--workers", "2", "--",
        "python", "train.py", "--data", "mnist.npz", "--epochs", "100",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = int(submitted.stdout.strip())
    service.wait(job_id, {"running"})
    deadline = time.time() + 120
    while time.time() < deadline and _run(service, f"job-{job_id}").get("last_step", 0) < 3:
        time.sleep(0.3)
    cancelled = service.easgd("jobs", "cancel", str(job_id))
    assert cancelled.returncode == 0, cancelled.stderr
    done = service.wait(job_id, {"succeeded", "failed", "cancelled"}, timeout=60)
    assert done["status"] == "cancelled"
    assert processes_of(service.home, job_id) == []
    run = _run(service, f"job-{job_id}")
    assert run["status"] == "cancelled", run["status"]


# ----------------------------------------------------------------- the directory's rules


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


@pytest.fixture
def api(easgd_home):
    settings = ServiceSettings(
        hosts={"localhost": 2}, db_url=f"sqlite:///{easgd_home / 'easgd.db'}"
    )
    with TestClient(
        create_app(settings, start_supervisor=False), raise_server_exceptions=False
    ) as client:
        yield client


def _bomb() -> bytes:
    """One entry that declares 1 GiB: refused from its header, before anything is read."""
    info = tarfile.TarInfo("zeros.bin")
    info.size = 1 << 30
    return gzip.compress(info.tobuf() + b"\0" * 4096)


def _header_bomb() -> bytes:
    """A pax header of 1 MB (tarfile would read it whole): refused before tarfile reads it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a.py")
        info.pax_headers = {"comment": "x" * 1_000_000}
        tar.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


HOSTILE = {
    "a ../ path": _tar(_file("../escaped.py")),
    "an absolute path": _tar(_file("/tmp/escaped.py")),
    "a link leading outside": _tar(_special("data", tarfile.SYMTYPE, "../../etc")),
    "an absolute link": _tar(_special("passwd", tarfile.SYMTYPE, "/etc/passwd")),
    "a hard link": _tar(_file("a.py"), _special("b.py", tarfile.LNKTYPE, "a.py")),
    "a device": _tar(_special("null", tarfile.CHRTYPE)),
    "a compression bomb": _bomb(),
    "a header bomb": _header_bomb(),
    "a chain of links": _tar(
        _special("d", tarfile.SYMTYPE, "."),
        _special("e", tarfile.SYMTYPE, "d/.."),
        _file("e/pwned.py"),
    ),
    "a name twice": _tar(_file("a.py"), _file("a.py", b"y")),
    "a file inside a file": _tar(_file("a"), _file("a/b.py")),
    "not an archive": b"plain text, not gzip",
    "gzip, not tar": gzip.compress(b"plain text inside gzip " * 100),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_upload_is_refused_in_one_line_and_nothing_is_written(api, easgd_home, case):
    r = api.put(
        "/code", content=HOSTILE[case], headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 400, (case, r.status_code, r.text)
    detail = r.json()["detail"]
    assert detail.startswith("upload: ") and "\n" not in detail, detail
    code = easgd_home / "code"
    assert not code.exists() or list(code.iterdir()) == [], list(code.iterdir())
    assert not (easgd_home.parent / "escaped.py").exists()


def test_an_upload_over_the_size_limit_is_refused_with_413(api):
    r = api.put("/code", content=b"\0" * (workdir.MAX_ARCHIVE_BYTES + 1))
    assert r.status_code == 413


def test_an_upload_is_kept_once_by_its_digest_and_a_job_may_name_only_a_kept_one(
    api, easgd_home, tmp_path
):
    project = _project(tmp_path)
    (project / "link_inside.npz").symlink_to("mnist.npz")
    archive = workdir.pack(project, ["outputs"])
    first = api.put("/code", content=archive).json()
    again = api.put("/code", content=archive).json()
    assert first == again and first["files"] == 3, first
    # The same directory packed again is the same upload, kept once.
    assert api.put("/code", content=workdir.pack(project, ["outputs"])).json() == first
    kept = workdir.snapshot_dir(easgd_home / "code", first["code"])
    assert sorted(p.name for p in kept.iterdir()) == ["link_inside.npz", "mnist.npz", "train.py"]
    # A link inside travels as the file it points to.
    link = kept / "link_inside.npz"
    assert not link.is_symlink() and link.read_bytes() == (kept / "mnist.npz").read_bytes()
    job = {"config": {"code": first["code"], "script": {"command": ["python", "train.py"]}}}
    assert api.post("/jobs", json=job).status_code == 201
    unknown = {**job, "config": {**job["config"], "code": "sha256:" + "0" * 64}}
    r = api.post("/jobs", json=unknown)
    assert r.status_code == 422 and "upload it first" in r.json()["detail"][0]["msg"], r.text


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ({"command": ["python", "\udcff.py"]}, "not UTF-8 text"),
        ({"command": ["python", "x" * 5000]}, "at most 4096 characters"),
        ({"command": ["python", "a\0b"]}, "U+0000 at position 1 is not printable"),
        ({"command": []}, "at least 1 item"),
        ({"command": ["python", "t.py", "--lr", "{lr}"]}, "{lr} has no value"),
        ({"command": "python train.py"}, "list"),
        ({"command": ["python"], "args": {"lr": [1, 2]}}, "a number, text or true/false"),
    ],
)
def test_a_bad_entrypoint_is_refused_with_a_422_and_nothing_queued(api, script, message):
    # As a JSON text: a lone surrogate travels as its escape, \udcff.
    body = json.dumps({"config": {"script": script}})
    r = api.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"][0]["msg"], r.json()
    assert api.get("/jobs").json() == []


def test_packing_refuses_a_link_leading_outside_and_leaves_out_caches(tmp_path):
    project = _project(tmp_path)
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    with tarfile.open(fileobj=io.BytesIO(workdir.pack(project)), mode="r:gz") as tar:
        names = sorted(tar.getnames())
    assert names == ["mnist.npz", "outputs", "outputs/big.bin", "train.py"], names
    (project / "hard.py").hardlink_to(project / "train.py")
    with tarfile.open(fileobj=io.BytesIO(workdir.pack(project)), mode="r:gz") as tar:
        assert tar.getmember("hard.py").isreg()  # not a hard link, which the service refuses
    for name, target, message in (
        ("secrets", tmp_path.parent, "secrets is a link leading outside"),
        ("data_dir", project / "outputs", "data_dir is a link to a directory"),
        ("broken", project / "nothing", "broken is a broken link or a link loop"),
    ):
        (project / name).symlink_to(target)
        with pytest.raises(workdir.WorkdirError, match=message):
            workdir.pack(project)
        (project / name).unlink()


def test_the_cli_refuses_a_non_utf8_argument_before_uploading(tmp_path, capsys):
    from service import cli

    project = _project(tmp_path)
    # No service answers there: a refusal that came after an upload would say so, exit 1.
    code = cli.main(
        ["submit", "--working-dir", str(project), "--api", "http://127.0.0.1:9", "--",
         "python", "train.py", os.fsdecode(b"--name=\xff")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "the command's argument 2: not UTF-8 text" in err and "uploaded" not in err, err


OWN_MODEL = ROOT / "examples" / "own-model"


def _finished_sweep(service, sweep_id: int, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        sweep = httpx.get(f"{service.url}/sweeps/{sweep_id}", timeout=30).json()
        if sweep["status"] != "running":
            break
        time.sleep(2)
    assert sweep["status"] == "finished", sweep
    return sweep


@pytest.mark.service
@pytest.mark.horovod
def test_a_model_and_data_by_import_path_train_as_jobs_and_a_sweep_varies_their_options(service):
    example = ["--working-dir", str(OWN_MODEL)]
    broken = service.easgd(
        "submit", str(OWN_MODEL / "diabetes.yaml"), *example, "--set", "model.builder=nets:nothing"
    )
    assert broken.returncode == 2
    assert broken.stderr.splitlines()[-1].startswith(
        "easgd: 422: model.builder: cannot import 'nets:nothing'"
    ), broken.stderr
    assert httpx.get(f"{service.url}/jobs", timeout=30).json() == []

    submitted = service.easgd("submit", "--quiet", str(OWN_MODEL / "diabetes.yaml"), *example)
    assert submitted.returncode == 0, submitted.stderr
    job_id = int(submitted.stdout.strip())
    done = service.wait(job_id, {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", done["message"]
    run = _run(service, f"job-{job_id}")
    # A regression: its loss and mean absolute error, no accuracy.
    assert "center_accuracy" not in run["metrics"], sorted(run["metrics"])
    mae = httpx.get(
        f"{service.url}/runs/{run['id']}/metrics",
        params={"key": "center_mean_absolute_error"},
        timeout=30,
    ).json()["center_mean_absolute_error"]
    assert mae[-1][0] == run["last_step"] and mae[-1][2] < 0.8 * mae[0][2], mae
    assert run["params"]["model.builder"] == "nets:regressor"

    created = service.easgd("sweep", "create", str(OWN_MODEL / "sweep-width.yaml"), *example)
    assert created.returncode == 0, created.stderr
    sweep = _finished_sweep(service, int(created.stdout))
    trials = sweep["trials"]
    assert sorted(t["params"]["model.options.width"] for t in trials) == [16, 64]
    assert {t["state"] for t in trials} == {"succeeded"}, trials
    for t in trials:
        params = _run(service, t["run_id"])["params"]
        assert params["model.options.width"] == str(t["params"]["model.options.width"]), params


@pytest.mark.service
@pytest.mark.horovod
def test_a_sweep_varies_a_scripts_argument(service, tmp_path):
    project = _project(tmp_path)
    for name in ("job.yaml", "sweep-lr.yaml"):
        shutil.copy(EXAMPLE / name, project / name)
    created = service.easgd(
        "sweep", "create", str(project / "sweep-lr.yaml"), "--working-dir", str(project)
    )
    assert created.returncode == 0, created.stderr
    sweep = _finished_sweep(service, int(created.stdout))
    trials = sorted(sweep["trials"], key=lambda t: t["params"]["script.args.lr"])
    assert [t["params"]["script.args.lr"] for t in trials] == [0.002, 0.02]
    assert {t["state"] for t in trials} == {"succeeded"}, trials
    for t in trials:
        lr = t["params"]["script.args.lr"]
        log = service.easgd("jobs", "logs", str(t["job_id"]), "--tail", "400").stdout
        assert f"train.py --data mnist.npz --epochs 2 --lr {lr}\n" in log, log[-2000:]
        run = _run(service, t["run_id"])
        assert float(run["params"]["optimizer.learning_rate"]) == pytest.approx(lr)
        assert run["metrics"]["center_accuracy"]["step"] == 2 * 15

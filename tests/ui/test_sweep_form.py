"""'Sweep these fields' on the Launch page (ui/sweep_form.py), with AppTest and a real service:
the form's configuration becomes the sweep's base, the service refuses what the schema refuses."""

from __future__ import annotations

import time

import pytest

from tests.support import Service
from tests.ui.pages import small_job_form

pytestmark = [pytest.mark.service, pytest.mark.horovod]


def _start(at) -> None:
    next(b for b in at.button if b.label == "Start sweep").click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_sweep_these_fields_starts_a_sweep_from_the_form(ui_store, easgd_home, monkeypatch):
    service = Service(easgd_home, slots=2).start()
    monkeypatch.setenv("EASGD_API_URL", service.url)
    try:
        at = small_job_form()
        at.number_input(key="form.training.epochs").set_value(1.0).run()
        fields = ["optimizer.learning_rate", "optimizer.tau"]
        at.multiselect(key="sweep.fields").set_value(fields).run()
        assert at.number_input(key="sweep.optimizer.learning_rate.min").value == pytest.approx(
            0.001
        )  # around the form's 0.01
        assert at.checkbox(key="sweep.optimizer.learning_rate.log").value is True
        at.number_input(key="sweep.optimizer.tau.max").set_value(200000).run()
        _start(at)
        assert any("optimizer.tau: input should be less than or equal to 100000" in e.value
                   for e in at.error), [e.value for e in at.error]  # fmt: skip
        assert ui_store.list_sweeps() == []

        at.number_input(key="sweep.optimizer.tau.max").set_value(20).run()
        at.number_input(key="sweep.run_cap").set_value(2).run()
        _start(at)
        assert any("started: 2 trials" in s.value for s in at.success), [e.value for e in at.error]
        (sweep,) = ui_store.list_sweeps()
        assert sweep.source == "ui" and sweep.run_cap == 2 and sweep.method == "random"
        assert sweep.spec["parameters"] == {
            "optimizer.learning_rate": {
                "distribution": "log_uniform_values",
                "min": pytest.approx(0.001),
                "max": pytest.approx(0.1),
            },
            "optimizer.tau": {"min": 5, "max": 20},
        }
        assert sweep.spec["early_terminate"]["type"] == "hyperband"
        base = sweep.base_config
        assert base["data"]["dataset"] == "digits" and base["model"]["name"] == "mlp"
        assert base["training"]["epochs"] == 1.0
    finally:
        for s in ui_store.list_sweeps():
            service.easgd("sweep", "stop", str(s.id))
        deadline = time.time() + 60
        while time.time() < deadline and any(
            not s.status.is_terminal() for s in ui_store.list_sweeps()
        ):
            time.sleep(1)
        service.stop()

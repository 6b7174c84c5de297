"""The GPU paths that need no TensorFlow, on a real NVIDIA GPU: the service finds the GPUs
`nvidia-smi` lists, places a one-GPU rank on one of them (and makes a second job wait for it),
hands it to the ranks in CUDA_VISIBLE_DEVICES, and each rank's system metrics read that GPU
through NVML, as nvidia-smi reads it.

Skipped on machines without an NVIDIA GPU (the CI machine and most developers'), where the same
code is covered by tests of its fallbacks (tests/training/test_system_metrics.py). On a GPU
machine: `pytest -m gpu tests/gpu` (the file needs only psutil, pydantic and nvidia-ml-py).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        shutil.which("nvidia-smi") is None,
        reason="no NVIDIA GPU here (nvidia-smi not found): these tests run on a GPU machine",
    ),
]


def smi(*fields: str) -> list[list[str]]:
    """nvidia-smi's own reading, one row per GPU."""
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return [[v.strip() for v in line.split(",")] for line in out.splitlines() if line.strip()]


def test_the_service_finds_the_gpus_nvidia_smi_lists(monkeypatch):
    from service.settings import detect_gpus

    monkeypatch.delenv("EASGD_GPUS", raising=False)
    assert detect_gpus() == [row[0] for row in smi("index")]
    assert detect_gpus(), "nvidia-smi lists no GPU"


def test_a_one_gpu_rank_is_placed_on_a_free_gpu_and_a_second_waits(monkeypatch):
    from service.placement import allocate, placement_problem
    from service.settings import ServiceSettings, detect_gpus

    monkeypatch.delenv("EASGD_GPUS", raising=False)
    gpus = detect_gpus()
    settings = ServiceSettings(hosts={"localhost": len(gpus) + 1}, gpus=gpus)
    first = allocate(settings, [], workers=1, gpus_per_worker=1)
    assert first is not None and first.gpus == gpus[:1]
    held = [first]
    for _ in gpus[1:]:
        held.append(allocate(settings, held, workers=1, gpus_per_worker=1))
    assert allocate(settings, held, workers=1, gpus_per_worker=1) is None  # every GPU held
    problem = placement_problem(settings, workers=len(gpus) + 1, gpus_per_worker=1)
    assert problem is not None and f"this service has {len(gpus)}" in problem


@pytest.mark.parametrize("by", ["index", "uuid"])
def test_a_ranks_system_metrics_read_the_gpu_it_was_given(monkeypatch, by):
    from training.run.system_metrics import SystemSampler

    index, uuid = smi("index", "uuid")[-1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", index if by == "index" else uuid)
    sampler = SystemSampler(local_rank=0, uses_gpu=True)
    assert sampler.gpu is not None, "NVML found no handle for the visible GPU"
    import pynvml

    assert pynvml.nvmlDeviceGetUUID(sampler.gpu) == uuid
    _, _, percent, memory = sampler.sample()
    used = float(smi("memory.used")[int(index)][0])  # MiB, as ours
    assert 0 <= percent <= 100
    assert math.isfinite(memory) and abs(memory - used) <= max(64.0, 0.05 * used)


def test_utilization_rises_while_the_gpu_computes():
    """A matrix product loop in another process (PyTorch or CuPy, where the machine has one):
    the sampler's utilization, read as a rank reads it, goes above what an idle GPU shows."""
    from training.run.system_metrics import SystemSampler

    busy = (  # the GPU that nvidia-smi lists first, which the sampler reads too
        "import time\n"
        "try:\n"
        "    import torch\n"
        "    a = torch.randn(8192, 8192, device='cuda')\n"
        "    sync = torch.cuda.synchronize\n"
        "except ImportError:\n"
        "    import cupy as torch\n"
        "    a = torch.random.rand(8192, 8192, dtype=torch.float32)\n"
        "    sync = torch.cuda.Device().synchronize\n"
        "print('ready', flush=True)\n"
        "end = time.time() + 8\n"
        "while time.time() < end:\n"
        "    b = a @ a\n"
        "    sync()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", busy], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "ready" not in line:
            proc.wait(timeout=30)
            pytest.skip("neither PyTorch nor CuPy can compute on this GPU here")
        sampler = SystemSampler(local_rank=0, uses_gpu=True)
        time.sleep(2)
        readings = []
        for _ in range(8):
            readings.append(sampler.sample()[2:])
            time.sleep(0.4)
        used = float(smi("memory.used")[0][0])
        assert max(percent for percent, _ in readings) >= 50, readings
        # Two 8192 x 8192 float32 matrices (512 MiB) and the process's context are in use.
        assert readings[-1][1] >= 512 and abs(readings[-1][1] - used) <= max(64.0, 0.05 * used)
    finally:
        proc.kill()
        proc.wait(timeout=30)

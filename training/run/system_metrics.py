"""What each rank costs its machine, sampled at evaluations, as MLflow's system metrics are.

Per rank: the process's CPU use since the last sample (100 = one core busy), its resident
memory, and, with a GPU, the GPU's utilization and the memory in use on it (through NVML, the
library `nvidia-smi` reads). Ranks that all-reduce send their samples to rank 0 inside the
evaluation's one monitoring all-reduce (each rank fills its own slots of a zero vector, so the
sum is every rank's sample); on the center server rank 0 logs its own only.
"""

from __future__ import annotations

import math
import os

import psutil

FIELDS = ("cpu_percent", "memory_mb", "gpu_percent", "gpu_memory_mb")


def key(rank: int, field: str) -> str:
    return f"system/rank_{rank}/{field}"


def _nvml_handle(local_rank: int):
    """The NVML handle of the GPU this rank trains on (the visible GPU of its local rank, as
    training.exchanges.collectives picks it; CUDA_VISIBLE_DEVICES names it by physical index or UUID), or
    None without a GPU, NVML or its driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        names = os.environ.get("CUDA_VISIBLE_DEVICES")
        visible = [v.strip() for v in names.split(",")] if names else [str(i) for i in range(count)]
        if not visible or not count:
            return None
        mine = visible[local_rank % len(visible)]
        if mine.startswith(("GPU-", "MIG-")):
            return pynvml.nvmlDeviceGetHandleByUUID(mine)
        return pynvml.nvmlDeviceGetHandleByIndex(int(mine))
    except Exception:  # noqa: BLE001 - any NVML failure means: no GPU figures
        return None


def _memory_used(pynvml, handle) -> int:
    """Bytes in use as nvidia-smi counts them (NVML's version 2, which leaves out what the
    driver reserves: on an idle H100 version 1 said 480 MiB where nvidia-smi said 0); version 1
    where the driver has no version 2."""
    try:
        return pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2).used
    except (pynvml.NVMLError, AttributeError):
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used


class SystemSampler:
    def __init__(self, local_rank: int = 0, uses_gpu: bool = False):
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only starts the count
        self.gpu = _nvml_handle(local_rank) if uses_gpu else None

    def sample(self) -> list[float]:
        """FIELDS' values now; NaN for a GPU figure there is none of."""
        cpu = self.process.cpu_percent(None)
        memory = self.process.memory_info().rss / 2**20
        gpu_percent = gpu_memory = math.nan
        if self.gpu is not None:
            try:
                import pynvml

                gpu_percent = float(pynvml.nvmlDeviceGetUtilizationRates(self.gpu).gpu)
                gpu_memory = _memory_used(pynvml, self.gpu) / 2**20
            except Exception:  # noqa: BLE001 - a GPU that stopped answering: no figures
                self.gpu = None
        return [cpu, memory, gpu_percent, gpu_memory]


def slots(sample: list[float], rank: int, size: int) -> list[float]:
    """This rank's sample in its own slots of a zero vector (NaN sent as -1: a sum keeps it
    apart from real values, which are never negative)."""
    out = [0.0] * (len(FIELDS) * size)
    for i, value in enumerate(sample):
        out[rank * len(FIELDS) + i] = -1.0 if math.isnan(value) else value
    return out


def metrics(summed: list[float], size: int) -> dict[str, float]:
    """The summed vector as rank 0 logs it: one metric per rank and field that has a value."""
    found = {}
    for rank in range(size):
        for i, field in enumerate(FIELDS):
            value = summed[rank * len(FIELDS) + i]
            if value >= 0:
                found[key(rank, field)] = round(float(value), 2)
    return found

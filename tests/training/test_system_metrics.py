"""Each rank's sample travels in its own slots of one summed vector, and comes out per rank."""

from __future__ import annotations

import math

from training.run import system_metrics
from training.run.system_metrics import FIELDS, SystemSampler


def test_summed_slots_give_every_ranks_sample_and_no_missing_gpu():
    samples = [[50.0, 900.5, math.nan, math.nan], [120.0, 850.25, 30.0, 2048.0], [0.0, 1.0, 0, 0]]
    summed = [sum(v) for v in zip(*(system_metrics.slots(s, r, 3) for r, s in enumerate(samples)))]
    found = system_metrics.metrics(summed, 3)
    assert found["system/rank_0/memory_mb"] == 900.5 and found["system/rank_1/cpu_percent"] == 120
    assert "system/rank_0/gpu_percent" not in found and found["system/rank_1/gpu_memory_mb"] == 2048
    assert found["system/rank_2/cpu_percent"] == 0  # an idle rank is 0, not missing
    assert len(found) == 3 * len(FIELDS) - 2


def test_this_process_samples_real_figures_without_a_gpu():
    sampler = SystemSampler(uses_gpu=True)  # asks NVML, which this machine lacks
    sum(i * i for i in range(200_000))
    cpu, memory, gpu_percent, gpu_memory = sampler.sample()
    assert cpu > 0 and memory > 10
    assert sampler.gpu is not None or (math.isnan(gpu_percent) and math.isnan(gpu_memory))

"""The program each Horovod rank runs, from a validated configuration to an exit code.

It settles the run directory (rank 0 decides, every rank follows), writes config.yaml, builds the
Trainer (training/run/trainer.py) and records how the run ended, failures included, in every sink.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from db.entities import RunStatus
from training.exchanges import groups
from training.run.console import complain, finished_line, say
from training.run.metrics import CENTER_ACCURACY, FanOut, JsonlSink, MetricsSink, RunInfo
from training.run.run_dir import prepare_run_dir, write_config
from training.schema import ConfigError, ExperimentConfig, topology_problem, warnings_for


def _agree_on_run_dir(collectives, out: str | None, resume: str | None) -> tuple[Path, bool] | str:
    """Rank 0's decision, on every rank: (directory, resuming), or the one-line refusal."""
    decision: tuple[str, bool] | str = ""
    if collectives.rank() == 0:
        try:
            d, resuming = prepare_run_dir(out, resume)
            decision = (str(d), resuming)
        except (OSError, ValueError) as exc:
            decision = str(exc)
    decision = collectives.broadcast_object(decision, 0)
    return decision if isinstance(decision, str) else (Path(decision[0]), decision[1])


def _with_actual_workers(config: ExperimentConfig, size: int, rank: int) -> ExperimentConfig:
    """horovodrun's -np wins over resources.workers: the record says what ran."""
    if config.resources.workers == size:
        return config
    if rank == 0:
        say(
            f"easgd: note: resources.workers is {config.resources.workers} but horovodrun "
            f"started {size} ranks; recording {size}"
        )
    resources = {"workers": size}
    hosts = config.resources.host_map
    if hosts is not None and sum(hosts.values()) < size:
        resources["hosts"] = None  # -H said otherwise; the recorded config must stay valid
    return config.model_copy(update={"resources": config.resources.model_copy(update=resources)})


def _record_failure(exc: BaseException, trainer, sinks: list[MetricsSink], info: RunInfo) -> None:
    """Rank 0 closes the run as failed with the reason, opening it first if the Trainer never
    did; a sink's own failure here must not hide the original error."""
    message = f"{type(exc).__name__}: {exc}"
    fan = trainer.sink if trainer and trainer.sink else FanOut(sinks)
    try:
        if trainer is None:
            fan.start(info)
        fan.event("failed", message, trainer.step if trainer else None)
        fan.finish(RunStatus.FAILED, message)
    except Exception:  # noqa: BLE001 - the original error matters more
        pass


def run(
    config: ExperimentConfig, out: str | None, resume: str | None, source: str, sinks_factory=None
) -> int:
    """Called on every rank after the configuration validated. Returns the exit code."""
    from training.exchanges import collectives
    from training.run.trainer import Trainer

    if uses_groups(config):
        collectives.init_tree(config.optimizer.group_size)
    else:
        collectives.init()
    rank, size = collectives.rank(), collectives.size()
    agreed = _agree_on_run_dir(collectives, out, resume)
    if isinstance(agreed, str):
        if rank == 0:
            complain(agreed)
        return 2
    run_dir, resuming = agreed
    config = _with_actual_workers(config, size, rank)
    if rank == 0:
        for w in warnings_for(config, size):
            say(f"easgd: warning: {w}")
        write_config(run_dir, config)
    collectives.barrier()
    sinks: list[MetricsSink] = [JsonlSink(run_dir)]
    if rank == 0 and sinks_factory is not None:
        sinks += sinks_factory(run_dir)
    trainer = None
    try:
        trainer = Trainer(config, run_dir, sinks if rank == 0 else [], source, resuming)
        last = trainer.run()
    except BaseException as exc:
        if rank == 0:
            info = RunInfo(
                run_dir.name,
                str(run_dir),
                config.name,
                config.to_dict(),
                size,
                collectives.host_count(),
                source,
            )
            _record_failure(exc, trainer, sinks, info)
            if isinstance(exc, KeyboardInterrupt):
                raise
            traceback.print_exc()
            complain(f"run failed: {type(exc).__name__}: {exc}")
        return 1
    if rank == 0:
        trainer.sink.event("finished", f"finished at step {trainer.step}", trainer.step)
        trainer.sink.finish(RunStatus.FINISHED)
        say(finished_line(run_dir.name, str(run_dir), last.get(CENTER_ACCURACY)))
    return 0


def uses_groups(config: ExperimentConfig) -> bool:
    return "group_size" in config.optimizer.spec.fields


def check_groups(config: ExperimentConfig) -> None:
    """Refuse, before TensorFlow is imported, a Tree EASGD group size or a consensus mixing matrix
    that does not fit the ranks horovodrun started. A refusal only some ranks see (hosts running
    different numbers of ranks) is said by each of them, since rank 0 may not be one."""
    problem = topology_problem(config, groups.launched().size)
    if problem:
        raise ConfigError([problem])
    if not uses_groups(config):
        return
    try:
        groups.resolve(config.optimizer.group_size, groups.launched())
    except groups.GroupError as exc:
        if not exc.every_rank and env_rank() != 0:
            complain(f"invalid configuration: {exc}")
        raise ConfigError([str(exc)]) from None


def env_rank() -> int:
    """This process's rank as horovodrun announced it, known before Horovod is imported."""
    for key in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if key in os.environ:
            try:
                return int(os.environ[key])
            except ValueError:
                return 0
    return 0

"""`python -m training --config FILE`: what each rank runs under horovodrun.

The configuration is validated before TensorFlow or Horovod is imported, so a bad value fails
in seconds with one line naming the field, and nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from db.entities import RunSource
from training.run import signals
from training.schema import ConfigError, load_config_file, parse_config, resolve

# horovodrun terminates every rank as soon as one exits non-zero, so a quiet rank that failed
# first could kill rank 0 before it printed why; the quiet ranks leave rank 0 this head start.
QUIET_RANK_EXIT_DELAY_S = 5.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Train one run (start it with horovodrun for several workers).",
    )
    p.add_argument("--config", help="experiment YAML file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one value, e.g. --set optimizer.tau=4 (repeatable)",
    )
    p.add_argument("--out", help="run directory (default: $EASGD_HOME/runs/<run id>)")
    p.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint"
    )
    p.add_argument(
        "--db-url", help="run store URL (default: $EASGD_DB_URL, else SQLite in $EASGD_HOME)"
    )
    p.add_argument("--no-store", action="store_true", help="write only the run directory")
    p.add_argument(
        "--source",
        default=os.environ.get("EASGD_SOURCE", "shell"),
        choices=[s.value for s in RunSource],
        help=argparse.SUPPRESS,
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from training.run.program import check_groups, env_rank

    signals.install()
    args = _parser().parse_args(argv)
    quiet = env_rank() != 0
    try:
        if args.resume:
            if args.config or args.out:
                raise ConfigError(
                    ["--resume: give the run directory alone, without --config or --out"]
                )
            from pathlib import Path

            from training.schema import apply_overrides

            data = load_config_file(Path(args.resume) / "config.yaml")
            config = parse_config(apply_overrides(data, args.set))
        elif not args.config:
            raise ConfigError(["--config: required (an experiment YAML file, see configs/)"])
        else:
            config = resolve(args.config, args.set)
        if config.script is not None:
            raise ConfigError(
                [
                    "script: this configuration runs your own command, which the job service "
                    "launches (easgd submit); under horovodrun, run the command itself"
                ]
            )
        check_groups(config)
    except ConfigError as exc:
        if quiet:
            time.sleep(QUIET_RANK_EXIT_DELAY_S)
            return 2
        for problem in exc.problems:
            print(f"easgd: invalid configuration: {problem}", file=sys.stderr, flush=True)
        return 2

    from training.run.program import run
    from training.run.store_sink import sinks_factory

    factory = None if args.no_store else sinks_factory(args.db_url)
    return run(config, args.out, args.resume, args.source, factory)


if __name__ == "__main__":
    sys.exit(main())

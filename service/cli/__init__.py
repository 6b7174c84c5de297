"""The `easgd` command line.

Errors are one line on stderr (what is wrong, what to do, what was received) and exit code 2
for bad input, 1 for a failure of the system: every error a command can meet belongs to
`db.errors.EasgdError`, which says which, and is mapped here once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from db.errors import EasgdError
from service.cli import jobs, runs, serve, sweeps
from service.cli.errors import CliError

__all__ = ["CliError", "build_parser", "main", "parse"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="easgd", description="Elastic averaging SGD on Horovod: run store, job service and UI."
    )
    p.add_argument(
        "--db-url",
        help="run store URL (default: $EASGD_DB_URL, else sqlite:///$EASGD_HOME/easgd.db)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent, name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    runs.add_commands(sub, add)
    serve.add_commands(sub, add)
    jobs.add_commands(sub, add)
    sweeps.add_commands(sub, add)
    return p


def _command(argv: list[str]) -> str | None:
    """The command word, past the options before it (--db-url takes a value)."""
    i = 0
    while i < len(argv):
        if argv[i] == "--db-url":
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            return argv[i]
    return None


def parse(argv: list[str]) -> argparse.Namespace:
    """`easgd submit ... -- python train.py --lr 0.1`: what follows -- is the job's command,
    `entrypoint` (to every other command, -- keeps its usual meaning)."""
    entrypoint: list[str] = []
    if _command(argv) == "submit" and "--" in argv:
        cut = argv.index("--")
        argv, entrypoint = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    args.entrypoint = entrypoint
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args) or 0
    except EasgdError as exc:
        print(f"easgd: {exc.cli_message()}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0

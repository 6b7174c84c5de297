"""Store commands of `easgd`: init, validate and runs; they read the store directly, no service
needed."""

from __future__ import annotations

import csv
import io
import sys

from db.entities import RunView
from db.store import Store
from service import formatting as fmt


def open_store(args, check: bool = True) -> Store:
    """The store `--db-url` names (else the environment's), checked to be set up unless asked
    not to: what every command that works on the store directly opens."""
    store = Store(getattr(args, "db_url", None))
    if check:
        store.check()
    return store


# ---------------------------------------------------------------------- store and runs
def cmd_init(args) -> int:
    store = open_store(args, check=False)
    revision = store.init()
    print(f"run store ready at {store.display_url} (schema revision {revision})")
    return 0


def cmd_runs_list(args) -> int:
    store = open_store(args)
    return _print_runs(store, None, store.list_runs(limit=args.limit, view=args.view), args)


def cmd_runs_query(args) -> int:
    store = open_store(args)
    runs = store.search_runs(args.filter, order_by=args.order_by, limit=args.limit, view=args.view)
    return _print_runs(store, args.filter, runs, args)


def _print_runs(store: Store, filter: str | None, runs, args) -> int:
    if args.format == "json":
        print(fmt.dumps([fmt.run_json(r) for r in runs]))
        return 0
    if args.format == "csv":
        sys.stdout.write(fmt.runs_csv(runs))
        return 0
    # A person reads this: which store it is, as `easgd up` and the UI name it.
    print(f"store: {store.display_url}")
    if runs:
        print(fmt.runs_table(runs))
    elif args.view == RunView.ACTIVE.value and store.search_runs(
        filter, limit=1, view=RunView.ARCHIVED
    ):
        print(
            "no active runs match, but archived ones do: add --view archived (or --view all) "
            "to list them"
        )
    else:
        print(
            "no runs match. Start one with: horovodrun -np 2 -H localhost:2 --gloo "
            "python -m training --config configs/lenet-mnist5k-eamsgd.yaml"
        )
    return 0


def cmd_runs_show(args) -> int:
    store = open_store(args)
    run = store.get_run(args.run_id)
    if args.format == "json":
        d = fmt.run_json(run)
        d["events"] = [e.__dict__ for e in store.events(run.id)]
        print(fmt.dumps(d))
        return 0
    print(f"run       {run.id}  {fmt.printable(run.name or '')}")
    print(f"status    {run.status}" + (f"  ({fmt.printable(run.error)})" if run.error else ""))
    print(
        f"source    {run.source}   workers {run.workers}   hosts {run.hosts}"
        + (f"   job {run.job_id}" if run.job_id else "")
    )
    print(
        f"started   {fmt.when(run.start_time)}   ended {fmt.when(run.end_time)}   "
        f"duration {fmt.seconds(run.duration)}"
    )
    print(f"step      {run.last_step}" + (f"/{run.total_steps}" if run.total_steps else ""))
    print(f"directory {run.run_dir or '-'}")
    if run.archived_at is not None:
        print(f"archived  {fmt.when(run.archived_at)}   (`easgd runs restore {run.id}` lists it)")
    tags = dict(run.tags)
    note = tags.pop("note", None)
    if note is not None:
        print("\nnote")
        for line in note.split("\n"):
            print(f"  {fmt.printable(line)}")
    if tags:
        print("\ntags")
        print(fmt.table(["key", "value"], sorted(tags.items())))
    print("\nlatest metrics")
    print(
        fmt.table(
            ["key", "value", "step", "min", "max"],
            [
                [k, fmt.number(v.value), v.step, fmt.number(v.min), fmt.number(v.max)]
                for k, v in sorted(run.metrics.items())
            ],
        )
    )
    print("\nparameters")
    print(fmt.table(["key", "value"], sorted(run.params.items())))
    events = store.events(run.id)
    if events:
        print("\nevents")
        print(
            fmt.table(
                ["time", "kind", "step", "message"],
                [[fmt.when(e.time), e.kind, e.step, e.message] for e in events[-20:]],
            )
        )
    return 0


def cmd_runs_metrics(args) -> int:
    points = open_store(args).metric_history(args.run_id, args.key)
    if args.format == "json":
        print(fmt.dumps([p.__dict__ for p in points]))
        return 0
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["key", "step", "wall_time", "value"])
    for p in points:
        w.writerow([p.key, p.step, p.wall_time, p.value])
    sys.stdout.write(out.getvalue())
    return 0


def cmd_validate(args) -> int:
    from training.schema import resolve, warnings_for

    config = resolve(args.config, args.set)
    for w in warnings_for(config):
        print(f"warning: {w}", file=sys.stderr)
    print(config.to_yaml(), end="")
    return 0


# ---------------------------------------------------------------------- the parser
def add_commands(sub, add) -> None:
    add(sub, "init", cmd_init, "create or upgrade the run store's tables")
    v = add(sub, "validate", cmd_validate, "check a configuration and print it resolved")
    v.add_argument("config")
    v.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")

    runs = sub.add_parser(
        "runs", help="list, show, query, tag, archive and delete runs"
    ).add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    ls = add(runs, "list", cmd_runs_list, "the newest runs")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--format", choices=["table", "csv", "json"], default="table")
    ls.add_argument("--view", **_VIEW)
    q = add(
        runs,
        "query",
        cmd_runs_query,
        "runs matching a filter, e.g. "
        "\"params.optimizer.algorithm = 'eamsgd' and metrics.center_accuracy >= 0.95\"",
    )
    q.add_argument("filter")
    q.add_argument(
        "--order-by",
        action="append",
        default=[],
        help="e.g. 'metrics.center_accuracy DESC' (repeatable)",
    )
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    q.add_argument("--view", **_VIEW)
    sh = add(runs, "show", cmd_runs_show, "one run: parameters, latest metrics, events")
    sh.add_argument("run_id")
    sh.add_argument("--format", choices=["text", "json"], default="text")
    me = add(runs, "metrics", cmd_runs_metrics, "a run's metric history (CSV or JSON)")
    me.add_argument("run_id")
    me.add_argument("--key", help="one metric, e.g. center_accuracy")
    me.add_argument("--format", choices=["csv", "json"], default="csv")
    from service.cli import run_edits  # its commands open the store as these do

    run_edits.add_commands(runs, add)


_VIEW = dict(
    choices=[v.value for v in RunView],
    default=RunView.ACTIVE.value,
    help="active runs (default), archived ones, or all",
)

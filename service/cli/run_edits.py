"""`easgd runs tag|note|archive|restore|delete`: what people do to a run after it ran. Like the
other `runs` commands they work on the store directly, no service needed; each prints one line
saying what it did.

A deletion asks first on a terminal, saying what goes (the run, its metric points, and with
`--files` its directory and size); without a terminal it needs `--yes`, so that no script deletes
a run by accident.
"""

from __future__ import annotations

import argparse
import sys

from db.settings import runs_dir
from service.cli.errors import CliError
from service.cli.runs import open_store
from service.run_removal import plan_removal, remove_run


def tag_changes(pairs: list[str], remove: list[str]) -> dict[str, str | None]:
    """KEY=VALUE pairs to set and keys to remove, as the store's `set_tags` takes them."""
    changes: dict[str, str | None] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise CliError(f"tag: KEY=VALUE, e.g. team=vision (received: {pair!r:.200})")
        changes[key] = value
    both = sorted(set(changes) & set(remove))
    if both:
        raise CliError(f"tag: {both[0]!r} is both set and removed; choose one")
    if not changes and not remove:
        raise CliError("tag: give KEY=VALUE to set a tag, or --remove KEY to remove one")
    return {**changes, **dict.fromkeys(remove)}


def cmd_runs_tag(args) -> int:
    changes = tag_changes(args.tags, args.remove)
    open_store(args).set_tags(args.run_id, changes)
    done = []
    put = [k for k, v in changes.items() if v is not None]
    if put:
        done.append("set " + ", ".join(put))
    if args.remove:
        done.append("removed " + ", ".join(args.remove))
    print(f"run {args.run_id}: tags {'; '.join(done)}")
    return 0


def cmd_runs_note(args) -> int:
    if args.text in (["-h"], ["--help"]):
        args.parser.print_help()
        return 0
    if len(args.text) != 1:
        raise CliError(
            "note: the text as one argument, quoted, e.g. easgd runs note RUN_ID 'lr too high' "
            f"('' removes the note; received {len(args.text)} arguments: {args.text!r:.200})"
        )
    run = open_store(args).set_note(args.run_id, args.text[0])
    note = run.tags.get("note")
    if note is None:
        print(f"run {args.run_id}: note removed")
    else:
        print(f"run {args.run_id}: note set ({len(note)} characters)")
    return 0


def cmd_runs_archive(args) -> int:
    open_store(args).archive_run(args.run_id)
    print(
        f"archived run {args.run_id}: hidden from `easgd runs list` and queries (`--view "
        f"archived` shows it); `easgd runs restore {args.run_id}` lists it again"
    )
    return 0


def cmd_runs_restore(args) -> int:
    open_store(args).restore_run(args.run_id)
    print(f"restored run {args.run_id}: listed again")
    return 0


def cmd_runs_delete(args) -> int:
    store = open_store(args)
    if not args.yes:
        plan = plan_removal(store, args.run_id, args.files, runs_dir())
        if not sys.stdin.isatty():
            raise CliError(
                f"deleting run {args.run_id} asks for confirmation, and stdin is not a "
                "terminal; add --yes to delete without asking"
            )
        if not _confirmed(f"This deletes {plan.preview()}.\nDelete? [y/N] "):
            print(f"kept run {args.run_id}: nothing deleted")
            return 1
    removal = remove_run(store, args.run_id, args.files, runs_dir())
    print(removal.line())
    return 1 if removal.problem else 0


def _confirmed(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    if not answer.endswith("\n"):
        sys.stderr.write("\n")  # Ctrl-D or Ctrl-C: the next line starts on its own line
    return answer.strip().lower() in ("y", "yes")


def add_commands(runs, add) -> None:
    """The commands under `easgd runs`."""
    t = add(runs, "tag", cmd_runs_tag, "set or remove a run's tags")
    t.add_argument("run_id")
    t.add_argument("tags", nargs="*", metavar="KEY=VALUE", help="tags to set, e.g. team=vision")
    t.add_argument(
        "--remove", action="append", default=[], metavar="KEY", help="a tag to remove (repeatable)"
    )
    n = add(runs, "note", cmd_runs_note, "set a run's note (the tag `note`); '' removes it")
    n.add_argument("run_id")
    # Everything after the run id, so that a note may start with '-' ("-0.5 after warmup").
    n.add_argument("text", nargs=argparse.REMAINDER, help="the note, quoted")
    n.usage = "%(prog)s [-h] run_id text"
    n.set_defaults(parser=n)
    a = add(runs, "archive", cmd_runs_archive, "hide a run from lists and queries, keeping it")
    a.add_argument("run_id")
    r = add(runs, "restore", cmd_runs_restore, "list an archived run again")
    r.add_argument("run_id")
    d = add(
        runs, "delete", cmd_runs_delete, "delete a run from the store (--files: its directory too)"
    )
    d.add_argument("run_id")
    d.add_argument(
        "--files", action="store_true", help="remove the run's directory under runs/ too"
    )
    d.add_argument("--yes", action="store_true", help="do not ask for confirmation")

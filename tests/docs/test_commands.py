"""Every command the README and the documentation show works as written: `easgd` command lines
parse with the real command line's parser (parsed, never run), their configurations, `--set`
values, filters and sweep files are accepted by the real schema and parsers, `python -m training`
takes the flags shown, `make` names real targets, and every repository path and module shown
exists."""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from tests.docs import shown
from tests.docs.shown import ROOT

# Paths the documentation names as what a command writes: they exist once it has run.
WRITTEN = {"bench/results/tune-work/quick.json"}


def _shell_blocks() -> list[shown.Block]:
    return [
        b for p in shown.pages() for b in shown.blocks(p) if b.language in shown.SHELL_LANGUAGES
    ]


def _commands(program: str) -> list[shown.Command]:
    return [c for b in _shell_blocks() for c in shown.commands(b) if c.argv[0] == program]


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{parser.prog} {shlex.join(argv)}: {errors.getvalue().strip()}")


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", text, re.M))


def _check_config(config: str, overrides: list[str], where: str) -> None:
    from training.schema import ConfigError, resolve

    if any("$" in o for o in overrides):
        return  # filled in by the shell (a Slurm script's variables)
    try:
        resolve(ROOT / config, overrides)
    except ConfigError as exc:
        pytest.fail(f"{where}: {config} {overrides}: {exc.problems}")


def _check_easgd(argv: list[str], where: str) -> None:
    from db.query import parse_filter, parse_order_by
    from service.cli import parse

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parse(argv)
    except SystemExit:
        pytest.fail(f"easgd {shlex.join(argv)}: {errors.getvalue().strip()}")
    if args.command in ("submit", "validate") and args.config:
        _check_config(args.config, args.set, where)
    if getattr(args, "working_dir", None):
        assert (ROOT / args.working_dir).is_dir(), f"{where}: --working-dir {args.working_dir}"
    if args.command == "runs" and args.runs_command == "query":
        parse_filter(args.filter)
        parse_order_by(args.order_by)
    if args.command == "sweep" and args.sweep_command == "create":
        from service.sweeps.spec import validate_sweep
        from training.schema import load_yaml_text

        sweep_file = ROOT / args.file
        data = load_yaml_text(sweep_file.read_text(), args.file)
        base = ROOT / args.base if args.base else sweep_file.parent / data["base"]
        validate_sweep(data, base.read_text())


def test_the_pages_show_commands():
    """The checks below have something to check: the pages were found and read."""
    programs = {c.argv[0] for b in _shell_blocks() for c in shown.commands(b)}
    assert {"easgd", "horovodrun", "make", "python"} <= programs


@pytest.mark.parametrize("command", _commands("easgd"), ids=lambda c: c.where)
def test_easgd_command_lines_parse(command):
    _check_easgd(command.argv[1:], command.where)


def _training_argv(argv: list[str]) -> list[str] | None:
    """The flags given to `python -m training`, wherever the line starts it (horovodrun, srun)."""
    for i, word in enumerate(argv[:-2]):
        if Path(word).name.startswith("python") and argv[i + 1 : i + 3] == ["-m", "training"]:
            return argv[i + 3 :]
    return None


TRAINING = [
    c for b in _shell_blocks() for c in shown.commands(b) if _training_argv(c.argv) is not None
]


@pytest.mark.parametrize("command", TRAINING, ids=lambda c: c.where)
def test_training_flags_exist_and_configurations_validate(command):
    from training.__main__ import _parser

    args = _parse(_parser(), _training_argv(command.argv))
    if args.config:
        _check_config(str(Path(command.cwd) / args.config), args.set, command.where)


@pytest.mark.parametrize(
    "command",
    [c for c in _commands("python") if c.argv[1:3] != ["-m", "training"]],
    ids=lambda c: c.where,
)
def test_python_modules_shown_exist(command):
    if command.argv[1].endswith(".py"):  # a script of the repository's
        script = ROOT / command.cwd / command.argv[1]
        assert script.is_file(), f"{command.where}: no script {command.argv[1]}"
        return
    assert command.argv[1] == "-m", f"{command.where}: {shlex.join(command.argv)}"
    module = ROOT / command.argv[2].replace(".", "/")
    assert module.with_suffix(".py").is_file() or (module / "__main__.py").is_file(), (
        f"{command.where}: no module {command.argv[2]}"
    )


@pytest.mark.parametrize("command", _commands("make"), ids=lambda c: c.where)
def test_make_targets_exist(command):
    targets = _makefile_targets()
    for word in command.argv[1:]:
        name, _, value = word.partition("=")
        if value and name == "UP_ARGS":
            from service.cli import build_parser

            _parse(build_parser(), ["up", *shlex.split(value)])
        elif not value:
            assert word in targets, f"{command.where}: make {word}: no such target"


def test_make_targets_in_prose_exist():
    targets = _makefile_targets()
    for page in shown.pages():
        for code in shown.inline_code(page):
            m = re.match(r"make ([\w-]+)", code)
            if m:
                assert m.group(1) in targets, f"{page.name}: `{code}`: no such make target"


def test_paths_shown_exist():
    missing = []
    for page in shown.pages():
        texts = [b.text for b in shown.blocks(page)] + shown.inline_code(page)
        for text in texts:
            for path in shown.paths(text):
                path = path.rstrip(".")
                if path not in WRITTEN and not (ROOT / path).exists():
                    missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing


def test_modules_and_names_shown_exist():
    problems = []
    for page in shown.pages():
        for code in shown.inline_code(page):
            if shown.MODULE.fullmatch(code):
                problems.append(shown.resolves(code))
        for block in shown.blocks(page):
            if block.language != "python":
                continue
            for node in ast.walk(ast.parse(block.text)):
                if isinstance(node, ast.ImportFrom) and shown.MODULE.fullmatch(f"{node.module}.x"):
                    problems += [shown.defines(node.module, a.name) for a in node.names]
    assert [p for p in problems if p] == []


def test_readme_links_resolve():
    for link in shown.links(shown.README):
        if re.match(r"[a-z]+:|#", link):
            continue
        target = link.split("#")[0]
        assert (ROOT / target).exists(), f"README.md links {link}, which does not exist"


def test_commands_are_in_fenced_blocks():
    """An indented code block would escape every check above."""
    for page in shown.pages():
        lines = shown.prose(page).splitlines()
        for before, line in zip(lines, lines[1:]):
            if not before.strip() and re.match(r" {4,}(easgd|make|horovodrun|python) ", line):
                pytest.fail(f"{page.name}: {line.strip()!r} is in an indented block; fence it")

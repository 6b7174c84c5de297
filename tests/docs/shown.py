"""What the README and the documentation pages show a reader: their fenced code blocks, inline
code and links, read from the Markdown as written, so that the tests can try each command and
path the way a reader would type it."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
# Top-level folders of the repository: a path shown that starts with one must exist.
FOLDERS = ("bench", "configs", "db", "docs", "requirements", "scripts", "service", "tests")
FOLDERS += ("training", "ui")
PATH = re.compile(rf"(?<![\w./$~-])(?:{'|'.join(FOLDERS)})/[\w./-]*")
MODULE = re.compile(r"(?:training|service|db|ui|bench)(?:\.\w+)+")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the fence, 1-based
    language: str
    text: str

    def where(self, offset: int = 0) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line + 1 + offset}"


def pages() -> list[Path]:
    """The README and every page of the site."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    found, fence, start, language, body = [], None, 0, "", []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if fence is None:
            m = FENCE.match(line)
            if m:
                fence, start, language, body = m.group(1), number, m.group(2), []
        elif line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            found.append(Block(page, start, language, "\n".join(body)))
            fence = None
        else:
            body.append(line)
    return found


def prose(page: Path) -> str:
    """The page without its fenced blocks."""
    text = page.read_text()
    for b in blocks(page):
        text = text.replace(b.text, "")
    return text


def inline_code(page: Path) -> list[str]:
    return [m.group(2).strip() for m in INLINE.finditer(prose(page))]


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page))


@dataclass(frozen=True)
class Command:
    where: str
    argv: list[str]
    cwd: str = "."  # relative to the repository's root, after the block's `cd`s


def commands(block: Block) -> Iterator[Command]:
    """Each command line of a shell block (continuation lines joined, comments dropped), with
    environment assignments and a `.venv/bin/` prefix taken off, as a shell would read it."""
    logical: list[tuple[int, str]] = []
    pending, first = "", 0
    for i, line in enumerate(block.text.splitlines()):
        if not pending:
            first = i
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append((first, pending + line))
        pending = ""
    cwd = "."
    for offset, line in logical:
        line = line.strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        argv = shlex.split(line, comments=True)
        while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
            argv = argv[1:]
        if argv[:1] == ["cd"] and len(argv) == 2:
            cwd = os.path.normpath(os.path.join(cwd, argv[1]))
            continue
        if argv:
            argv[0] = argv[0].removeprefix(".venv/bin/")
            yield Command(block.where(offset), argv, cwd)


def paths(text: str) -> list[str]:
    return PATH.findall(text)


def modules(text: str) -> list[str]:
    """Dotted names of our own modules and what they define (`training.exchanges.lars.LARS`)."""
    return [m for m in MODULE.findall(text) if m.count(".") >= 1]


def defines(module: str, name: str) -> str | None:
    """Why `from module import name` would fail, read from the source, or None."""
    here = ROOT / module.replace(".", "/")
    source = here / "__init__.py" if here.is_dir() else here.with_suffix(".py")
    if not source.is_file():
        return f"{module}: no such module"
    if (here / name).is_dir() or (here / f"{name}.py").is_file():
        return None
    if not re.search(rf"\b{re.escape(name)}\b", source.read_text()):
        return f"{module}: {source.relative_to(ROOT)} defines no {name!r}"
    return None


def resolves(dotted: str) -> str | None:
    """Why a dotted name of ours does not resolve, read from the source (nothing imported), or
    None. Names whose second part is no module of ours are configuration paths
    (`training.epochs`) and are not judged."""
    parts = dotted.split(".")
    here = ROOT / parts[0]
    if not (here / parts[1]).is_dir() and not (here / f"{parts[1]}.py").is_file():
        return None
    for i, part in enumerate(parts[1:], 1):
        if (here / part).is_dir():
            here = here / part
            continue
        if (here / f"{part}.py").is_file():
            here = here / f"{part}.py"
            rest = parts[i + 1 :]
            break
        source = here / "__init__.py"
        if source.is_file() and re.search(rf"\b{re.escape(part)}\b", source.read_text()):
            return None
        return f"{'.'.join(parts[: i + 1])}: no module or name {part!r} in {here.relative_to(ROOT)}"
    else:
        return None
    if rest and not re.search(rf"\b{re.escape(rest[0])}\b", here.read_text()):
        return f"{dotted}: {here.relative_to(ROOT)} defines no {rest[0]!r}"
    return None

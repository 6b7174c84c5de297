"""Brings `bench/results/` into the site, so that the pages can link the benchmarks' own reports.

The pages link them as a code host resolves links, relative to the page's file
(`../bench/results/bench.md` from `docs/benchmarks.md`); MkDocs refuses links that leave
`docs/`, so the files are added to the site under `bench/results/` and those links are rewritten
to point there. The reports stay where the benchmarks write them, never copied by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

FOLDER = "bench/results"
KINDS = (".md", ".png", ".json")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path in sorted((_root(config) / FOLDER).iterdir()):
        if path.is_file() and path.suffix in KINDS:
            files.append(File.generated(config, f"{FOLDER}/{path.name}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    depth = page.file.src_uri.count("/")
    if page.file.src_uri.startswith(f"{FOLDER}/"):
        return markdown
    outside = re.escape("../" * (depth + 1) + FOLDER + "/")
    return re.sub(rf"\]\({outside}", "](" + "../" * depth + FOLDER + "/", markdown)

"""No Docker engine runs here: check what can be checked without one."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_it_parses_into_known_instructions():
    known = {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "VOLUME", "EXPOSE", "CMD"}
    instructions = _instructions()
    assert instructions[0][0] == "FROM"
    assert {w for w, _ in instructions} <= known
    for word, rest in instructions:
        if word == "RUN":
            shlex.split(rest)  # quotes balance


def test_base_image_matches_the_pinned_tensorflow():
    constraints = (ROOT / "requirements" / "constraints.txt").read_text()
    tf = re.search(r"^tensorflow-cpu==(\d+\.\d+)", constraints, re.M).group(1)
    base = dict(_instructions())["FROM"]
    assert base == "nvcr.io/nvidia/tensorflow:25.02-tf2-py3"
    assert tf == "2.17"  # NVIDIA's 25.02 release ships TensorFlow 2.17 with Horovod and NCCL


def test_install_uses_the_constraints_and_every_package_exists():
    run = " ".join(rest for word, rest in _instructions() if word == "RUN")
    assert "-c requirements/constraints.txt" in run and "--no-deps ." in run
    assert "horovodrun --check-build" in run
    constraints = {
        line.split("==")[0].lower()
        for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    for pkg in re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[a-z]+\])?"', run):
        assert pkg.lower() in constraints, pkg


def test_copies_every_package_and_exposes_the_ports():
    copies = " ".join(rest for word, rest in _instructions() if word == "COPY")
    for pkg in ("training/", "db/", "service/", "ui/", "configs/", "pyproject.toml"):
        assert pkg in copies
    env = " ".join(rest for word, rest in _instructions() if word == "EXPOSE")
    assert "8765" in env and "8501" in env
    assert dict(_instructions())["VOLUME"] == '["/data"]'
    assert "EASGD_HOME=/data" in DOCKERFILE

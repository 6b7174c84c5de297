#!/usr/bin/env bash
# Creates .venv with the pinned dependencies and compiles Horovod against the installed
# TensorFlow (Gloo, no MPI). Re-running it when nothing changed takes a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "setup: Python 3.11 is required (TensorFlow 2.17.1 + Horovod 0.28.1); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

deps_hash=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)
if [ ! -f ".venv/.deps-$deps_hash" ]; then
  say "installing pinned dependencies (TensorFlow 2.17.1 CPU and the rest; a few minutes the first time)"
  "${PIP[@]}" install -q --upgrade "pip>=24" wheel "setuptools>=68"
  "${PIP[@]}" install -q -c requirements/constraints.txt -e ".[dev]" cmake
  rm -f .venv/.deps-*
  touch ".venv/.deps-$deps_hash"
fi

tf_version=$("$VPY" -c 'import importlib.metadata as m
for d in ("tensorflow-cpu", "tensorflow"):
    try:
        print(m.version(d)); break
    except m.PackageNotFoundError:
        pass')
hvd_version=$(grep -E '^horovod==' requirements/constraints.txt | cut -d= -f3)
hvd_stamp=".venv/.horovod-$hvd_version-tf$tf_version"
if [ ! -f "$hvd_stamp" ] || ! "$VPY" -c 'import horovod' 2>/dev/null; then
  say "compiling Horovod $hvd_version against TensorFlow $tf_version with Gloo (about 6 minutes)"
  "${PIP[@]}" uninstall -q -y horovod >/dev/null 2>&1 || true
  # --no-cache-dir: a wheel cached for another TensorFlow would load without TensorFlow support.
  CMAKE_POLICY_VERSION_MINIMUM=3.5 HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
  HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=GLOO \
  MAKEFLAGS="-j$(nproc)" PATH="$PWD/.venv/bin:$PATH" \
    "${PIP[@]}" install -q --no-build-isolation --no-cache-dir -c requirements/constraints.txt \
    "horovod==$hvd_version"
  check=$(.venv/bin/horovodrun --check-build 2>/dev/null)
  if ! grep -q '\[X\] TensorFlow' <<<"$check" || ! grep -q '\[X\] Gloo' <<<"$check"; then
    echo "$check" >&2
    echo "setup: horovodrun --check-build does not show [X] TensorFlow and [X] Gloo; see above" >&2
    exit 1
  fi
  rm -f .venv/.horovod-*
  touch "$hvd_stamp"
  say "horovodrun --check-build: TensorFlow and Gloo available"
fi
say "ready (.venv, TensorFlow $tf_version, Horovod $hvd_version)"

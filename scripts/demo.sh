#!/usr/bin/env bash
# A short demonstration: LeNet-5 on real MNIST digits, EAMSGD on 2 Horovod ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
home=$(.venv/bin/python -c 'from db.settings import home; print(home())')
out="$home/runs/demo-$(date +%Y%m%d-%H%M%S)"
.venv/bin/easgd init
echo "demo: training LeNet-5 on mnist5k with EAMSGD on 2 ranks (about a minute)"
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/horovodrun -np 2 -H localhost:2 --gloo \
  .venv/bin/python -m training --config configs/lenet-mnist5k-eamsgd.yaml \
  --set training.epochs=3 --out "$out"
echo "demo: results in $out (config.yaml, metrics.jsonl, checkpoints/, center.keras)"
echo "demo: and in the run store: .venv/bin/easgd runs list"
.venv/bin/easgd runs list

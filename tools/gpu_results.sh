#!/usr/bin/env bash
# Issue 7's `make results` on a lent GPU machine (its Python has torch, lightning, timm, matplotlib
# and rich, but no venv, hydra, omegaconf or pycocotools):
#   here:        bash ../shared/tools/device-wheels.sh
#   GPU machine: bash tools/gpu_results.sh               (the device tool: carry .whl; timeout_s 600)
#   here again:  mkdir -p results/gpu && tar xzf <files_at>/results_gpu.tar.gz -C results/gpu \
#                && dfss-report --results results/gpu   # docs/results.md + plots
# The device tool brings back at most 8 files from $OUT, 2 folders deep, so every run's metrics,
# curves, logs and the index travel as ONE archive, $OUT/results_gpu.tar.gz (checkpoints stay in
# /tmp), next to the job's log. It is written also when the job is cut short: the plan stops itself
# after LIMIT seconds (default 520), its runs in flight save their last.ckpt, and a second call on
# the still-warm machine continues them. PLAN=<name or yaml>, JOBS=<n>, ONLY=<regex>, DATA_DIR are passed on.
# With 15 device minutes in all, run `bench/gpu_run.sh` (issue 6, timeout_s 330) first, then this with
# LIMIT = budget_left_s - 150 and timeout_s = LIMIT + 75 (the runs in flight get up to 60 s to save).
set -euo pipefail
source tools/device_env.sh  # wheels, paths, preflight
export WANDB_MODE=disabled COLUMNS=160
plan=${PLAN:-gpu}; plan=${plan##*/}
work=/tmp/dfss-results/${plan%.y*ml}
out=$(realpath -m "${OUT:-results}")
mkdir -p "$work" "$out"
pack() {
  nvidia-smi > "$work/nvidia-smi.txt" 2>/dev/null || true
  (cd "$work" && find . \( -name 'index.json' -o -name 'metrics.json' -o -name 'run.json' -o -name 'roc.json' \
      -o -name 'per_class.csv' -o -name 'pr_curves.json' -o -name 'metrics_history.jsonl' -o -name '*.log' \
      -o -name 'nvidia-smi.txt' \) -print0 | tar czf "$out/results_gpu.tar.gz" --null -T -) || true
  ls -l "$out"
}
trap pack EXIT
args=(--plan "${PLAN:-gpu}" --out "$work" --data-dir "${DATA_DIR:-/tmp/dfss-data/synth_results}" --synth-workers "$(nproc)" --report '')
[ -n "${JOBS:-}" ] && args+=(--jobs "$JOBS")
[ -n "${ONLY:-}" ] && args+=(--only "$ONLY")
timeout -s TERM "${LIMIT:-520}" python3 -m dfss.results.cli "${args[@]}" 2>&1 | tee "$out/results_gpu.log"

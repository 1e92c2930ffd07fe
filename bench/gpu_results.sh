#!/usr/bin/env bash
# Issue 7's `make results` on a lent GPU machine (its Python has torch, lightning, timm, matplotlib,
# but no venv, hydra, omegaconf, pycocotools or rich):
#   here:        bash ../shared/tools/device-wheels.sh rich==14.2.0 markdown-it-py==4.0.0 mdurl==0.1.2 pygments==2.19.2
#   GPU machine: bash bench/gpu_results.sh            (the device tool: carry .whl; timeout_s 600)
#   here again:  dfss-report --results <files_at>/results/gpu   # docs/results.md + plots
# Trains in /tmp (checkpoints stay there) and copies every run's metrics, curves and the index to
# $OUT/results/gpu, also when the job is cut short (what finished is kept; rerunning continues).
set -euo pipefail
if [ -d .whl ] && ! python3 -c "import hydra, pycocotools, faster_coco_eval, rich" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD WANDB_MODE=disabled HF_HUB_OFFLINE=1
work=/tmp/dfss-results/gpu
dest=$(realpath -m "${OUT:-results}/results/gpu")
mkdir -p /tmp/dfss-results
copy_back() {
  mkdir -p "$dest"
  (cd "$work" 2>/dev/null && find . \( -name 'index.json' -o -name 'metrics.json' -o -name 'run.json' \
      -o -name 'per_class.csv' -o -name 'pr_curves.json' -o -name 'metrics_history.jsonl' \) \
      -exec cp --parents {} "$dest" \;) || true
  nvidia-smi > "$dest/nvidia-smi.txt" 2>/dev/null || true
}
trap copy_back EXIT
python3 -m dfss.results.cli --plan "${PLAN:-gpu}" --out "$work" --data-dir /tmp/dfss-data/synth_results \
  --synth-workers "$(nproc)" --report '' 2>&1 | tee "$work.log"
cp "$work.log" "$dest/" 2>/dev/null || true

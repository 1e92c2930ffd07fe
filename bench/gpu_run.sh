#!/usr/bin/env bash
# The issue-6 GPU benchmark as ONE command (< 5 min on one H100), writing bench/results/<date>_<gpu>/.
#   here:        bash ../shared/tools/device-wheels.sh        # hydra/omegaconf/pycocotools wheels -> .whl/
#   GPU machine: bash bench/gpu_run.sh                        # (the device tool: carry .whl)
# Each script prints a table and JSON lines; both are kept, with nvidia-smi and pip freeze.
set -euo pipefail
if [ -d .whl ] && ! python3 -c "import hydra, pycocotools, faster_coco_eval" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '_')
out=${OUT:-bench/results}/$(date -u +%Y-%m-%d)_${gpu}
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt"
python3 -m pip freeze 2>/dev/null | grep -iE "^(torch|torchvision|lightning|timm|faster|pycocotools)" > "$out/versions.txt" || true
cd bench
timeout 330 python3 steps_speed.py --device cuda --profile student infer | tee "../$out/steps_speed.txt"
step=$(python3 -c "import json,sys; rows=[json.loads(l) for l in open('../$out/steps_speed.txt') if l.startswith('{\"bench\": \"steps_speed\"')]; print(next(r['img_per_s'] for r in rows if r['step']=='student'))")
timeout 120 python3 data_speed.py --workers 8 --images 96 --step-img-per-s "$step" | tee "../$out/data_speed.txt"
timeout 100 python3 eval_speed.py | tee "../$out/eval_speed.txt"
echo "results in $out"

#!/usr/bin/env bash
# The issue-6 GPU benchmark as ONE command (at most 5 min on one H100), writing bench/results/<date>_<gpu>/.
#   here:        bash ../shared/tools/device-wheels.sh        # hydra/omegaconf/pycocotools wheels -> .whl/
#   GPU machine: bash bench/gpu_run.sh                        # (the device tool: carry .whl; timeout_s 330)
#   here again:  cp -r <files_at>/<date>_<gpu> bench/results/ # and fill the README's GPU column
# Four files come back (the device tool returns at most 8, 2 folders deep): nvidia-smi.txt,
# versions.txt, steps_speed.txt (every step type against torchvision, compiled), data_speed.txt (the
# loaders at the default worker count against that step's img/s). Each step's figures are printed
# as soon as they are measured, so a run cut short keeps what it timed. COCO evaluation speed is a
# one-CPU-core figure (`python bench/eval_speed.py`), measured on the project's own machine.
set -uo pipefail
source tools/device_env.sh  # wheels, paths, preflight
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '_')
out=$(realpath -m "${OUT:-bench/results}/$(date -u +%Y-%m-%d)_${gpu}")
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt"
python3 -m pip freeze 2>/dev/null | grep -iE "^(torch|torchvision|lightning|timm|faster|pycocotools|numpy)" > "$out/versions.txt"
cd bench
timeout 240 python3 steps_speed.py --device cuda --profile student infer 2>&1 | tee "$out/steps_speed.txt"
# The student's training img/s, from the final JSON lines or, if the run was cut, its '# measured' line.
step=$(python3 -c "
import json, sys
for line in open(sys.argv[1]):
    line = line.removeprefix('# measured ')
    if line.startswith('{\"bench\": \"steps_speed\"') and json.loads(line)['step'] == 'student':
        print(json.loads(line)['img_per_s']); break" "$out/steps_speed.txt")
timeout 60 python3 data_speed.py --workers 8 --images 96 ${step:+--step-img-per-s "$step"} 2>&1 | tee "$out/data_speed.txt"
echo "results in $out"; ls -l "$out"

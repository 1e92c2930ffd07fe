#!/usr/bin/env bash
# `make bench`: the speed benchmarks on a CPU as one command, the counterpart of gpu_run.sh: writes
# bench/results/<date>_cpu_<processor>/ with the machine, the versions and each script's table and
# JSON lines (steps_speed: every step type against torchvision; precision_speed: float32 against
# bf16 + channels_last per model; data_speed: the loaders; eval_speed:
# COCO evaluation on one core against pycocotools; student_candidates: FLOPs, latency and training
# speed of the FCOS students beside the YOLOX-s teacher). Stop other heavy jobs first: the figures are
# single-thread timings. About 10 minutes on an idle 2-core machine.
#   bash bench/cpu_run.sh            (PYTHON=... to pick the interpreter; default .venv/bin/python)
set -uo pipefail
python=${PYTHON:-$PWD/.venv/bin/python}
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1 | tr -c 'A-Za-z0-9\n' '_' | tr -s '_' | cut -c1-40)
out=$PWD/bench/results/$(date -u +%Y-%m-%d)_cpu_${cpu}
mkdir -p "$out"
{ lscpu; echo; uptime; } > "$out/machine.txt"
"$python" -m pip freeze 2>/dev/null | grep -iE "^(torch|torchvision|lightning|timm|faster|pycocotools|numpy|onnxruntime)" > "$out/versions.txt"
cd bench
export OMP_NUM_THREADS=1
for script in steps_speed precision_speed data_speed eval_speed student_candidates; do
  echo "== bench/$script.py"
  "$python" $script.py 2>&1 | tee "$out/$script.txt"
done
echo "results in $out"

# Sourced (not run) by gpu_run.sh and gpu_results.sh on a lent GPU machine, from the project root:
# installs the wheels carried in .whl/ (hydra, omegaconf, pycocotools, faster-coco-eval; see
# ../shared/tools/device-wheels.sh) into /tmp/site unless they import already, exports the paths,
# and checks in seconds that torch sees CUDA and that everything a job imports is there.
if [ -d .whl ] && ! python3 -c "import hydra, pycocotools, faster_coco_eval" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -c "
import torch, hydra, omegaconf, pycocotools, faster_coco_eval, rich, lightning, timm, matplotlib, dfss
assert torch.cuda.is_available(), 'no CUDA device visible to torch'
print('preflight ok:', torch.__version__, torch.cuda.get_device_name(0), 'lightning', lightning.__version__)" || exit 1

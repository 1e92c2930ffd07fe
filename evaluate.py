"""Evaluate on a data split: ``python evaluate.py ckpt_path=model.ckpt`` or ``predictions=preds.json``.

Options: ``[data=...] [split=test|val] [threshold=unknown threshold.T=0.1] [backend=faster_coco_eval]
[device=auto|cpu|cuda] [batch_size=N]``; ``-m threshold.T=0,0.05,0.1`` re-scores one model per T.
A thin shell: Hydra composes the config (``dfss/conf/eval.yaml``), :func:`dfss.evaluate.run` works.
"""

from dfss.evaluate import main

if __name__ == "__main__":
    main()

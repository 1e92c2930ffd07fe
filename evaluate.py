"""Evaluate on a data split: ``python evaluate.py predictions=preds.json [data=...] [split=test]``.

A thin shell: Hydra composes the config (``dfss/conf/eval.yaml``), :func:`dfss.evaluate.run` works.
"""

from dfss.evaluate import main

if __name__ == "__main__":
    main()

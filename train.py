"""Train a DFSS model: ``python train.py experiment=<teacher|student|distill|...> [key=value ...]``.

A thin shell: Hydra composes the config (``dfss/conf/train.yaml``), :func:`dfss.train.run` works.
"""

from dfss.train import main

if __name__ == "__main__":
    main()

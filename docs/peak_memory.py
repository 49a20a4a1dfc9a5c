"""Peak RSS of one update against ``pglab.budget.estimate``.

    python docs/peak_memory.py ALGO '{"field": value, ...}'

Prints the growth of the process's peak RSS over one ``update()`` of a built trainer, next to
the estimate the launch check uses.
"""

import json
import resource
import sys
import time

import torch

from pglab.algos import make_config, make_trainer
from pglab.budget import estimate


def main() -> None:
    torch.set_num_threads(1)
    algo, cfg = sys.argv[1], make_config(sys.argv[1], json.loads(sys.argv[2]))
    trainer = make_trainer(algo, cfg)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    trainer.update()
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    est = estimate(algo, cfg)
    print(
        f"{algo} {sys.argv[2]}: measured +{(peak - base) / 2**20:.0f} MB over the built "
        f"trainer, estimate {est.memory / 2**20:.0f} MB ({est.parts()}); update {dt:.1f}s"
    )


if __name__ == "__main__":
    main()

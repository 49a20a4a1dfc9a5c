"""What the run processes' forkserver imports once (:mod:`pglab.run_process`): torch, the
trainers and their compiled kernels, so each forked run starts with them loaded."""

import contextlib

import torch

torch.set_num_threads(1)  # before any op: a fork must not inherit an intra-op thread pool

from pglab import engine, run_process  # noqa: E402,F401
from pglab.algos import warm_up  # noqa: E402

# a run then compiles what it needs itself: a failure here must never take the server down
with contextlib.suppress(Exception):
    warm_up()

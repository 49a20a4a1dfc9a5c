"""Peak RSS of one update against pglab.budget.estimate (python /tmp/i14/peak.py ALGO JSON)."""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from pglab.algos import make_config, make_trainer
from pglab.budget import estimate
algo, cfg = sys.argv[1], make_config(sys.argv[1], json.loads(sys.argv[2]))
tr = make_trainer(algo, cfg)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter(); tr.update(); dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
e = estimate(algo, cfg)
print(f"{algo} {sys.argv[2]}: measured +{(peak-base)/2**20:.0f} MB over the built trainer, estimate {e.memory/2**20:.0f} MB ({e.parts()}); update {dt:.1f}s")

#!/usr/bin/env bash
# The variance-reduction ladder from the CLI: 6 rungs x 3 seeds, CartPole-v1, 100k env steps,
# then its summary through `compare --json`. Each rung is one launch named by --group.
#   PGLAB_STORE=/tmp/ladder.sqlite bash pglab/reference/ladder.sh > ladder.json
set -euo pipefail
PY=${PYTHON:-python}
T=("$PY" -m pglab train --env CartPole-v1 --steps 100000 --seeds 0-2 --threads 1)
"${T[@]}" --algo reinforce --set psi=total --set baseline=none --group "REINFORCE total return" >&2
"${T[@]}" --algo reinforce --set psi=rtg --set baseline=none --group "REINFORCE reward-to-go" >&2
"${T[@]}" --algo reinforce --set psi=rtg --set baseline=constant --group "+ constant baseline" >&2
"${T[@]}" --algo reinforce --set psi=rtg --set baseline=value --set vf_iters=20 \
    --set vf_learning_rate=0.01 --group "+ value baseline" >&2
"${T[@]}" --algo a2c --set gae_lambda=0.95 --group "A2C with GAE" >&2
"${T[@]}" --algo ppo --group "PPO" >&2
"$PY" -m pglab compare "REINFORCE total return" "REINFORCE reward-to-go" "+ constant baseline" \
    "+ value baseline" "A2C with GAE" "PPO" --json

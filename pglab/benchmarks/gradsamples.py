"""Per-episode gradient samples vs one ordinary backward pass (issue target: <= 3x).

Setup: 64 CartPole-v1 episodes from the initial 64x64 tanh policy (about 1,400 steps).
"Ordinary backward": ``(log pi(a|s) * w).sum().backward()`` over the whole batch.
"Samples": :func:`pglab.diagnostics.grad_samples` giving all 64 per-episode gradients.
Both are timed alternately in one process (median of ``reps``), so machine load affects
them alike. Memory: each vectorised call holds at most ``chunk_size`` gradient rows of P
floats (plus the [m, P] result); the figure is timed again with a small chunk to show what
bounding memory costs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import torch

from pglab.diagnostics import grad_samples
from pglab.envs import make_vec
from pglab.gradlab import sample_episodes
from pglab.policies import log_prob, make_policy


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(quick: bool, log: Callable[[str], None]) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a fair, load-insensitive comparison on a shared CPU
    try:
        torch.manual_seed(0)
        env = gym.make("CartPole-v1")
        policy = make_policy(env.observation_space, env.action_space, 64, 2, "tanh")
        envs = make_vec("CartPole-v1", 64, seed=0)
        try:
            batch = sample_episodes(envs, policy, seed=0, max_steps=500)
        finally:
            envs.close()
        obs, actions, seg = batch.flat()
        B, m = obs.shape[0], batch.m
        weights = torch.randn(B)
        P = sum(p.numel() for p in policy.parameters())

        def backward() -> None:
            policy.zero_grad()
            (log_prob(policy(obs), actions) * weights).sum().backward()

        def samples(chunk: int | None = None) -> torch.Tensor:
            return grad_samples(policy, obs, actions, weights, seg, m, chunk_size=chunk)

        small_chunk = 16  # pieces per vectorised call
        backward(), samples(), samples(small_chunk)  # warm-up (first vmap call traces)
        reps = 10 if quick else 50
        tb, ts, tc = [], [], []
        for _ in range(reps):
            tb.append(_time(backward))
            ts.append(_time(samples))
            tc.append(_time(lambda: samples(small_chunk)))
        check = float(
            (samples().sum(0) - torch.cat([p.grad.reshape(-1) for p in policy.parameters()]))
            .abs()
            .max()
        )
        t_b, t_s, t_c = (statistics.median(x) for x in (tb, ts, tc))
        out = {
            "episodes": m,
            "steps": B,
            "params": P,
            "backward_ms": 1e3 * t_b,
            "samples_ms": 1e3 * t_s,
            "ratio": t_s / t_b,
            "target_ratio": 3.0,
            "meets_target": t_s / t_b <= 3.0,
            "chunked_samples_ms": 1e3 * t_c,
            "chunked_ratio": t_c / t_b,
            "chunk_pieces": small_chunk,
            "chunk_rows_bytes": small_chunk * P * 4,
            "unchunked_rows_bytes": B * P * 4,
            "sum_check_max_abs": check,
        }
    finally:
        torch.set_num_threads(threads)
    log(f"64 CartPole episodes, {B} steps, 64x64 MLP ({P} parameters), 1 thread")
    log(f"  one ordinary backward      {out['backward_ms']:8.2f} ms")
    log(
        f"  per-episode samples        {out['samples_ms']:8.2f} ms   ratio {out['ratio']:.2f}x (target <= 3x)"
    )
    log(
        f"  samples, chunk={small_chunk} pieces   {out['chunked_samples_ms']:8.2f} ms   "
        f"ratio {out['chunked_ratio']:.2f}x; gradient rows held per call "
        f"{out['chunk_rows_bytes'] / 1e6:.2f} MB (per-step rows would be {out['unchunked_rows_bytes'] / 1e6:.1f} MB)"
    )
    log(f"  rows sum to the ordinary gradient: max |diff| = {check:.2e}")
    return out

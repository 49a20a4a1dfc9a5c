"""Watch the agent: roll a policy out in an ``rgb_array`` env and make an animated GIF.

Works from a live trainer (anything with ``act(obs_batch, deterministic) -> actions``) or from
a stored checkpoint (weights only, loaded into a fresh trainer of the run's algorithm). The
frames are subsampled and shrunk so a 500-step CartPole episode is a GIF of a few hundred KB.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pglab.envs import make_env

# Rendering classic-control envs to arrays needs no window; the dummy SDL driver keeps pygame
# from looking for a display on a headless server.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


class Actor(Protocol):
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray: ...


@dataclass(frozen=True)
class Replay:
    """Frames ``[H, W, 3]`` uint8 of one episode, its undiscounted return and length."""

    frames: list[np.ndarray]
    ret: float
    length: int


def renders_rgb(env_id: str) -> bool:
    """Whether ``env_id`` can draw itself as an RGB array (classic control can; pglab's
    ShortCorridor and text-only envs cannot)."""
    try:
        from gymnasium.envs.registration import spec

        env_spec = spec(env_id)
    except Exception:
        return False
    entry = str(env_spec.entry_point)
    if entry.startswith("pglab."):
        return False
    try:
        env = make_env(env_id, render_mode="rgb_array")
    except Exception:
        return False
    try:
        return "rgb_array" in env.metadata.get("render_modes", [])
    finally:
        env.close()


def rollout(
    actor: Actor,
    env_id: str,
    *,
    seed: int = 0,
    max_steps: int = 500,
    deterministic: bool = True,
    frame_every: int = 2,
) -> Replay:
    """One episode of ``actor`` in ``env_id`` rendered every ``frame_every`` steps."""
    if frame_every < 1:
        raise ValueError(f"frame_every: {frame_every} must be >= 1")
    env = make_env(env_id, render_mode="rgb_array")
    frames: list[np.ndarray] = []
    total, steps = 0.0, 0
    try:
        obs, _ = env.reset(seed=seed)
        frames.append(np.asarray(env.render()))
        done = False
        while not done and steps < max_steps:
            action = actor.act(np.asarray(obs)[None], deterministic)[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
            done = bool(terminated or truncated)
            if steps % frame_every == 0 or done:
                frames.append(np.asarray(env.render()))
    finally:
        env.close()
    return Replay(frames, total, steps)


def to_gif(frames: list[np.ndarray], fps: float = 25.0, width: int = 360) -> bytes:
    """Encode RGB frames as a looping animated GIF, resized to ``width`` pixels wide."""
    from PIL import Image

    if not frames:
        raise ValueError("frames: nothing to encode (an empty episode)")
    h, w = frames[0].shape[:2]
    size = (width, max(1, round(h * width / w)))
    images = [Image.fromarray(f).resize(size, Image.Resampling.BILINEAR) for f in frames]
    # One shared adaptive palette from the first frame keeps colours stable and encoding fast.
    palette = images[0].quantize(colors=64)
    quantized = [im.quantize(palette=palette) for im in images]
    buf = io.BytesIO()
    quantized[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=quantized[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
        optimize=False,
    )
    return buf.getvalue()


def actor_from_checkpoint(algo: str, config: Any, state: dict[str, Any]) -> Actor:
    """A fresh trainer of ``algo`` built from ``config`` with the checkpoint's weights loaded."""
    from pglab.algos import make_trainer

    trainer = make_trainer(algo, config, seed=0, device="cpu")
    trainer.load_state_dict(state)
    trainer.close()  # only ``act`` is needed; it does not touch the training envs
    return trainer


def replay_gif(
    actor: Actor, env_id: str, *, seed: int = 0, max_steps: int = 500
) -> tuple[bytes, Replay]:
    """Roll out and encode: the GIF bytes and the :class:`Replay` (return, length, frames)."""
    rep = rollout(actor, env_id, seed=seed, max_steps=max_steps)
    return to_gif(rep.frames), rep

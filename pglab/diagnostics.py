"""Per-episode policy-gradient samples and their statistics, in one vectorised pass.

The generic estimator averages one gradient sample per episode (or rollout segment) i:

    g_i = grad_theta sum_{t in segment i} log pi_theta(a_t | s_t) * w_t,      g = (1/m) sum_i g_i

where ``w_t`` is the weight Psi_t of the chosen estimator (see :mod:`pglab.estimators`). The
spread of the ``g_i`` measures how noisy the batch gradient is: ``tr Cov(g_i) / m`` is the
variance of ``g`` and ``|g|^2 / (tr Cov(g_i) / m)`` its signal-to-noise ratio.

How the samples are computed (no Python loop of backward calls): the steps of every segment
are cut into *pieces* of at most ``L`` steps, padded to ``[n_pieces, L]`` (padding repeats a
real step of the piece with weight 0, so no NaN can leak in), and one
``torch.func.vmap(torch.func.grad(...))`` over the pieces gives every piece's gradient; the
pieces are then summed into their segments with ``index_add_``. Cutting episodes into short
pieces instead of padding whole episodes to the longest one keeps the padding waste below
``L`` steps per segment, which is what brings the cost near an ordinary backward pass
(``python -m pglab bench --only gradsamples``). ``chunk_size`` bounds how many pieces go
through one vectorised call, so memory stays bounded for large nets or batches, and
:func:`grad_moments` folds each chunk's segment gradients into running statistics, so the
diagnostics never hold the m x P samples at once (at most :data:`DIAG_MEMORY_BYTES`). The MLP
policies skip ``vmap`` for the same piece layout: one ordinary backward gives each step's
d obj / d z for every Linear layer, and a ``bmm`` per layer sums them into piece gradients
(:func:`_mlp_piece_grads`, about 3x cheaper at the PPO zoo CartPole batch).

Works for any policy whose ``forward(obs)`` returns a ``torch.distributions`` object (the
MLP policies, ``GaussianMLP``'s free ``log_std``, ``TabularSoftmax``, ``LinearSoftmax``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from pglab.policies import CategoricalMLP, GaussianMLP, log_prob

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# Memory a chunk of gradient rows may take when chunk_size is None, whatever the batch (m
# segments) and the net (P parameters): the m x P samples are never all held at once by
# grad_moments, which the trainers' diag/grad_var and diag/grad_snr use.
DIAG_MEMORY_BYTES = 256 * 2**20


def _piece_length(counts: Tensor) -> int:
    """Piece length L: about the mean segment length, as a power of two in [4, 32].

    Short pieces waste little padding; long pieces produce fewer gradient rows to sum. Both
    costs are per step, so a length near the mean episode length, capped, balances them.
    """
    nonzero = counts[counts > 0]
    if nonzero.numel() == 0:
        return 1
    mean_len = float(nonzero.float().mean())
    L = 2 ** round(math.log2(max(mean_len, 1.0)))
    return int(min(max(L, 4), 32, int(nonzero.max())))


def grad_samples(
    policy: nn.Module,
    obs: Tensor,
    actions: Tensor,
    weights: Tensor,
    segments: Tensor,
    n_segments: int,
    chunk_size: int | None = None,
) -> Tensor:
    """Per-segment gradients  g_i = grad_theta sum_{t: segments[t] = i} log pi(a_t|s_t) * w_t.

    Args:
        policy: module whose ``forward(obs)`` returns a ``torch.distributions`` object.
        obs: ``[B, ...]`` observations, in any order.
        actions: ``[B, ...]`` actions taken.
        weights: ``[B]`` weights Psi_t (treated as constants: no gradient flows into them).
        segments: ``[B]`` int64 segment (episode) index of each step, in ``[0, n_segments)``.
        n_segments: m, the number of rows returned; a segment with no steps gets a zero row.
        chunk_size: at most this many episode pieces (of <= 32 steps) per vectorised call;
            ``None`` picks it so a call stays under :data:`DIAG_MEMORY_BYTES`.

    Returns:
        ``[m, P]``: row i is g_i flattened, parameters in ``policy.parameters()`` order.
        Summing the rows gives the ordinary gradient of ``sum_t log pi(a_t|s_t) * w_t``.
        This is m x P floats: for statistics of a large batch use :func:`grad_moments`, which
        never holds more than a chunk of rows.
    """
    P = sum(p.numel() for p in policy.parameters())
    dtype = next(iter(policy.parameters())).dtype if P else torch.float32
    out = torch.zeros(n_segments, P, dtype=dtype, device=weights.device)
    for seg_ids, rows in _segment_rows(
        policy, obs, actions, weights, segments, n_segments, chunk_size
    ):
        out[seg_ids] = rows
    return out


def grad_moments(
    policy: nn.Module,
    obs: Tensor,
    actions: Tensor,
    weights: Tensor,
    segments: Tensor,
    n_segments: int,
    chunk_size: int | None = None,
) -> dict[str, Tensor | float]:
    """:func:`grad_stats` of :func:`grad_samples` without holding the ``[m, P]`` samples.

    The segment gradients are made a chunk at a time (at most :data:`DIAG_MEMORY_BYTES` of
    rows, whatever m and P) and folded into a running mean and sum of squared deviations
    (Chan et al.'s pairwise update, in float64):  M2 = M2_a + M2_b + |mean_b - mean_a|^2
    n_a n_b / (n_a + n_b).  Same inputs and conventions as :func:`grad_samples`.

    Returns ``mean`` ``[P]``, ``variance`` = tr Cov(g_i) / m (ddof=1; NaN for m < 2), ``snr``
    = |mean|^2 / variance (NaN when the variance is 0 or NaN) and ``sq_norms`` ``[m]`` =
    |g_i|^2 (what the min-variance baseline needs).
    """
    P = sum(p.numel() for p in policy.parameters())
    device = weights.device
    mean = torch.zeros(P, dtype=torch.float64, device=device)
    sq_norms = torch.zeros(n_segments, dtype=torch.float64, device=device)
    count, m2 = 0, 0.0
    for seg_ids, rows in _segment_rows(
        policy, obs, actions, weights, segments, n_segments, chunk_size
    ):
        k = rows.shape[0]
        # float32 reductions over the chunk (pairwise sums), float64 across chunks
        sq_norms[seg_ids] = torch.linalg.vector_norm(rows, dim=1).double().pow(2)
        mean_b = rows.mean(0)
        m2_b = float(torch.linalg.vector_norm(rows.sub_(mean_b))) ** 2  # rows are ours
        mean_b = mean_b.double()
        mean, m2, count = _combine(mean, m2, count, mean_b, m2_b, k)
    if n_segments > count:  # segments with no steps: zero rows
        zero = torch.zeros_like(mean)
        mean, m2, count = _combine(mean, m2, count, zero, 0.0, n_segments - count)
    m = n_segments
    variance = m2 / (m - 1) / m if m >= 2 else float("nan")
    snr = float(mean.pow(2).sum()) / variance if variance > 0 else float("nan")
    dtype = next(iter(policy.parameters())).dtype if P else torch.float32
    return {"mean": mean.to(dtype), "variance": variance, "snr": snr, "sq_norms": sq_norms}


def score_dots(
    policy: nn.Module,
    obs: Tensor,
    actions: Tensor,
    weights_y: Tensor,
    weights_z: Tensor,
    segments: Tensor,
    n_segments: int,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-segment ``y_i . z_i`` and ``z_i . z_i`` (``[m]`` each, float64) of the gradient
    samples of two weightings (:func:`grad_samples` with ``weights_y``, ``weights_z``), made a
    chunk at a time like :func:`grad_moments`: memory O(chunk x P), never O(m x P). What the
    minimum-variance baseline needs (:func:`pglab.estimators.min_variance_baseline_from_dots`);
    segments without steps give 0."""
    device = weights_z.device
    yz = torch.zeros(n_segments, dtype=torch.float64, device=device)
    zz = torch.zeros(n_segments, dtype=torch.float64, device=device)
    args = (policy, obs, actions)
    rows_y = _segment_rows(*args, weights_y, segments, n_segments, chunk_size)
    rows_z = _segment_rows(*args, weights_z, segments, n_segments, chunk_size)
    for (ids_y, y), (ids_z, z) in zip(rows_y, rows_z, strict=True):
        assert torch.equal(ids_y, ids_z)  # same segments, same chunking
        yz[ids_z] = (y.double() * z.double()).sum(1)
        zz[ids_z] = z.double().pow(2).sum(1)
    return yz, zz


def _combine(
    mean_a: Tensor, m2_a: float, n_a: int, mean_b: Tensor, m2_b: float, n_b: int
) -> tuple[Tensor, float, int]:
    """Pool two groups' (mean, sum of squared deviations, count)."""
    n = n_a + n_b
    if n_a == 0:
        return mean_b.clone(), m2_b, n_b
    delta = mean_b - mean_a
    return mean_a + delta * (n_b / n), m2_a + m2_b + float(delta.pow(2).sum()) * n_a * n_b / n, n


def _segment_rows(
    policy: nn.Module,
    obs: Tensor,
    actions: Tensor,
    weights: Tensor,
    segments: Tensor,
    n_segments: int,
    chunk_size: int | None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(segment ids [k], gradient rows [k, P])`` for every segment with steps, in
    increasing id order, a chunk of pieces at a time; a segment cut by a chunk boundary is
    carried over and yielded whole with the next chunk. Segments without steps are not
    yielded (their rows are zero). Memory: O(chunk_size x P), never O(m x P)."""
    named = [(k, p) for k, p in policy.named_parameters() if p.requires_grad]
    if len(named) != len(list(policy.parameters())):
        raise ValueError("grad_samples: every policy parameter must require grad")
    params = {k: p.detach() for k, p in named}
    P = sum(p.numel() for _, p in named)
    B = int(segments.shape[0])
    if not (obs.shape[0] == actions.shape[0] == weights.shape[0] == B):
        raise ValueError(
            f"grad_samples: obs, actions, weights and segments need the same first dimension, "
            f"got {obs.shape[0]}, {actions.shape[0]}, {weights.shape[0]}, {B}"
        )
    dtype = named[0][1].dtype if named else torch.float32
    device = weights.device
    if B == 0 or P == 0:
        return
    seg = segments.to(device=device, dtype=torch.long)
    if int(seg.min()) < 0 or int(seg.max()) >= n_segments:
        raise ValueError(f"grad_samples: segment ids must lie in [0, {n_segments})")
    w = weights.detach().to(dtype)

    # Cut each segment into pieces of at most L steps and lay them out as [n_pieces, L].
    order = torch.argsort(seg, stable=True)
    s_sorted = seg[order]
    counts = torch.bincount(seg, minlength=n_segments)
    L = _piece_length(counts)
    starts = torch.cumsum(counts, 0) - counts
    n_pieces_per_seg = (counts + L - 1) // L
    piece_offset = torch.cumsum(n_pieces_per_seg, 0) - n_pieces_per_seg
    rank = torch.arange(B, device=device) - starts[s_sorted]  # position inside its segment
    piece = piece_offset[s_sorted] + torch.div(rank, L, rounding_mode="floor")
    slot = rank % L
    n_pieces = int(n_pieces_per_seg.sum())
    idx = torch.full((n_pieces, L), -1, dtype=torch.long, device=device)
    idx[piece, slot] = order
    mask = idx >= 0
    idx = torch.where(mask, idx, idx[:, :1])  # pad with the piece's first (real) step
    piece_w = w[idx] * mask
    piece_seg = torch.repeat_interleave(torch.arange(n_segments, device=device), n_pieces_per_seg)

    def piece_objective(p: dict[str, Tensor], o: Tensor, a: Tensor, pw: Tensor) -> Tensor:
        return (log_prob(functional_call(policy, p, (o,)), a) * pw).sum()

    if _is_plain_mlp(policy):
        per_piece = partial(_mlp_piece_grads, policy)
    else:
        per_piece = vmap(grad(piece_objective), in_dims=(None, 0, 0, 0))
    if chunk_size is None:
        # a chunk holds ~4 copies of its rows (the per-layer grads, their concatenation, the
        # segment sums and one temporary of the caller)
        itemsize = torch.empty((), dtype=dtype).element_size()
        chunk_size = max(1, DIAG_MEMORY_BYTES // (4 * itemsize * P))
    if chunk_size < 1:
        raise ValueError(f"chunk_size: {chunk_size} is not allowed (an integer >= 1, or None)")
    carry: Tensor | None = None  # partial row of a segment cut by the last chunk boundary
    for lo in range(0, n_pieces, chunk_size):
        hi = min(lo + chunk_size, n_pieces)
        ii = idx[lo:hi]
        gs = per_piece(params, obs[ii], actions[ii], piece_w[lo:hi])  # name -> [n, *shape]
        flat = torch.cat([gs[k].reshape(hi - lo, -1) for k, _ in named], dim=1).to(dtype)
        del gs
        seg_ids, local = torch.unique_consecutive(piece_seg[lo:hi], return_inverse=True)
        rows = torch.zeros(seg_ids.shape[0], P, dtype=dtype, device=device)
        rows.index_add_(0, local, flat)
        del flat
        if carry is not None:
            rows[0] += carry
            carry = None
        if hi < n_pieces and int(piece_seg[hi]) == int(seg_ids[-1]):
            carry = rows[-1].clone()
            seg_ids, rows = seg_ids[:-1], rows[:-1]
        if seg_ids.numel():
            yield seg_ids, rows


def _is_plain_mlp(policy: nn.Module) -> bool:
    """A CategoricalMLP / GaussianMLP whose net is Linear layers and tanh/ReLU only."""
    return type(policy) in (CategoricalMLP, GaussianMLP) and all(
        isinstance(m, (nn.Linear, nn.Tanh, nn.ReLU)) for m in policy.net
    )


def _mlp_piece_grads(
    policy: CategoricalMLP | GaussianMLP,
    params: dict[str, Tensor],
    obs: Tensor,
    actions: Tensor,
    pw: Tensor,
) -> dict[str, Tensor]:
    """Per-piece gradients of  sum_l pw[j, l] log pi(a_jl | s_jl)  for an MLP policy, ``[n, L]``
    pieces, by one ordinary backward pass instead of ``vmap(grad)`` (about 4x cheaper here).

    For a layer  z = x W^T + b  applied row by row, d obj / d z_t = delta_t depends on step t
    alone, so a piece's gradient is  dW = sum_l delta_l x_l^T  (one ``bmm`` over pieces) and
    db = sum_l delta_l. GaussianMLP's ``log_std`` gets a per-row copy for the same reason.
    Returns ``{parameter name: [n, *shape]}`` like the vmapped version.
    """
    n, L = pw.shape
    x = policy.encode(obs.reshape(n * L, *obs.shape[2:]))
    inputs: list[Tensor] = []
    pre: list[Tensor] = []  # pre-activations z of each Linear layer, [n L, out]
    names: list[str] = []
    h = x
    for j, m in enumerate(policy.net):
        if isinstance(m, nn.Linear):
            inputs.append(h.detach())
            h = nn.functional.linear(h, params[f"net.{j}.weight"], params[f"net.{j}.bias"])
            if not h.requires_grad:  # the first layer: make z a leaf to differentiate by
                h.requires_grad_()
            pre.append(h)
            names.append(f"net.{j}")
        else:
            h = m(h)
    a = actions.reshape(n * L, *actions.shape[2:])
    wrt = list(pre)
    if type(policy) is CategoricalMLP:
        lp = torch.log_softmax(h, -1).gather(-1, a.long().unsqueeze(-1)).squeeze(-1)
    else:
        log_std = params["log_std"].expand(h.shape).clone().requires_grad_()
        z = (a - h) * torch.exp(-log_std)
        lp = (-0.5 * z.pow(2) - log_std - _HALF_LOG_2PI).sum(-1)
        wrt.append(log_std)
    deltas = torch.autograd.grad((lp * pw.reshape(-1)).sum(), wrt)
    out: dict[str, Tensor] = {}
    for name, x_in, delta in zip(names, inputs, deltas, strict=False):
        d = delta.reshape(n, L, -1)
        out[f"{name}.weight"] = torch.bmm(d.transpose(1, 2), x_in.reshape(n, L, -1))
        out[f"{name}.bias"] = d.sum(1)
    if type(policy) is GaussianMLP:
        out["log_std"] = deltas[-1].reshape(n, L, -1).sum(1)
    return out


def grad_stats(samples: Tensor) -> dict[str, Tensor | float]:
    """Statistics of the batch gradient  g = (1/m) sum_i g_i  from its samples ``[m, P]``.

    Returns ``mean`` ``[P]`` (g itself), ``variance`` = tr Cov(g_i) / m with the unbiased
    (ddof=1) covariance, i.e. the variance of g, and ``snr`` = |g|^2 / variance.
    ``variance`` is NaN for m < 2 (undefined); ``snr`` is NaN when the variance is 0 or NaN.
    """
    m = samples.shape[0]
    mean = samples.mean(0)
    if m < 2:
        return {"mean": mean, "variance": float("nan"), "snr": float("nan")}
    # sum_p Var_i(g_ip) as one two-pass sum: ``samples.var(0)`` reduces across rows, a slow
    # strided kernel on CPU (0.8 ms for [17, 4610], 20x this).
    variance = float((samples - mean).pow(2).sum()) / (m - 1) / m
    snr = float(mean.pow(2).sum()) / variance if variance > 0 else float("nan")
    return {"mean": mean, "variance": variance, "snr": snr}


def policy_grad_diagnostics(
    policy: nn.Module,
    obs: Tensor,
    actions: Tensor,
    weights: Tensor,
    segments: Tensor,
    n_segments: int,
) -> dict[str, float]:
    """``diag/grad_var`` and ``diag/grad_snr`` of the per-segment policy-gradient samples.

    Call at the start of an update with the advantages / Psi_t the update will use as
    ``weights`` and the segment ids of :func:`pglab.rollout.segment_ids` (flattened like the
    other ``[B]`` inputs). A metric that is undefined here (fewer than two segments, zero
    variance) is left out rather than reported as a fake number.
    """
    stats = grad_moments(policy, obs, actions, weights, segments, n_segments)
    out: dict[str, float] = {}
    if math.isfinite(stats["variance"]):
        out["diag/grad_var"] = float(stats["variance"])
    if math.isfinite(stats["snr"]):
        out["diag/grad_snr"] = float(stats["snr"])
    return out


def approx_kl(log_ratio: Tensor) -> tuple[Tensor, Tensor]:
    """KL(pi_old || pi_theta) from samples of pi_old (http://joschu.net/blog/kl-approx.html):
    k1 = E[-log r] (unbiased, noisy, can be < 0) and k3 = E[(r - 1) - log r] (unbiased, >= 0).
    """
    return -log_ratio.mean(), (torch.expm1(log_ratio) - log_ratio).mean()


def explained_variance(pred: Tensor, target: Tensor) -> float:
    """1 - Var(target - pred) / Var(target); NaN when the target is constant or one value."""
    if target.numel() < 2:
        return float("nan")
    var_y = target.var()
    if var_y.item() == 0:
        return float("nan")
    return float(1.0 - (target - pred).var() / var_y)

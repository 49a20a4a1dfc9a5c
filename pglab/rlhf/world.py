"""The toy language world: prompts, token sequences, gold rewards and the SFT policy.

A response ``y = (y_1, ..., y_L)`` is ``L`` tokens over a vocabulary of ``V`` words, so each
of the ``P`` prompts has exactly ``V^L`` responses (6^4 = 1296 by default) and every
expectation over ``pi(.|x)`` is a finite sum (:mod:`pglab.rlhf.exact`).

Gold rewards ``r*(x, y)`` (hidden from the learner; the preferences are labelled with them):

- ``sentiment`` (default): ``#positive words - #negative words - 2 (L - #distinct tokens)``.
  ``good`` and ``great`` are positive, ``bad`` negative; every repeated token costs 2, so
  "good good good good" scores 4 - 6 = -2 while "cat good was great"-style responses with
  both positive words and no repeats score the maximum, 2. Positive words are rare in the
  SFT corpus and repeated ones rarer still, so a reward model learned from a few SFT pairs
  extrapolates "more good is better": the reward-hacking world.
- ``count``: the number of ``good`` tokens in ``y`` (target-token count), in [0, L].
- ``pattern``: the number of positions where ``y`` matches the prompt's target sentence
  (prompt p's target is a fixed sequence drawn from the world seed), in [0, L].

pi_SFT is a :class:`PrefixMLP` fitted by maximum likelihood to a synthetic corpus drawn from
per-prompt bigram chains that favour neutral words (fluent, but not good): the same
architecture is the policy pi_theta (initialised from pi_SFT) and, with a scalar head, the
PPO value model.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn

WORDS = ("the", "cat", "was", "good", "great", "bad", "very", "not", "and", "so")
POSITIVE = ("good", "great")
NEGATIVE = ("bad",)
GOLD_REWARDS = ("sentiment", "count", "pattern")
ENUM_CAP = 4096  # V^L responses per prompt; beyond this the exact machinery gets slow
MAX_VOCAB = len(WORDS)

_FIT_LOCK = threading.Lock()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch single-threaded inside the block: these tensors are tiny, and on a busy
    machine a second intra-op thread made fitting pi_SFT 50x slower (17 s against 0.3 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_world(vocab_size: int, seq_len: int) -> None:
    """Raise ``ValueError`` naming the field when ``V^L`` exceeds :data:`ENUM_CAP`."""
    n = vocab_size**seq_len
    if n > ENUM_CAP:
        raise ValueError(
            f"seq_len: vocab_size^seq_len = {vocab_size}^{seq_len} = {n} responses per prompt "
            f"is beyond the enumeration cap (at most {ENUM_CAP}); use a shorter seq_len or a "
            "smaller vocab_size"
        )
    if vocab_size < 6:
        raise ValueError(
            f"vocab_size: {vocab_size} is out of range (in [6, {MAX_VOCAB}]: the gold rewards "
            "need the words the, cat, was, good, great, bad)"
        )


def all_sequences(vocab_size: int, seq_len: int) -> Tensor:
    """Every response, ``[V^L, L]`` int64, in lexicographic order (row i is i in base V)."""
    idx = torch.arange(vocab_size**seq_len)
    powers = vocab_size ** torch.arange(seq_len - 1, -1, -1)
    return (idx[:, None] // powers) % vocab_size


# -- gold rewards ---------------------------------------------------------------------------------
def gold_reward(name: str, seqs: Tensor, prompts: Tensor, targets: Tensor) -> Tensor:
    """``r*(x, y)`` for a batch: ``seqs [B, L]``, ``prompts [B]``, ``targets [P, L]`` -> ``[B]``.

    See the module docstring for the definitions.
    """
    good, great, bad = WORDS.index("good"), WORDS.index("great"), WORDS.index("bad")
    if name == "sentiment":
        pos = ((seqs == good) | (seqs == great)).sum(-1)
        neg = (seqs == bad).sum(-1)
        srt = seqs.sort(-1).values
        distinct = 1 + (srt[:, 1:] != srt[:, :-1]).sum(-1)
        return (pos - neg - 2 * (seqs.shape[1] - distinct)).float()
    if name == "count":
        return (seqs == good).sum(-1).float()
    if name == "pattern":
        return (seqs == targets[prompts]).sum(-1).float()
    raise ValueError(f"gold: {name!r} is not allowed (one of {', '.join(GOLD_REWARDS)})")


# -- the model ----------------------------------------------------------------------------------
class PrefixMLP(nn.Module):
    """An MLP over (prompt, position, prefix): ``logits_t = f(x, t, y_<t)``, ``[B, L, out]``.

    The first layer is a linear map of the one-hot vector [prompt; position; (s, y_s) for
    s < t], computed as a sum of embeddings with an exclusive cumulative sum over positions,
    so all ``L`` positions of a batch take one pass (teacher forcing). With ``causal=False``
    every position sees the whole response (the reward model's input), and a bag-of-words
    embedding of the token counts is added.
    """

    def __init__(
        self,
        n_prompts: int,
        vocab_size: int,
        seq_len: int,
        hidden_size: int = 64,
        n_layers: int = 1,
        out_size: int | None = None,
        causal: bool = True,
        activation: str = "tanh",
    ):
        super().__init__()
        self.vocab_size, self.seq_len, self.causal = vocab_size, seq_len, causal
        self.prompt_emb = nn.Embedding(n_prompts, hidden_size)
        self.pos_emb = nn.Parameter(torch.zeros(seq_len, hidden_size))
        self.tok_emb = nn.Embedding(seq_len * vocab_size, hidden_size)  # (position, token)
        nn.init.normal_(self.tok_emb.weight, std=0.3)
        nn.init.normal_(self.prompt_emb.weight, std=0.3)
        self.bag_emb = None if causal else nn.Embedding(vocab_size, hidden_size)
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        layers: list[nn.Module] = [act()]
        for _ in range(n_layers - 1):
            layers += [nn.Linear(hidden_size, hidden_size), act()]
        layers.append(nn.Linear(hidden_size, out_size or vocab_size))
        self.head = nn.Sequential(*layers)

    def forward(self, prompts: Tensor, seqs: Tensor) -> Tensor:
        """``prompts [B]``, ``seqs [B, L]`` -> ``[B, L, out]`` (causal) or ``[B, out]``."""
        offs = torch.arange(self.seq_len, device=seqs.device) * self.vocab_size
        e = self.tok_emb(seqs + offs)  # [B, L, H]
        if self.causal:
            prefix = e.cumsum(1) - e  # sum over s < t
            h = self.prompt_emb(prompts)[:, None] + self.pos_emb + prefix
            return self.head(h)
        h = self.prompt_emb(prompts) + e.sum(1)
        assert self.bag_emb is not None
        h = h + self.bag_emb(seqs).sum(1)
        return self.head(h)


def enumerated_token_log_probs(policy: PrefixMLP, n_prompts: int) -> Tensor:
    """``log pi(y_t | x, y_<t)`` for every prompt, response and position, ``[P, V^L, L]``.

    The same numbers as :func:`token_log_probs` on every response, from one pass over the
    distinct prefixes only (``sum_t V^t`` rows a prompt, 259 for 6^4, instead of ``L V^L``
    = 5,184): position t's logits depend on ``y_<t`` alone. Differentiable.
    """
    V, L = policy.vocab_size, policy.seq_len
    dev = policy.pos_emb.device
    P = n_prompts
    pieces = []
    for t in range(L):
        prefixes = all_sequences(V, t).to(dev) if t else torch.zeros(1, 0, dtype=torch.long)
        n = prefixes.shape[0]
        h = policy.prompt_emb.weight[:, None] + policy.pos_emb[t]  # [P, 1, H]
        if t:
            offs = torch.arange(t, device=dev) * V
            h = h + policy.tok_emb(prefixes + offs).sum(1)[None]  # [P, n, H]
        else:
            h = h.expand(P, n, -1)
        pieces.append(torch.log_softmax(policy.head(h), -1))  # [P, V^t, V]
    idx = torch.arange(V**L, device=dev)
    out = []
    for t, lp in enumerate(pieces):
        prefix = idx // V ** (L - t)  # index of y_<t among the V^t prefixes
        token = (idx // V ** (L - 1 - t)) % V
        out.append(lp[:, prefix, token])  # [P, N]
    return torch.stack(out, -1)


def token_log_probs(policy: PrefixMLP, prompts: Tensor, seqs: Tensor) -> Tensor:
    """``log pi(y_t | x, y_<t)`` for every token, ``[B, L]`` (sum over t for log pi(y|x))."""
    logits = policy(prompts, seqs)
    return torch.log_softmax(logits, -1).gather(-1, seqs.unsqueeze(-1)).squeeze(-1)


# -- the world ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorldSpec:
    """What defines a world; equal specs give identical worlds (corpus, targets, pi_SFT)."""

    vocab_size: int = 6
    seq_len: int = 4
    n_prompts: int = 3
    world_seed: int = 0
    corpus_size: int = 300  # sequences per prompt in the SFT corpus
    hidden_size: int = 64
    n_layers: int = 1


class World:
    """Prompts, the enumeration of responses, the corpus, the gold targets and pi_SFT."""

    def __init__(self, spec: WorldSpec, sft_state: dict[str, Tensor], corpus: Tensor):
        self.spec = spec
        V, L, P = spec.vocab_size, spec.seq_len, spec.n_prompts
        self.words = WORDS[:V]
        self.seqs = all_seqs = all_sequences(V, L)  # [N, L]
        self.n_responses = all_seqs.shape[0]
        g = torch.Generator().manual_seed(10_000 + spec.world_seed)
        self.targets = torch.randint(0, V, (P, L), generator=g)
        self.corpus = corpus  # [P, N] counts of each response in the SFT corpus
        # All (prompt, response) pairs, prompt-major: row p * N + i is (p, seqs[i]).
        self.flat_prompts = torch.arange(P).repeat_interleave(self.n_responses)
        self.flat_seqs = all_seqs.repeat(P, 1)
        self.sft = self.new_policy()
        self.sft.load_state_dict(sft_state)
        self.sft.requires_grad_(False)
        with torch.no_grad():
            self.sft_token_logp = enumerated_token_log_probs(self.sft, P)  # [P, N, L]
        self.sft_logp = self.sft_token_logp.sum(-1)  # [P, N]

    @property
    def n_prompts(self) -> int:
        return self.spec.n_prompts

    def new_policy(self, out_size: int | None = None) -> PrefixMLP:
        s = self.spec
        return PrefixMLP(s.n_prompts, s.vocab_size, s.seq_len, s.hidden_size, s.n_layers, out_size)

    def gold(self, name: str) -> Tensor:
        """``r*(x, y)`` for every prompt and response, ``[P, N]``."""
        r = gold_reward(name, self.flat_seqs, self.flat_prompts, self.targets)
        return r.view(self.n_prompts, self.n_responses)

    def decode(self, seq: Tensor) -> str:
        return " ".join(self.words[int(t)] for t in seq)


def _bigram_corpus(spec: WorldSpec) -> Tensor:
    """Counts ``[P, N]`` of a corpus drawn from per-prompt bigram chains over the vocabulary.

    Each prompt has its own start distribution and transition matrix (Dirichlet(0.5) draws,
    so a few continuations dominate: fluent), with the positive words down-weighted 4x and
    repeats of the previous token 10x (not good, rarely repetitive).
    """
    V, L, P = spec.vocab_size, spec.seq_len, spec.n_prompts
    g = torch.Generator().manual_seed(spec.world_seed)
    conc = torch.full((V,), 0.5)
    gamma = torch.distributions.Gamma(conc, torch.ones(V))
    weights = torch.ones(V)
    for w in POSITIVE:
        weights[WORDS.index(w)] = 0.25
    counts = torch.zeros(P, V**L)
    for p in range(P):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        start = gamma.sample() * weights
        trans = gamma.sample((V,)) * weights
        trans = trans * (1 - 0.9 * torch.eye(V))
        start, trans = start / start.sum(), trans / trans.sum(-1, keepdim=True)
        tok = torch.multinomial(start, spec.corpus_size, replacement=True, generator=g)
        idx = tok.clone()
        for _ in range(L - 1):
            tok = torch.multinomial(trans[tok], 1, generator=g).squeeze(-1)
            idx = idx * V + tok
        counts[p] = torch.bincount(idx, minlength=V**L).float()
    return counts


@lru_cache(maxsize=8)
def _fit_sft(spec: WorldSpec) -> tuple[dict[str, Tensor], Tensor]:
    """Fit pi_SFT by maximum likelihood on the corpus (full-batch Adam over the enumerated
    responses weighted by their corpus counts, which is the corpus log-likelihood)."""
    corpus = _bigram_corpus(spec)
    P, V, L = spec.n_prompts, spec.vocab_size, spec.seq_len
    w = corpus / corpus.sum()  # [P, N]: the corpus log-likelihood is a weighted sum
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(spec.world_seed)
    model = PrefixMLP(P, V, L, spec.hidden_size, spec.n_layers)
    torch.random.set_rng_state(gen_state)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(150):
        loss = -(w * enumerated_token_log_probs(model, P).sum(-1)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, corpus


def make_world(spec: WorldSpec) -> World:
    """Build (or fetch from the in-process cache) the world of ``spec``; thread-safe."""
    check_world(spec.vocab_size, spec.seq_len)
    with _FIT_LOCK, one_thread():
        state, corpus = _fit_sft(spec)
    return World(spec, {k: v.clone() for k, v in state.items()}, corpus)

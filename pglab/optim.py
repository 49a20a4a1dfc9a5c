"""Adam and RMSprop on one flat parameter buffer, in a few in-place tensor ops; plain SGD beside them.

PPO's zoo CartPole preset takes 20 Adam steps on ~9,000 parameters every update. For a
tensor that small, ``torch.optim.Adam.step()`` spends most of its time in Python around the
arithmetic (parameter groups, state lookups, profiler hooks): about 100 us a step inside a
training loop, against about 20 us for the ops themselves. This is the same update, written
out (Kingma & Ba 2015, https://arxiv.org/abs/1412.6980, Algorithm 1, in the order of
``torch.optim.adam._single_tensor_adam``, so the numbers equal torch's; ``tests/test_optim.py``):

    m_t = beta1 m_{t-1} + (1 - beta1) g_t          v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    theta_t = theta_{t-1} - lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pglab import kernels


class FlatAdam:
    """Adam over a single flat parameter ``param`` ``[P]`` whose ``.grad`` is its gradient.

    ``lr`` may be changed between steps (learning-rate schedules set the attribute).
    """

    def __init__(
        self,
        param: Tensor,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if param.dim() != 1:
            raise ValueError(f"FlatAdam: needs one flat parameter, got shape {tuple(param.shape)}")
        self.param = param
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        grad = self.param.grad
        assert grad is not None, "FlatAdam.step() before any gradient"
        self.steps += 1
        if self.param.device.type == "cpu" and self.param.dtype == torch.float32:
            # the same update in one compiled pass over the four buffers
            kernels.adam_step_(
                self.param.detach().numpy(), grad.numpy(), self.exp_avg.numpy(),
                self.exp_avg_sq.numpy(), self.lr, self.beta1, self.beta2, self.eps, self.steps,
            )  # fmt: skip
            return
        self.exp_avg.lerp_(grad, 1.0 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        bias_correction1 = 1.0 - self.beta1**self.steps
        bias_correction2_sqrt = math.sqrt(1.0 - self.beta2**self.steps)
        denom = (self.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-self.lr / bias_correction1)


class FlatRMSprop:
    """RMSprop over a single flat parameter ``param`` ``[P]`` (no momentum, not centred), the
    update of ``torch.optim.RMSprop`` (Tieleman & Hinton 2012, lecture 6.5) in its order:

        v_t = alpha v_{t-1} + (1 - alpha) g_t^2,    theta_t = theta_{t-1} - lr g_t / (sqrt(v_t) + eps)

    One compiled pass on CPU (:func:`pglab.kernels.rmsprop_step_`), three tensor ops elsewhere.
    A2C takes one such step every 40 env steps, where ``torch.optim.RMSprop.step()``'s Python
    bookkeeping costs more than the arithmetic. ``tests/test_a2c.py`` checks it equals torch's.
    """

    def __init__(self, param: Tensor, lr: float, alpha: float = 0.99, eps: float = 1e-8):
        if param.dim() != 1:
            raise ValueError(
                f"FlatRMSprop: needs one flat parameter, got shape {tuple(param.shape)}"
            )
        self.param = param
        self.lr = lr
        self.alpha = alpha
        self.eps = eps
        self.square_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        grad = self.param.grad
        assert grad is not None, "FlatRMSprop.step() before any gradient"
        self.steps += 1
        if self.param.device.type == "cpu" and self.param.dtype == torch.float32:
            kernels.rmsprop_step_(
                self.param.detach().numpy(), grad.numpy(), self.square_avg.numpy(),
                self.lr, self.alpha, self.eps,
            )  # fmt: skip
            return
        self.square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1.0 - self.alpha)
        self.param.addcdiv_(grad, self.square_avg.sqrt().add_(self.eps), value=-self.lr)


class FlatSGD:
    """Plain stochastic gradient descent, the books' update, over one flat parameter ``[P]``:

        theta_t = theta_{t-1} - lr * g_t

    (Sutton & Barto 2018, eq. 13.8, is its ascent form on -L). Same interface as
    :class:`FlatAdam` (``param.grad`` is the gradient; ``lr`` may change between steps).
    """

    def __init__(self, param: Tensor, lr: float):
        if param.dim() != 1:
            raise ValueError(f"FlatSGD: needs one flat parameter, got shape {tuple(param.shape)}")
        if not lr > 0.0:
            raise ValueError(f"lr: {lr} is not allowed (> 0)")
        self.param = param
        self.lr = lr
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        grad = self.param.grad
        assert grad is not None, "FlatSGD.step() before any gradient"
        self.steps += 1
        self.param.add_(grad, alpha=-self.lr)

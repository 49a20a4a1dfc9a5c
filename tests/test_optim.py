"""FlatAdam takes exactly torch.optim.Adam's steps."""

from __future__ import annotations

import pytest
import torch

from pglab.optim import FlatAdam


def test_flat_adam_equals_torch_adam() -> None:
    g = torch.Generator().manual_seed(0)
    start = torch.randn(500, generator=g)
    ours = torch.nn.Parameter(start.clone())
    ref = torch.nn.Parameter(start.clone())
    opt = FlatAdam(ours, lr=1e-2, eps=1e-5)
    ref_opt = torch.optim.Adam([ref], lr=1e-2, eps=1e-5, foreach=False)
    for step in range(50):
        grad = torch.randn(500, generator=g) * (1 + step % 7)
        lr = 1e-2 * (1 - step / 50)  # a linear schedule, set between steps
        opt.lr = lr
        for group in ref_opt.param_groups:
            group["lr"] = lr
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
        torch.testing.assert_close(ours.data, ref.data, rtol=0, atol=0)
    assert not torch.equal(ours.data, start)


def test_flat_adam_refuses_a_shaped_parameter() -> None:
    with pytest.raises(ValueError, match="one flat parameter"):
        FlatAdam(torch.zeros(3, 3), lr=1e-3)

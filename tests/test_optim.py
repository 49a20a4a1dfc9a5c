"""FlatAdam takes torch.optim.Adam's steps: exactly through torch ops (the CUDA path), to float32
rounding through the compiled CPU kernel."""

from __future__ import annotations

import pytest
import torch

from pglab.optim import FlatAdam


@pytest.mark.parametrize("kernel", [True, False])
def test_flat_adam_equals_torch_adam(kernel: bool) -> None:
    g = torch.Generator().manual_seed(0)
    start = torch.randn(500, generator=g)
    if not kernel:  # the torch-ops path that CUDA takes, on CPU: float64 skips the kernel
        start = start.double()
    ours = torch.nn.Parameter(start.clone())
    ref = torch.nn.Parameter(start.clone())
    opt = FlatAdam(ours, lr=1e-2, eps=1e-5)
    ref_opt = torch.optim.Adam([ref], lr=1e-2, eps=1e-5, foreach=False)
    for step in range(50):
        grad = (torch.randn(500, generator=g) * (1 + step % 7)).to(start.dtype)
        lr = 1e-2 * (1 - step / 50)  # a linear schedule, set between steps
        opt.lr = lr
        for group in ref_opt.param_groups:
            group["lr"] = lr
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
        if kernel:  # one float32 rounding apart at most, and not drifting over 50 steps
            torch.testing.assert_close(ours.data, ref.data, rtol=2e-6, atol=1e-7)
        else:
            torch.testing.assert_close(ours.data, ref.data, rtol=0, atol=0)
    assert not torch.equal(ours.data, start)


def test_flat_adam_refuses_a_shaped_parameter() -> None:
    with pytest.raises(ValueError, match="one flat parameter"):
        FlatAdam(torch.zeros(3, 3), lr=1e-3)


def test_flat_sgd_is_theta_minus_lr_g_and_matches_torch():
    import torch as _t

    from pglab.optim import FlatSGD

    p = _t.nn.Parameter(_t.tensor([1.0, -2.0, 0.5]))
    ref = _t.nn.Parameter(p.detach().clone())
    opt, ref_opt = FlatSGD(p, lr=0.1), _t.optim.SGD([ref], lr=0.1)
    for g in ([1.0, 1.0, -2.0], [0.5, 0.0, 4.0]):
        p.grad = _t.tensor(g)
        ref.grad = _t.tensor(g)
        opt.step()
        ref_opt.step()
    assert p.tolist() == pytest.approx([1.0 - 0.15, -2.0 - 0.1, 0.5 - 0.2])
    _t.testing.assert_close(p.detach(), ref.detach())
    with pytest.raises(ValueError, match="lr"):
        FlatSGD(p, lr=0.0)

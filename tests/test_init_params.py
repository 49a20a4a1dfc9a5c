"""``init_params``: REINFORCE starts a linear/tabular policy from exactly the given numbers."""

import numpy as np
import pytest
import torch

from pglab.algos.reinforce import Reinforce, ReinforceConfig

CORRIDOR = "pglab/ShortCorridor-v0"


def _config(**kw):
    base = dict(env_id=CORRIDOR, n_layers=0, batch_mode="episodes", batch_size=8)
    return ReinforceConfig(**{**base, **kw})


def test_trainer_starts_from_init_params_on_the_fast_path():
    init = [0.75, -1.25, 3.0, -2.5]  # logits: right = 0.75 + 3 = 3.75, left = -1.25 - 2.5
    trainer = Reinforce(_config(init_params=init), seed=0)
    assert trainer.backprop is not None  # the CPU fast path (flat buffer, hand backward)
    assert trainer.policy_params.tolist() == init
    w, b = trainer.policy.net[0].weight, trainer.policy.net[0].bias
    assert w.flatten().tolist() == init[:2] and b.tolist() == init[2:]
    assert w.data_ptr() == trainer.policy_params.data_ptr()  # a view of the trained buffer
    # the sampled actions follow those logits: P(action 0) = sigmoid(3.75 - (-3.75))
    probs = trainer.policy(torch.zeros(1, dtype=torch.int64)).probs[0]
    assert probs[0].item() == pytest.approx(1 / (1 + np.exp(-7.5)), rel=1e-6)
    # one update trains the same buffer, starting from init: the step is the first Adam step
    trainer.update()
    moved = trainer.policy_params.detach().numpy() - np.array(init, dtype=np.float32)
    assert 0 < np.abs(moved).max() <= 1.01 * trainer.config.learning_rate


def test_init_params_as_text_and_list_agree():
    a = _config(init_params="0.5, -1, 2, 0")
    b = _config(init_params=[0.5, -1, 2, 0])
    assert a.init_values == b.init_values == (0.5, -1.0, 2.0, 0.0)
    assert _config(init_params="").init_params is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"init_params": [1.0, 2.0]}, "init_params: 2 numbers given; .* has 4 parameters"),
        ({"init_params": "1,x,2,3"}, "init_params: item 1"),
        ({"init_params": [1.0, float("inf"), 0.0, 0.0]}, "init_params: item 1 is inf"),
        (
            {"init_params": [0.0] * 4, "n_layers": 2},
            "init_params: only for a linear/tabular policy",
        ),
    ],
)
def test_bad_init_params_are_refused_with_one_line(kw, message):
    with pytest.raises(ValueError, match=message) as info:
        _config(**kw)
    assert "\n" not in str(info.value)

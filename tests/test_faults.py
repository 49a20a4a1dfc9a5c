"""Faults and fuzz: bad input, damaged stores, full disks and killed processes end in one clear
line naming what to change, never a traceback, a runaway allocation or silently lost data."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pglab.config import MAX_JSON_DEPTH, MAX_STR_LEN, parse_json
from pglab.store import parse_config_json


# -- config JSON -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"algo": 5}', r"^algo: expected a string naming the algorithm .* got a number 5$"),
        ('{"algo": "ppo", "algo": "a2c"}', r"^'algo': given twice in the config JSON"),
        ('{"algo": "ppo", "gamma": 0.9, "gamma": 0.5}', r"^'gamma': given twice"),
        ("[" * 100_000 + "]" * 100_000, rf"nested 100000 levels deep \(at most {MAX_JSON_DEPTH}\)"),
        ('{"algo": "ppo", "learning_rate": ' + "9" * 400 + "}", r"^learning_rate: an integer of 400 digits is beyond the range"),
        ('{"algo": "ppo", "total_steps": ' + "9" * 5000 + "}", r"^total_steps: an integer of 5000 digits"),
        ('{"algo": "ppo", "total_steps": ' + "9" * 30 + "}", r"^total_steps: .* beyond the range"),
        ('{"algo": "ppo", "learning_rate": 1e400}', r"^learning_rate: inf must be a finite number"),
        ('{"algo": "ppo", "gamma": Infinity}', r"^gamma: inf must be a finite number"),
        ('{"algo": "ppo", "gamma": NaN}', r"^gamma: nan must be a finite number"),
        ('{"algo": "ppo", "grad_diagnostics": "maybe"}', r"^grad_diagnostics: 'maybe' is not a valid bool \(true or false\)$"),
        ('{"algo": "ppo", "num_envs": [1]}', r"^num_envs: expected an integer \(in \[1, 256\]\), got a list$"),
        ('{"algo": "ppo", "hidden_size": 12.5}', r"^hidden_size: 12.5 is not a valid int"),
        ('{"algo": "ppo", "nope": 1}', r"^nope: not a setting of ppo"),
        ('"ppo"', r"expected a JSON object"),
        ("{}", r"^algo: missing"),
        ("{nope", r"^config JSON: not valid JSON"),
    ],
)  # fmt: skip
def test_bad_config_json_is_one_line_naming_the_field(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        parse_config_json(text)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_long_strings_are_cut_in_the_message() -> None:
    env = "x" * 50_000_000  # 50 MB: past the JSON size limit, and past the string limit
    with pytest.raises(ValueError, match=r"too large \(at most 1,000,000\)") as info:
        parse_config_json(json.dumps({"algo": "ppo", "env_id": env}))
    assert len(str(info.value)) < 300
    with pytest.raises(ValueError, match=rf"^env_id: 'x+'\.\.\. \(5000 characters\) is too long \(at most {MAX_STR_LEN}") as info:  # fmt: skip
        parse_config_json(json.dumps({"algo": "ppo", "env_id": "x" * 5000}))
    assert len(str(info.value)) < 300


def test_bytes_and_bad_utf8() -> None:
    assert parse_config_json(b'{"algo": "ppo", "total_steps": 64}')[1].total_steps == 64
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_config_json(b'{"algo": "\xff"}')


def test_cli_config_file_faults(tmp_path, capsys) -> None:
    from pglab.cli import main

    cases = {
        "dup.json": '{"algo": "ppo", "algo": "a2c"}',
        "deep.json": "[" * 50_000,
        "big.json": '{"algo": "ppo", "learning_rate": ' + "9" * 400 + "}",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    for name in [*cases, "missing.json", "."]:
        rc = main(
            ["train", "--config", str(tmp_path / name), "--store", str(tmp_path / "s.sqlite")]
        )
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("pglab train: error: ") and "\n" not in err, (name, err)
    assert not (tmp_path / "s.sqlite").exists()  # nothing stored for bad input


# -- property-based: any JSON is a valid config or one ValueError line naming a field ---------
_FIELDS = ["algo", "env_id", "total_steps", "learning_rate", "gamma", "num_envs", "n_steps",
           "batch_size", "grad_diagnostics", "target_kl", "activation", "hidden_size", "x"]  # fmt: skip
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(string.printable, max_size=300)
    | st.sampled_from(["ppo", "a2c", "trpo", "reinforce", "CartPole-v1", "true", "none", "relu"])
)
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8)  # fmt: skip
_configs = st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_configs | _values, dup=st.booleans(), nest=st.integers(0, 60))
def test_fuzz_config_json(data, dup: bool, nest: int) -> None:
    text = json.dumps(data)
    if dup and isinstance(data, dict) and data:
        key = next(iter(data))
        text = text[:-1] + f", {json.dumps(key)}: 1}}"
    text = "[" * nest + text + "]" * nest
    try:
        algo, cfg = parse_config_json(text)
    except ValueError as exc:
        msg = str(exc)
        assert "\n" not in msg and len(msg) < 500, msg
        head = msg.split(":", 1)[0]
        assert head in {*_FIELDS, "config JSON", "'algo'", "''"} or head.startswith("'"), msg
        assert "Traceback" not in msg
    else:
        assert algo in {"ppo", "a2c", "trpo", "reinforce"} and cfg.algo == algo


def test_parse_json_depth_limit_is_checked_before_recursion() -> None:
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(ValueError, match="nested"):
        parse_json("{" * 1_000_000)  # a RecursionError would escape a plain json.loads
    assert parse_json('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == {"a": "[" * 42}


# -- the gradient diagnostic under a fixed memory cap ------------------------------------------
def test_grad_moments_match_the_full_samples_across_chunk_boundaries() -> None:
    import torch
    from gymnasium.spaces import Box

    from pglab.diagnostics import grad_moments, grad_samples, grad_stats
    from pglab.policies import CategoricalMLP

    torch.manual_seed(0)
    policy = CategoricalMLP(Box(-1, 1, (3,)), 2, hidden_size=5, n_layers=1)
    lengths = [7, 0, 1, 40, 3, 0, 65, 2]  # empty segments, and ones longer than a piece
    seg = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    B = int(seg.numel())
    obs, actions, w = torch.randn(B, 3), torch.randint(0, 2, (B,)), torch.randn(B)
    full = grad_samples(policy, obs, actions, w, seg, len(lengths))
    ref = grad_stats(full)
    for chunk in (1, 2, 3, 5, None):
        got = grad_moments(policy, obs, actions, w, seg, len(lengths), chunk_size=chunk)
        assert torch.allclose(got["mean"], ref["mean"], atol=1e-6)
        assert got["variance"] == pytest.approx(ref["variance"], rel=1e-5)
        assert got["snr"] == pytest.approx(ref["snr"], rel=1e-5)
        assert torch.allclose(got["sq_norms"].float(), full.pow(2).sum(1), rtol=1e-5)
        chunked = grad_samples(policy, obs, actions, w, seg, len(lengths), chunk_size=chunk)
        assert torch.allclose(chunked, full, atol=1e-6)


def test_grad_diagnostic_memory_is_capped_whatever_the_batch() -> None:
    """600 episodes x 68k parameters are 160 MB of samples (and as much again to centre them);
    under a 16 MB cap the diagnostic's peak stays within a few caps."""
    import subprocess
    import sys

    code = """
import resource, torch
from gymnasium.spaces import Box
import pglab.diagnostics as d
from pglab.policies import CategoricalMLP
d.DIAG_MEMORY_BYTES = 16 * 2**20
torch.manual_seed(0)
policy = CategoricalMLP(Box(-1, 1, (4,)), 2, hidden_size=256, n_layers=2)
m, L = 600, 4
seg = torch.arange(m).repeat_interleave(L)
obs, act, w = torch.randn(m * L, 4), torch.randint(0, 2, (m * L,)), torch.randn(m * L)
d.policy_grad_diagnostics(policy, obs[:8], act[:8], w[:8], seg[:8] // 4, 2)  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = d.policy_grad_diagnostics(policy, obs, act, w, seg, m)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert out["diag/grad_var"] > 0
print((peak - before) / d.DIAG_MEMORY_BYTES)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout.strip()) < 4  # the m x P samples alone would be 10 caps

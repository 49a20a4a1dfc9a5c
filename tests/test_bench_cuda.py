"""``python -m pglab bench --only cuda`` without a GPU: one JSON summary saying it was skipped
and why, exit status 0 (with a GPU it is a benchmark, not a test)."""

from __future__ import annotations

import json

import pytest
import torch

from pglab.cli import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here: the bench would run")
def test_cuda_bench_skips_with_a_reason_and_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--only", "cuda"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] is True and "CUDA" in summary["reason"]

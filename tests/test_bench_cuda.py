"""``python -m pglab bench --only cuda`` without a GPU: one JSON summary saying it was skipped
and why, exit status 0 (with a GPU it is a benchmark, not a test)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here: the bench would run")
def test_cuda_bench_skips_with_a_reason_and_exit_0() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pglab", "bench", "--only", "cuda"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["skipped"] is True and "CUDA" in summary["reason"]

"""scripts/gpu-check.sh without a GPU: it refuses at once, says it needs a GPU, and exits
non-zero (the check itself needs real hardware; bench/gpu_check.py says what it does)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check.sh"


@pytest.mark.timing
def test_gpu_check_fails_fast_saying_it_needs_a_gpu():
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU: the script would run the real check")
    completed = subprocess.run(
        [str(SCRIPT)],
        # this test's venv (no CUDA here); the dry run is asked for too: the script refuses it
        env={**os.environ, "VENV": sys.prefix, "RADAS_GPU_CHECK_DRY": "1"},
        capture_output=True,
        text=True,
        timeout=60,  # it must refuse at once, not start Ray or a sweep
    )
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "GPU CHECK: FAIL: this check needs a GPU" in completed.stderr
    assert "PASS" not in completed.stdout + completed.stderr

"""Shared pytest fixtures. Tests run on CPU with one intra-op thread (the CI machine has 2 cores)."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
if "torch" in sys.modules:
    # pytest imported torch before this file (resolving pyproject's filterwarnings entry
    # training.diagnostics.hook.DiagnosticsWarning imports it): OpenMP read its thread count then,
    # before the variable above existed, so set torch's intra-op pool explicitly
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

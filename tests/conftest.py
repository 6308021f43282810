"""Shared pytest fixtures. Tests run on CPU with one intra-op thread (the CI machine has 2 cores)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

"""Every registered MTL method at every level it supports trains the dense family (NYU-v2 tasks on the
synthetic stand-in) through the run the `train` command builds: config -> `families.for_config` ->
`build_run` -> the trainer's `TrainStep`, checked by the contract of tests/test_mtl_contract.py.

Registry-driven like that file: each method runs by default at its cheapest level (the feature level
when it has one: T backward passes through the heads only) plus PCGrad at the parameter level; every
other level (T vector-Jacobian products through the ResNet18) is marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dense_fixtures import tiny_dense
from test_mtl_contract import CASES, check_one_step

from training import families
from training.config import config_from_dict
from training.engine.assembly import build_run
from training.mtl import get

CPU = torch.device("cpu")


def _cases() -> list:
    out = []
    for name, level in CASES:
        levels = [lv.value for lv in get(name).levels] or ["parameter"]
        cheapest = "feature" if "feature" in levels else levels[0]
        default = level == cheapest or (name, level) == ("pcgrad", "parameter")
        out.append(pytest.param(name, level, marks=() if default else pytest.mark.slow))
    return out


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dense-contract") / "nyu"
    cfg = config_from_dict(tiny_dense(root, root.parent / "run"))
    families.for_config(cfg).prepare_data(cfg)  # the synthetic stand-in, generated once
    return root


def test_every_registered_method_level_is_covered() -> None:
    assert {(p.values[0], p.values[1]) for p in _cases()} == set(CASES)
    assert {p.values[0] for p in _cases() if not p.marks} == {name for name, _ in CASES}


@pytest.mark.parametrize(("name", "level"), _cases())
def test_one_dense_step_with_every_method(data_root: Path, tmp_path: Path, name: str, level: str) -> None:
    cfg = config_from_dict(tiny_dense(data_root, tmp_path, mtl={"name": name, "level": level}))
    family = families.for_config(cfg)
    torch.manual_seed(0)
    parts = build_run(cfg, CPU, family, hooks=[], evaluate=False)
    batch = next(iter(parts.loader.epoch(0)))
    assert tuple(parts.step.task_spec.names) == family.loss_names == ("segmentation", "depth", "normal")
    check_one_step(parts.step, batch, f"dense {name}/{level}", len(family.loss_names))

"""Data parallelism: 2 gloo processes on half-batches reproduce 1 process on the global batch.

A tiny two-level network with per-image mean losses stands in for the detector (the detector's RPN/ROI
samplers draw different random samples per process, so its losses are not per-image decomposable).
It exercises the same trainer, step and distributed plumbing: loss-weighting methods (global loss
values), parameter-level combination (G averaged over ranks) and feature-level combination (G_Z
gathered in the single process's column layout, each rank back-propagating its columns; GradDrop's
sign(Z) masks from the gathered Z). The diagnostics hook runs too (every measure, strict):
FD, GDS/GMS/CR and the inter-task measures equal the single process's; inter-sample pairs are those
within a rank (issue 13, defect 8: FD and inter-sample used to crash under DDP).
"""

from __future__ import annotations

import os
import socket
from typing import NamedTuple

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from training.config import config_from_dict
from training.diagnostics.hook import DiagnosticsHook
from training.diagnostics.inter_sample import (
    InterSimilarity,
    inter_similarity_sums,
    per_sample_param_grads,
    per_sample_view,
)
from training.engine.assembly import build_run, build_trainer
from training.engine.hooks import Hook

TASKS = ("a", "b", "c")
#: what the step does per method under DDP: global loss values (EW, DWA; FAMO's re-evaluation),
#: G averaged (MGDA), G_Z gathered (MGDA, PCGrad, GradDrop), the shared clip after the rank average
#: (Nash-MTL, feature level), the sub-step forwards and optimiser steps of MTL-IO's alternation
CASES = [("ew", "parameter"), ("dwa", "parameter"), ("mgda", "parameter"), ("mgda", "feature"),
         ("pcgrad", "feature"), ("graddrop", "feature"), ("nashmtl", "feature"), ("mtl_io", "parameter"),
         ("famo", "parameter")]  # fmt: skip
STEPS, GLOBAL_BATCH = 3, 4


class TinyBatch(NamedTuple):
    x: torch.Tensor  # [B, 4, 8, 8]
    y: torch.Tensor  # [B, T]

    def to(self, device: torch.device) -> TinyBatch:
        return TinyBatch(self.x.to(device), self.y.to(device))


class TinyNet(nn.Module):
    """A second model family for the engine: features(batch) -> [Z1 [B,6,8,8], Z2 [B,6,4,4]]; one
    linear head per task on pooled Z."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, padding=1)
        self.heads_ = nn.ModuleList(nn.Linear(12, 1) for _ in TASKS)

    @property
    def module(self) -> nn.Module:
        return self

    def features(self, batch: TinyBatch):
        z1 = torch.tanh(self.conv(batch.x))
        return [z1, nn.functional.avg_pool2d(z1, 2)]

    def heads(self, Z, batch: TinyBatch):
        pooled = torch.cat([z.mean((2, 3)) for z in Z], 1)  # [B, 12]
        # per-image losses averaged over the batch: the global mean is the mean of the ranks' means
        preds = [h(pooled).squeeze(1) for h in self.heads_]
        return {n: ((pred - batch.y[:, i]) ** 2).mean() for i, (n, pred) in enumerate(zip(TASKS, preds))}

    def shared_parameters(self):
        return list(self.conv.parameters())

    def task_parameters(self):
        return list(self.heads_.parameters())


class Items(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(100 + i)
        rgb, depth = torch.rand(3, 8, 8, generator=g), torch.rand(1, 8, 8, generator=g)
        return torch.cat([rgb, depth]), torch.randn(3, generator=g)


def collate(items) -> TinyBatch:
    x, y = zip(*items)
    return TinyBatch(torch.stack(x), torch.stack(y))


class TinyFamily:
    """The engine's ModelFamily protocol for TinyNet (no evaluator: the test runs without one)."""

    loss_names = TASKS
    collate = staticmethod(collate)

    def prepare_data(self, cfg) -> None:
        pass

    def build_model(self, cfg, device):
        torch.manual_seed(0)
        return TinyNet().to(device)

    def build_dataset(self, cfg, split, augment):
        return Items()

    def build_evaluator(self, cfg, device, split):
        raise AssertionError("not used")


class Losses(Hook):
    def __init__(self) -> None:
        self.losses = []

    def after_step(self, loop, result) -> None:
        assert not result.skipped, result.reason
        self.losses.append(result.task_losses)


def run_case(name: str, level: str, run_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = config_from_dict({
        "seed": 5, "run_dir": run_dir, "data": {"num_workers": 0}, "optim": {"lr": 0.05},
        "schedule": {"warmup_steps": 0, "warmup_factor": 1.0}, "mtl": {"name": name, "level": level},
        "train": {"steps": STEPS, "batch_size": GLOBAL_BATCH, "device": "cpu", "progress": False},
    })  # fmt: skip
    rec = Losses()
    trainer = build_trainer(build_run(cfg, torch.device("cpu"), TinyFamily(), hooks=[rec], evaluate=False))
    trainer.fit()
    params = torch.cat([p.detach().reshape(-1) for p in trainer.module.parameters()])
    return params, torch.tensor(rec.losses)


DIAGNOSTICS = {"every": 1, "levels": ["parameter", "feature"], "inter_sample": True,
               "inter_sample_levels": ["parameter", "feature"], "strict": True}  # fmt: skip


class Metrics(Hook):
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def after_step(self, loop, result) -> None:
        assert not result.skipped, result.reason
        self.rows.append(dict(result.metrics))


class WithinRankInterSample(Hook):
    """Single process, global batch: the inter-sample measures with the pairs of each rank's half
    (samples 0-1 and 2-3), from per-sample rows computed independently of the diagnostics hook."""

    def on_gradients(self, ctx):
        G_Z, feats = ctx.feature_grads(), list(ctx.features)
        out = {}
        for suffix, rows in (("", per_sample_param_grads(G_Z, feats, list(ctx.shared_params))),
                             ("_feature", per_sample_view(G_Z, feats))):  # fmt: skip
            half = GLOBAL_BATCH // 2
            sums = inter_similarity_sums(rows[:, :half]) + inter_similarity_sums(rows[:, half:])
            out.update(InterSimilarity.from_sums(sums).as_dict(prefix="expected/", suffix=suffix))
        return out


def run_diagnostics(run_dir: str, reference: bool = False) -> list[dict[str, float]]:
    """3 EW steps with every diagnostic on every step; the metrics of each step."""
    cfg = config_from_dict({
        "seed": 5, "run_dir": run_dir, "data": {"num_workers": 0}, "optim": {"lr": 0.05},
        "schedule": {"warmup_steps": 0, "warmup_factor": 1.0}, "mtl": {"name": "ew"},
        "train": {"steps": STEPS, "batch_size": GLOBAL_BATCH, "device": "cpu", "progress": False},
        "diagnostics": DIAGNOSTICS,
    })  # fmt: skip
    rec = Metrics()
    hooks = [DiagnosticsHook(cfg.diagnostics), *([WithinRankInterSample()] if reference else []), rec]
    build_trainer(build_run(cfg, torch.device("cpu"), TinyFamily(), hooks=hooks, evaluate=False)).fit()
    return rec.rows


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, init_method: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    # a TCP store on loopback: the file:// store aborted now and then at start-up on this machine
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        results = {f"{n}-{lv}": run_case(n, lv, os.path.join(out_dir, f"run{rank}")) for n, lv in CASES}
        results["diagnostics"] = run_diagnostics(os.path.join(out_dir, f"diag{rank}"))
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # neither rank tears the group down while the other still talks to it
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, f"tcp://127.0.0.1:{_free_port()}", str(tmp)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize(("name", "level"), CASES)
def test_two_processes_match_one_process_on_the_global_batch(two_process_results, tmp_path, name, level):
    single_params, single_losses = run_case(name, level, str(tmp_path))
    (p0, l0), (p1, l1) = (r[f"{name}-{level}"] for r in two_process_results)
    assert torch.equal(p0, p1), "ranks diverged: the update was not identical on every rank"
    assert torch.equal(l0, l1)
    torch.testing.assert_close(l0, single_losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(p0, single_params, rtol=1e-5, atol=1e-6)
    # and training really moved the parameters (a no-op would match trivially)
    torch.manual_seed(0)
    init = torch.cat([p.detach().reshape(-1) for p in TinyNet().parameters()])
    assert (p0 - init).abs().max() > 1e-3




def test_diagnostics_under_two_processes_pool_the_global_batch(two_process_results, tmp_path) -> None:
    rank0, rank1 = (r["diagnostics"] for r in two_process_results)
    assert rank0 == rank1, "every rank must log the same diagnostics"
    single = run_diagnostics(str(tmp_path), reference=True)
    keys = config_from_dict({"diagnostics": DIAGNOSTICS}).diagnostics.keys()
    assert len(rank0) == len(single) == STEPS
    for step, (ddp, one) in enumerate(zip(rank0, single)):
        assert sorted(ddp) == sorted(keys), f"step {step}: missing {sorted(set(keys) - set(ddp))}"
        for key in keys:
            # inter-sample pairs are the pairs within a rank; everything else is the global batch's value
            want = one[key.replace("diag/", "expected/")] if "inter_sample" in key else one[key]
            assert ddp[key] == pytest.approx(want, rel=1e-5, abs=1e-7), (step, key, ddp[key], want)
    assert any(abs(rank0[0][k] - single[0][k]) > 1e-3 for k in keys if "inter_sample" in k), (
        "the within-rank inter-sample pairs should differ from the global batch's on this data"
    )

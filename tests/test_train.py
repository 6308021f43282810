"""The trainer on tiny synthetic data: every MTL method, the CLI run directory, resume, non-finite guard."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mtl_grasp.data.synth import generate_dataset
from training import families
from training.checkpoint import CHECKPOINT_KEYS, atomic_save, read_checkpoint
from training.cli import main as cli_main
from training.config import config_from_dict
from training.engine.assembly import build_run, build_trainer
from training.engine.hooks import Hook
from training.engine.trainer import Trainer, TrainingDivergedError
from training.model import LOSS_NAMES
from training.mtl import get, names

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

TINY_MODEL = {
    "image_size": 64, "fpn_channels": 16, "head_channels": 16, "box_fc_dim": 32, "box_head_convs": 1,
    "mask_head_convs": 2, "anchor_sizes": [8, 16, 32, 64, 128], "rpn_batch_size_per_image": 32,
    "roi_batch_size_per_image": 16, "rpn_pre_nms_top_n_train": 100, "rpn_post_nms_top_n_train": 50,
    "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20, "detections_per_image": 10,
}  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, scenes=5, image_size=64, seed=0, split_fractions={"train": 0.6, "val": 0.4})
    return root


def tiny(data_root: Path, run_dir: Path, **sections) -> dict:
    """A plain config dict: tiny model, 64x64 images, batch 2, CPU, no workers, no progress bar."""
    cfg = {
        "seed": 3,
        "run_dir": str(run_dir),
        "data": {"root": str(data_root), "num_workers": 0, "augment": True},
        "model": dict(TINY_MODEL),
        "optim": {"lr": 0.01},
        "schedule": {"warmup_steps": 2},
        "train": {"steps": 2, "batch_size": 2, "device": "cpu", "progress": False, "checkpoint_every": 0},
    }
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value) if isinstance(value, dict) else cfg.__setitem__(key, value)
    return cfg


class Recorder(Hook):
    def __init__(self) -> None:
        self.results = []
        self.snapshots = []

    def after_step(self, loop, result) -> None:
        self.results.append(result)
        self.snapshots.append(loop.module.shared_parameters()[0].detach().clone())


def make_trainer(cfg, hooks: list[Hook]) -> Trainer:
    """The run the `train` command builds (`training.engine.assembly`), with these hooks only."""
    torch.manual_seed(cfg.seed)
    return build_trainer(build_run(cfg, CPU, families.get(), hooks=hooks, evaluate=False))


def _cases() -> list:
    """Every registered method once by default, at its cheapest level; every other level marked slow.

    A parameter-level step costs T vector-Jacobian products through both ResNet18s (G is [7, ~22M]),
    ~10-30 s here; methods offering only that level still run by default.
    """
    out = []
    for name in names():
        levels = [lv.value for lv in get(name).levels] or ["parameter"]
        cheapest = "feature" if "feature" in levels else levels[0]
        for level in levels:
            out.append(pytest.param(name, level, marks=() if level == cheapest else pytest.mark.slow))
    return out


@pytest.mark.parametrize(("name", "level"), _cases())
def test_two_steps_with_every_registered_method(data_root, tmp_path, name, level):
    cfg = config_from_dict(tiny(data_root, tmp_path, mtl={"name": name, "level": level}))
    rec = Recorder()
    trainer = make_trainer(cfg, [rec])
    model = trainer.module
    shared0 = [p.detach().clone() for p in model.shared_parameters()]
    heads0 = [p.detach().clone() for p in model.task_parameters()]
    summary = trainer.fit()  # every method runs on AmodalRCNN (CosReg's double backward included)
    assert summary["step"] == 2 and summary["skipped"] == 0, [r.reason for r in rec.results]
    for r in rec.results:
        assert set(r.named_losses) == set(LOSS_NAMES)
        assert all(torch.isfinite(torch.tensor(v)) for v in r.named_losses.values())
        if r.weights is not None:
            assert len(r.weights) == len(LOSS_NAMES)
    moved = lambda now, before: any(not torch.equal(a, b) for a, b in zip(now, before))  # noqa: E731
    assert moved([p.detach() for p in model.shared_parameters()], shared0), "shared parameters did not move"
    assert moved([p.detach() for p in model.task_parameters()], heads0), "head parameters did not move"
    # the method's state survives a state_dict round trip (what checkpoints rely on)
    again = get(name)(len(LOSS_NAMES), level=level) if not cfg.mtl.hparams else None
    if again is not None:
        again.load_state_dict(trainer.train_step.method.state_dict())


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _loss_rows(run_dir: Path) -> list[tuple]:
    """step, epoch, lr, the 7 losses and the method's task weights of every metrics.csv row."""
    rows = _rows(run_dir / "metrics.csv")
    keys = ("step", "epoch", "lr", *[f"loss/{n}" for n in LOSS_NAMES], *[f"weight/{n}" for n in LOSS_NAMES])
    return [tuple(r[k] for k in keys) for r in rows]


def _write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def straight_run(data_root, tmp_path_factory):
    """4 uninterrupted steps through the CLI (FAMO: stateful, post-step re-evaluation, own optimiser).

    One thread (`train.threads=1`) in every run of these tests, in this process and in the killed
    subprocess alike: float32 sums depend on the thread count, so runs with different counts differ in
    the last bits (and the losses then differ). The process's thread count is restored afterwards.
    """
    threads = torch.get_num_threads()
    base = tmp_path_factory.mktemp("straight")
    cfg = tiny(data_root, base / "run", mtl={"name": "famo"},
               train={"steps": 4, "checkpoint_every": 2, "threads": 1})  # fmt: skip
    cfg_path = _write_config(base / "cfg.yaml", cfg)
    assert cli_main(["train", "--config", str(cfg_path)]) == 0
    yield base / "run", cfg
    torch.set_num_threads(threads)


def test_cli_run_directory(straight_run):
    run, cfg = straight_run
    header = list(_rows(run / "metrics.csv")[0])
    assert header[:5] == ["step", "epoch", "lr", "time_s", "skipped"]
    assert [f"loss/{n}" for n in LOSS_NAMES] == [h for h in header if h.startswith("loss/")]
    assert [f"weight/{n}" for n in LOSS_NAMES] == [h for h in header if h.startswith("weight/")]
    assert "diag/fd" in header and "diag/gds_param" in header
    steps = [int(r["step"]) for r in _rows(run / "metrics.csv")]
    assert steps == [1, 2, 3, 4]
    ev = _rows(run / "eval.csv")
    assert [int(r["step"]) for r in ev] == [4] and "vmask/mAP" in ev[0] and "occ/f1" in ev[0]
    final = json.loads((run / "metrics.json").read_text())
    assert final["method"] == "famo" and final["seed"] == 3 and 0.0 <= final["amask/mAP"] <= 1.0
    assert any((run / "tb").iterdir())
    assert (run / "plots" / "losses.png").stat().st_size > 1000
    ckpt = read_checkpoint(run)
    assert set(CHECKPOINT_KEYS) <= set(ckpt) and ckpt["step"] == 4
    assert ckpt["config"]["model"]["fpn_channels"] == 16  # the exporter rebuilds the model from this
    assert {"torch", "numpy", "python", "cuda", "loader_seed"} <= set(ckpt["rng"])
    assert yaml.safe_load((run / "config.yaml").read_text())["mtl"]["name"] == "famo"
    # a second run into the same directory is refused instead of overwriting it
    cfg_path = _write_config(run.parent / "again.yaml", cfg)
    assert cli_main(["train", "--config", str(cfg_path)]) == 2


def test_resume_repeats_the_uninterrupted_run(straight_run, tmp_path):
    run, cfg = straight_run
    half = dict(cfg, run_dir=str(tmp_path / "run"), train={**cfg["train"], "steps": 2})
    assert cli_main(["train", "--config", str(_write_config(tmp_path / "half.yaml", half))]) == 0
    assert cli_main(["train", "--resume", str(tmp_path / "run"), "train.steps=4"]) == 0
    assert _loss_rows(tmp_path / "run") == _loss_rows(run)
    a, b = read_checkpoint(run), read_checkpoint(tmp_path / "run")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert json.loads((tmp_path / "run/metrics.json").read_text())["bbox/mAP"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["bbox/mAP"]
    )


KILL_AT_STEP_3 = """
import os, signal, sys
from training.engine import hooks
_orig = hooks.Checkpoint.after_step
def after_step(self, trainer, result):
    _orig(self, trainer, result)
    if trainer.step == 3:
        os.kill(os.getpid(), signal.SIGKILL)
hooks.Checkpoint.after_step = after_step
from training.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_loses_only_the_steps_since_the_last_checkpoint(straight_run, tmp_path):
    run, cfg = straight_run
    killed = dict(cfg, run_dir=str(tmp_path / "run"))
    cfg_path = _write_config(tmp_path / "k.yaml", killed)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", KILL_AT_STEP_3, "train", "--config", str(cfg_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert [int(r["step"]) for r in _rows(tmp_path / "run/metrics.csv")] == [1, 2, 3]
    assert read_checkpoint(tmp_path / "run")["step"] == 2  # step 3 was lost ...
    assert cli_main(["train", "--resume", str(tmp_path / "run")]) == 0
    assert _loss_rows(tmp_path / "run") == _loss_rows(run)  # ... and redone identically


SAVE_FOREVER = """
import sys, torch
from training.checkpoint import atomic_save
big = {"w": torch.arange(6_000_000, dtype=torch.float32)}
i = 0
while True:
    big["step"] = i
    atomic_save(big, sys.argv[1])
    i += 1
"""


def test_atomic_checkpoint_survives_sigkill_mid_write(tmp_path):
    target = tmp_path / "last.pt"
    atomic_save({"w": torch.zeros(1), "step": -1}, target)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for delay in (0.3, 0.7):
        proc = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(target)], cwd=ROOT, env=env)
        deadline = time.time() + 120
        while torch.load(target, weights_only=False)["step"] < 1 and time.time() < deadline:
            time.sleep(0.05)  # wait until it has replaced the file at least twice
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        obj = torch.load(target, weights_only=False)  # never a torn file: the old or the new one
        assert obj["step"] >= 1 and obj["w"].numel() == 6_000_000
        assert float(obj["w"][-1]) == 5_999_999.0


def test_non_finite_step_is_skipped_and_training_continues(data_root, tmp_path):
    cfg = config_from_dict(tiny(data_root, tmp_path, train={"steps": 3}, data={"augment": False}))
    rec = Recorder()
    trainer = make_trainer(cfg, [rec])
    model = trainer.module
    calls = {"n": 0}

    def poison_first_call(module, inputs, output):
        calls["n"] += 1
        return [z * float("nan") for z in output] if calls["n"] == 1 else output

    model.encoder.register_forward_hook(poison_first_call)
    before = model.shared_parameters()[0].detach().clone()
    summary = trainer.fit()
    assert [r.skipped for r in rec.results] == [True, False, False] and summary["skipped"] == 1
    assert "non-finite losses" in rec.results[0].reason and "rpn_objectness" in rec.results[0].reason
    assert torch.equal(rec.snapshots[0], before)  # the poisoned step never reached the optimiser
    assert not torch.equal(rec.snapshots[2], before)


def test_repeated_non_finite_steps_stop_the_run(data_root, tmp_path):
    cfg = config_from_dict(tiny(data_root, tmp_path, train={"steps": 5, "max_nonfinite": 2}))
    trainer = make_trainer(cfg, [])
    with torch.no_grad():
        trainer.module.shared_parameters()[0].fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match=r"2 consecutive steps .*\(train\.max_nonfinite = 2\)"):
        trainer.fit()


def test_evaluate_command_matches_the_training_evaluation(straight_run, data_root, tmp_path):
    run, _ = straight_run
    out = tmp_path / "m.json"
    args = ["evaluate", "--checkpoint", str(run / "checkpoints/last.pt"), "--data", str(data_root),
            "--split", "val", "--out", str(out), "--device", "cpu"]  # fmt: skip
    assert cli_main(args) == 0
    got, trained = json.loads(out.read_text()), json.loads((run / "metrics.json").read_text())
    for key in ("bbox/mAP", "vmask/mAP", "amask/mAP", "amask/mAR", "occ/accuracy"):
        assert got[key] == pytest.approx(trained[key]), key
    assert cli_main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(data_root)]) == 2


def test_onnx_evaluation_path_matches_the_torch_path(straight_run, data_root, tmp_path):
    """`evaluate --onnx` (runtime Detector) and the checkpoint path paste masks identically."""
    import numpy as np

    from mtl_grasp.data.reader import discover_views, load_view, select_split
    from mtl_grasp.runtime.detector import Detector
    from training.families.coco_evaluator import predict

    run, _ = straight_run
    onnx_path = tmp_path / "model.onnx"
    assert cli_main(["export", "--checkpoint", str(run / "checkpoints/last.pt"), "--out", str(onnx_path),
                     "--no-verify"]) == 0  # fmt: skip
    ckpt = read_checkpoint(run)
    cfg = config_from_dict(ckpt["config"])
    family = families.get()
    model = family.build_model(cfg, CPU).module
    model.load_state_dict(ckpt["model"])
    torch_preds = predict(model, family.build_dataset(cfg, "val", False), CPU)
    detector = Detector(str(onnx_path), score_threshold=cfg.model.score_thresh)
    views = select_split(discover_views(data_root), "val")
    compared = 0
    for ref in views:
        sample = load_view(ref)
        d = detector(sample.rgb, sample.depth).to_prediction()
        t = torch_preds[ref.image_id]
        assert len(d["scores"]) == len(t["scores"])
        if len(t["scores"]):
            np.testing.assert_allclose(d["boxes"], t["boxes"], atol=1e-2)
            for key in ("visible_masks", "amodal_masks"):
                agree = (d[key] == t[key]).mean()
                assert agree > 0.999, (key, agree)
            compared += len(t["scores"])
    assert compared > 0  # the untrained model still emits low-score detections to compare
    out = tmp_path / "onnx.json"
    assert cli_main(["evaluate", "--onnx", str(onnx_path), "--data", str(data_root), "--out", str(out)]) == 0
    got, trained = json.loads(out.read_text()), json.loads((run / "metrics.json").read_text())
    for key in ("bbox/mAP", "vmask/mAP", "amask/mAP", "occ/matched"):
        assert got[key] == pytest.approx(trained[key], abs=1e-3), key


@pytest.mark.slow
def test_bench_train_prints_ratios_vs_ew(capsys):
    args = ["bench", "train", "--device", "cpu", "--size", "64", "--batch", "2", "--steps", "1",
            "--methods", "ew", "uw", "--workers", "0", "--model", "fpn_channels=16", "head_channels=16",
            "box_fc_dim=32"]  # fmt: skip
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    lines = {r[0]: r for r in rows if r[:1] in (["ew"], ["uw"])}  # the table rows
    assert float(lines["ew"][3]) == 1.0 and float(lines["uw"][2]) > 0


def test_dwa_run_shorter_than_its_warm_up_warns(data_root, tmp_path):
    """DWA keeps uniform weights for 2 epochs: a run that ends before is EW, and the trainer says so."""
    import warnings

    cfg = config_from_dict(tiny(data_root, tmp_path, mtl={"name": "dwa"}))
    with pytest.warns(UserWarning, match="trains exactly like EW"):
        make_trainer(cfg, [])
    cfg = config_from_dict(
        tiny(data_root, tmp_path, mtl={"name": "dwa", "hparams": {"window": 1}}, train={"steps": 3})
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        make_trainer(cfg, [])


@pytest.mark.parametrize(
    ("override", "message"),
    [("mtl.name=pcgrd", "did you mean 'pcgrad'"), ("mtl.hparams.cc=1", "has no hyperparameter(s) ['cc']")],
)
def test_a_bad_method_is_reported_before_any_data_is_generated(tmp_path, override, message):
    from training.config import load_config
    from training.engine.run import train

    cfg = load_config(
        ROOT / "config/train/synthetic.yaml",
        ["mtl.name=cagrad", override, f"data.root={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}"],
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        train(cfg)
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()

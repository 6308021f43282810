"""training.config: YAML + dotted overrides -> typed dataclass tree; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TrainConfig, config_from_dict, dump_config, load_config, parse_override, to_dict

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_paper():
    cfg = load_config(ROOT / "config/train/metagraspnet.yaml")
    assert cfg.model.image_size == 512 and cfg.train.batch_size == 4
    assert cfg.optim.name == "sgd" and cfg.optim.lr == pytest.approx(1e-4) and cfg.optim.momentum == 0.9
    assert cfg.schedule.warmup_steps > 0 and cfg.mtl.name == "ew"
    # the built-in defaults agree with the shipped paper config on these
    d = TrainConfig()
    assert (d.model.image_size, d.train.batch_size, d.optim.lr, d.mtl.name) == (512, 4, 1e-4, "ew")


def test_synthetic_config_loads():
    cfg = load_config(ROOT / "config/train/synthetic.yaml")
    assert cfg.data.synth.scenes > 0 and cfg.train.device == "cpu"
    assert cfg.data.synth.image_size == cfg.model.image_size
    assert cfg.data.synth.engine == "physics"  # the demo trains on simulated bins


def test_dotted_overrides_are_typed():
    cfg = load_config(
        ROOT / "config/train/synthetic.yaml",
        ["optim.lr=1e-3", "mtl.name=cagrad", "mtl.hparams.c=0.4", "model.anchor_sizes=[4, 8, 16, 32, 64]",
         "train.steps=7", "data.splits_file=null", "diagnostics.levels=[feature]"],
    )  # fmt: skip
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.mtl.name == "cagrad" and cfg.mtl.hparams == {"c": 0.4}
    assert cfg.model.anchor_sizes == (4, 8, 16, 32, 64)
    assert cfg.train.steps == 7 and cfg.data.splits_file is None
    assert cfg.diagnostics.levels == ("feature",)
    # YAML 1.1 reads "1e-4" (no dot) as a string; a float field still accepts it
    assert config_from_dict({"optim": {"lr": "1e-4"}}).optim.lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", r"optim\.lrr: unknown config key; known keys of optim are \[.*'lr'"),
        ("nosuch=1", r"nosuch: unknown config key"),
        ("optim.lr=fast", r"optim\.lr: expected a float, got 'fast'"),
        ("train.steps=1.5", r"train\.steps: expected an int, got 1\.5"),
        ("train.progress=3", r"train\.progress: expected a bool"),
        ("mtl.hparams=3", r"mtl\.hparams: expected a mapping, got 3"),
        ("model.anchor_sizes=8", r"model\.anchor_sizes: expected a list, got 8"),
        ("optim.betas=[0.9]", r"optim\.betas: expected a list of 2 values"),
        ("train.amp=fp8", r"train\.amp: expected one of \['bf16', 'none'\], got 'fp8'"),
        ("train.steps=0", r"train\.steps: expected a positive number, got 0"),
        ("model.fusion=concat", r"ModelConfig\.fusion: expected one of"),
        ("optim.lr.x=1", r"optim\.lr"),
        ("oops", r"expected dotted\.key=value"),
        ("optim.=1", r"empty key part"),
        ("data.synth.engine=blender", r"data\.synth\.engine: expected one of \['physics', 'analytic'\]"),
        ("data.synth.workers=-1", r"data\.synth\.workers: expected a value >= 0"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_bad_yaml_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="--config: no such file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ValueError, match="expected a mapping at the top level"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ValueError, match=r"train\.stepz: unknown config key"):
        load_config(typo)


def test_dump_and_reload_round_trip(tmp_path):
    cfg = load_config(ROOT / "config/train/synthetic.yaml", ["mtl.hparams.c=0.4", "mtl.tasks={a: [roi_cls]}"])
    dump_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert to_dict(again) == to_dict(cfg)
    assert again.mtl.tasks == {"a": ["roi_cls"]}


def test_parse_override_values_are_yaml():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=") == ("a", "")


def test_the_suite_runs_torch_with_the_configured_intra_op_threads() -> None:
    """tests/conftest.py asks for OMP_NUM_THREADS (default 1) intra-op threads. pytest imports torch
    before conftest when it resolves pyproject's warning filter (training.diagnostics.hook), too late
    for the environment variable; conftest then sets torch's pool itself."""
    import os

    import torch

    assert torch.get_num_threads() == int(os.environ["OMP_NUM_THREADS"])
